// Package deploy_test checks the deployment files in deploy/, the Dockerfile
// and .dockerignore against the binary's own settings (config.Vars), its
// metrics (monitor.New) and the Kubernetes API types, so that docs,
// manifests and code cannot drift apart.
//
// One file per artifact; this one holds what they share: the binary's
// settings (vars, effective, duration, httpPort, loadWith), walking and
// reading the files of deploy/ (deployFiles, read), and strict decoding of
// manifests into the k8s.io/api types (kinds, decodeStrict).
package deploy_test

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// ---------------------------------------------------------------------------
// Settings of the binary

func vars(t *testing.T) map[string]config.Var {
	t.Helper()
	m := map[string]config.Var{}
	for _, v := range config.Vars() {
		m[v.Env] = v
	}
	return m
}

// mustVar returns the setting, failing the test when the binary lacks it.
func mustVar(t *testing.T, env string) config.Var {
	t.Helper()
	v, ok := vars(t)[env]
	if !ok {
		t.Fatalf("%s is not a setting of the binary (config.Vars()); the deployment files rely on it", env)
	}
	return v
}

// effective is the value a setting takes with env (a manifest's environment) on top of its default.
func effective(t *testing.T, env map[string]string, name string) string {
	t.Helper()
	if v, ok := env[name]; ok {
		return v
	}
	return mustVar(t, name).Default
}

func duration(t *testing.T, env map[string]string, name string) time.Duration {
	t.Helper()
	s := effective(t, env, name)
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s = %q: %v", name, s, err)
	}
	return d
}

// httpPort is the port of GENLBRIDGE_HTTP_ADDR, as set in env or by default.
func httpPort(t *testing.T, env map[string]string) int {
	t.Helper()
	addr := effective(t, env, "GENLBRIDGE_HTTP_ADDR")
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("GENLBRIDGE_HTTP_ADDR = %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 {
		t.Fatalf("GENLBRIDGE_HTTP_ADDR = %q: want a fixed port", addr)
	}
	return n
}

// loadWith runs config.Load with exactly env as the GENLBRIDGE_* environment.
func loadWith(t *testing.T, env map[string]string) (*config.Config, error) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.Prefix+"_") || k == "NODE_NAME" {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	// Files the manifests mount from Secrets do not exist here: stand-ins.
	dir := t.TempDir()
	for k, v := range env {
		if fileSetting.MatchString(k) && v != "" {
			v = filepath.Join(dir, strings.ToLower(k))
			if err := os.WriteFile(v, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv(k, v)
	}
	return config.Load(nil, nil)
}

// fileSetting matches the settings whose value is a file's path.
var fileSetting = regexp.MustCompile(`_(CREDS|FILE|SEED|CA|CERT|KEY)$`)

// ---------------------------------------------------------------------------
// Files

func deployFiles(t *testing.T, match func(rel string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && match(filepath.ToSlash(p)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isKustomization(p string) bool {
	b := path.Base(filepath.ToSlash(p))
	return b == "kustomization.yaml" || b == "kustomization.yml" || b == "Kustomization"
}

// helmValues are values files for Helm charts, checked by TestNATSValues.
var helmValues = map[string]bool{"nats/values.yaml": true}

// ---------------------------------------------------------------------------
// Strict decoding into k8s.io/api types

type kindInfo struct {
	apiVersion string
	new        func() any
}

var kinds = map[string]kindInfo{
	"Namespace":             {"v1", func() any { return &corev1.Namespace{} }},
	"ServiceAccount":        {"v1", func() any { return &corev1.ServiceAccount{} }},
	"Service":               {"v1", func() any { return &corev1.Service{} }},
	"ConfigMap":             {"v1", func() any { return &corev1.ConfigMap{} }},
	"Secret":                {"v1", func() any { return &corev1.Secret{} }},
	"Pod":                   {"v1", func() any { return &corev1.Pod{} }},
	"ResourceQuota":         {"v1", func() any { return &corev1.ResourceQuota{} }},
	"PersistentVolumeClaim": {"v1", func() any { return &corev1.PersistentVolumeClaim{} }},
	"DaemonSet":             {"apps/v1", func() any { return &appsv1.DaemonSet{} }},
	"StatefulSet":           {"apps/v1", func() any { return &appsv1.StatefulSet{} }},
	"Deployment":            {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"PodDisruptionBudget":   {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"ClusterRole":           {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.ClusterRole{} }},
	"ClusterRoleBinding":    {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.ClusterRoleBinding{} }},
	"Role":                  {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.Role{} }},
	"RoleBinding":           {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.RoleBinding{} }},
	"PrometheusRule":        {"monitoring.coreos.com/v1", func() any { return &prometheusRule{} }},
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes every document of a YAML stream into the k8s.io/api
// type of its kind; unknown fields, duplicate keys and unknown kinds are errors.
func decodeStrict(data []byte) ([]any, error) {
	var out []any
	for i, doc := range docSep.Split(string(data), -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %v", i+1, err)
		}
		if head.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
			continue // empty document
		}
		k, ok := kinds[head.Kind]
		if !ok {
			return nil, fmt.Errorf("document %d: kind %q: not a kind this test knows", i+1, head.Kind)
		}
		if head.APIVersion != k.apiVersion {
			return nil, fmt.Errorf("document %d: %s has apiVersion %q, want %q", i+1, head.Kind, head.APIVersion, k.apiVersion)
		}
		obj := k.new()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %v", i+1, head.Kind, err)
		}
		out = append(out, obj)
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
