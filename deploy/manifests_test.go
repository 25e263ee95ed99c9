// Every YAML manifest in deploy/ (but kustomizations and Helm values)
// against the k8s.io/api type of its kind, decoded strictly by decodeStrict
// (helpers_test.go); and decodeStrict itself against documents it must refuse.

package deploy_test

import (
	"strings"
	"testing"
)

func TestManifestsDecodeStrictly(t *testing.T) {
	files := deployFiles(t, func(p string) bool {
		return (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) && !isKustomization(p) && !helmValues[p]
	})
	if len(files) < 5 {
		t.Fatalf("found only %d manifests: %v", len(files), files)
	}
	for _, f := range files {
		objs, err := decodeStrict(read(t, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no Kubernetes object", f)
		}
	}
}

func TestDecodeStrictRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountToken: false\n",
		"unknown kind":  "apiVersion: v1\nkind: Gadget\nmetadata: {name: a}\n",
		"wrong version": "apiVersion: apps/v1beta2\nkind: DaemonSet\nmetadata: {name: a}\n",
		"nested field":  "apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrk: true\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
