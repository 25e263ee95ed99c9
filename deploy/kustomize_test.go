// The kustomize base (base/) and every example under examples/, built with
// kustomize's Go library (krusty, as `kustomize build`): the output decodes
// strictly into the k8s.io/api types, and its DaemonSet passes the checks of
// daemonset_test.go; the examples' init containers hold no capability but
// SYS_MODULE.

package deploy_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func kustomizeBuild(t *testing.T, dir string) []any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	objs, err := decodeStrict(out)
	if err != nil {
		t.Fatalf("kustomize build %s: output: %v", dir, err)
	}
	return objs
}

func builtDaemonSet(t *testing.T, dir string, objs []any) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok && ds.Name == "genlbridge" {
			if ds.Namespace != "genlbridge" {
				t.Errorf("%s: DaemonSet in namespace %q, want genlbridge", dir, ds.Namespace)
			}
			return ds
		}
	}
	t.Fatalf("kustomize build %s: no DaemonSet genlbridge", dir)
	return nil
}

func TestKustomizeBase(t *testing.T) {
	objs := kustomizeBuild(t, "base")
	ds := builtDaemonSet(t, "base", objs)
	checkBridgeDaemonSet(t, "kustomize build base", ds, []string{"NET_ADMIN"})
	if img := bridgeContainer(t, ds).Image; !strings.Contains(img, "genlbridge:") {
		t.Errorf("image %q: the kustomization's images entry did not apply", img)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[fmt.Sprintf("%T", o)]++
	}
	for _, want := range []string{"*v1.Namespace", "*v1.ServiceAccount", "*v1.Service", "*v1.DaemonSet"} {
		if kinds[want] == 0 {
			t.Errorf("kustomize build base: no %s (have %v)", want, kinds)
		}
	}
}

func TestKustomizeExamples(t *testing.T) {
	dirs := deployFiles(t, func(p string) bool { return strings.HasPrefix(p, "examples/") && isKustomization(p) })
	if len(dirs) == 0 {
		t.Fatal("no kustomization under examples/")
	}
	for _, f := range dirs {
		dir := filepath.Dir(f)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			ds := builtDaemonSet(t, dir, objs)
			switch filepath.Base(dir) {
			case "no-net-admin":
				checkBridgeDaemonSet(t, dir, ds, nil)
			default:
				checkBridgeDaemonSet(t, dir, ds, []string{"NET_ADMIN"})
			}
			for _, ic := range ds.Spec.Template.Spec.InitContainers {
				sc := ic.SecurityContext
				if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("init container %s: want capabilities drop [ALL]", ic.Name)
				}
				if sc != nil && sc.Privileged != nil && *sc.Privileged {
					t.Errorf("init container %s: privileged", ic.Name)
				}
				if sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 &&
					!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"SYS_MODULE"}) {
					t.Errorf("init container %s: adds %v; only SYS_MODULE is for loading a module", ic.Name, sc.Capabilities.Add)
				}
			}
		})
	}
}
