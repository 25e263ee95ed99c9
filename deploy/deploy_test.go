// Package deploy_test checks the deployment files in deploy/, the Dockerfile
// and .dockerignore against the binary's own settings (config.Vars), its
// metrics (monitor.New) and the Kubernetes API types, so that docs,
// manifests and code cannot drift apart.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/monitor"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
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

// ---------------------------------------------------------------------------
// The DaemonSet

func baseDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	objs, err := decodeStrict(read(t, "base/daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("base/daemonset.yaml: no DaemonSet")
	return nil
}

func bridgeContainer(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	for i := range ds.Spec.Template.Spec.Containers {
		if c := &ds.Spec.Template.Spec.Containers[i]; c.Name == "genlbridge" {
			return c
		}
	}
	t.Fatalf("DaemonSet %s: no container named genlbridge", ds.Name)
	return nil
}

// literalEnv is the container's GENLBRIDGE_* variables with literal values.
func literalEnv(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil && strings.HasPrefix(e.Name, config.Prefix+"_") {
			env[e.Name] = e.Value
		}
	}
	return env
}

// checkBridgeDaemonSet checks the bridge's DaemonSet against the binary;
// wantCaps are the capabilities its container must add, exactly.
func checkBridgeDaemonSet(t *testing.T, where string, ds *appsv1.DaemonSet, wantCaps []string) {
	t.Helper()
	errorf := func(format string, a ...any) { t.Errorf(where+": "+format, a...) }
	spec := &ds.Spec.Template.Spec
	c := bridgeContainer(t, ds)
	known := vars(t)

	// Environment: real names, values the binary accepts, NODE_NAME from the downward API.
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			errorf("env %s set twice", e.Name)
		}
		seen[e.Name] = true
		if e.Name == "NODE_NAME" {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				errorf("NODE_NAME must come from the downward API (fieldRef spec.nodeName)")
			}
			continue
		}
		if _, ok := known[e.Name]; !ok {
			errorf("env %s is not a setting of the binary (config.Vars()) nor NODE_NAME", e.Name)
		}
	}
	if !seen["NODE_NAME"] {
		errorf("no NODE_NAME: events would carry the pod's host name only by accident of hostNetwork")
	}
	env := literalEnv(t, c)
	if _, err := loadWith(t, env); err != nil {
		errorf("the binary rejects the manifest's settings: %v", err)
	}
	if env["GENLBRIDGE_NATS_URL"] == "" {
		errorf("GENLBRIDGE_NATS_URL is empty: the bridge would start an embedded server, on a read-only root filesystem")
	}

	// Network: the host's, with cluster DNS.
	if !spec.HostNetwork {
		errorf("hostNetwork must be true: genlmsg_multicast reaches only the initial network namespace")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		errorf("dnsPolicy %q, want ClusterFirstWithHostNet (cluster DNS with the host network)", spec.DNSPolicy)
	}

	// Ports and probes at GENLBRIDGE_HTTP_ADDR's port.
	port := httpPort(t, env)
	named := map[string]int32{}
	metricsPort := false
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
		if p.Name == "metrics" {
			metricsPort = true
			if int(p.ContainerPort) != port {
				errorf("containerPort metrics = %d, GENLBRIDGE_HTTP_ADDR's port is %d", p.ContainerPort, port)
			}
			if p.HostPort != 0 && p.HostPort != p.ContainerPort {
				errorf("hostPort %d differs from containerPort %d (host network)", p.HostPort, p.ContainerPort)
			}
		}
	}
	if !metricsPort {
		errorf("no containerPort named metrics")
	}
	resolve := func(p intstr.IntOrString) int {
		if p.Type == intstr.String {
			n, ok := named[p.StrVal]
			if !ok {
				errorf("probe port %q names no container port", p.StrVal)
			}
			return int(n)
		}
		return p.IntValue()
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			errorf("%s: want an httpGet probe on %s", pr.name, pr.path)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path {
			errorf("%s path %q, want %s", pr.name, pr.probe.HTTPGet.Path, pr.path)
		}
		if got := resolve(pr.probe.HTTPGet.Port); got != port {
			errorf("%s port %d, GENLBRIDGE_HTTP_ADDR's port is %d", pr.name, got, port)
		}
	}
	if a := ds.Spec.Template.Annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(port) {
		errorf("annotation prometheus.io/port %q, want %d", a, port)
	}

	// Security.
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		errorf("no securityContext with capabilities")
		return
	}
	var drop, add []string
	for _, d := range sc.Capabilities.Drop {
		drop = append(drop, string(d))
	}
	for _, a := range sc.Capabilities.Add {
		add = append(add, string(a))
	}
	if !slices.Equal(drop, []string{"ALL"}) {
		errorf("capabilities dropped %v, want [ALL]", drop)
	}
	if !slices.Equal(add, wantCaps) && !(len(add) == 0 && len(wantCaps) == 0) {
		errorf("capabilities added %v, want %v", add, wantCaps)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		errorf("allowPrivilegeEscalation must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		errorf("privileged")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		errorf("readOnlyRootFilesystem must be true")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && spec.SecurityContext != nil {
		seccomp = spec.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("seccompProfile must be RuntimeDefault")
	}
	// The choice of deploy/README.md: Kubernetes gives a non-root process no
	// capability it can use (no ambient set; file capabilities do not apply
	// under no_new_privs), so a container that adds one runs as uid 0, and
	// one that adds none runs as non-root.
	uid := sc.RunAsUser
	if uid == nil && spec.SecurityContext != nil {
		uid = spec.SecurityContext.RunAsUser
	}
	if len(wantCaps) > 0 {
		if uid == nil || *uid != 0 {
			errorf("adds %v but does not run as uid 0: a non-root process would not hold the capability", wantCaps)
		}
		if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
			errorf("runAsNonRoot with runAsUser 0")
		}
	} else {
		if uid == nil || *uid == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			errorf("adds no capability: want a non-root runAsUser and runAsNonRoot: true")
		}
	}

	// Resources: requests and limits for CPU and memory.
	for _, rl := range []struct {
		name string
		l    corev1.ResourceList
	}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := rl.l[r]; !ok || q.IsZero() {
				errorf("resources.%s.%s missing", rl.name, r)
			}
		}
	}

	// Scheduling and updates.
	everywhere := false
	for _, tol := range spec.Tolerations {
		everywhere = everywhere || (tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == "")
	}
	if !everywhere {
		errorf("want a toleration {operator: Exists} to run on every node")
	}
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil || us.RollingUpdate.MaxUnavailable == nil {
		errorf("want updateStrategy RollingUpdate with maxUnavailable")
	}
	if spec.PriorityClassName != "system-node-critical" {
		errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}

	// Shutdown: the bridge delivers for SHUTDOWN_TIMEOUT, then closes the sink within FLUSH_TIMEOUT.
	stop := duration(t, env, "GENLBRIDGE_SHUTDOWN_TIMEOUT") + duration(t, env, "GENLBRIDGE_FLUSH_TIMEOUT")
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= stop {
		errorf("terminationGracePeriodSeconds must exceed GENLBRIDGE_SHUTDOWN_TIMEOUT + GENLBRIDGE_FLUSH_TIMEOUT = %s", stop)
	}

	// Files named by settings are mounted read-only from Secrets.
	secretVolumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secretVolumes[v.Name] = true
		}
	}
	for name, val := range env {
		if !fileSetting.MatchString(name) || val == "" {
			continue
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			if secretVolumes[m.Name] && m.ReadOnly && strings.HasPrefix(val, strings.TrimSuffix(m.MountPath, "/")+"/") {
				mounted = true
			}
		}
		if !mounted {
			errorf("%s = %s is not in a read-only Secret mount", name, val)
		}
	}
}

func TestDaemonSet(t *testing.T) {
	ds := baseDaemonSet(t)
	checkBridgeDaemonSet(t, "base/daemonset.yaml", ds, []string{"NET_ADMIN"})
	env := literalEnv(t, bridgeContainer(t, ds))
	if env["GENLBRIDGE_NATS_CREDS"] != "/etc/genlbridge/nats/user.creds" {
		t.Errorf("GENLBRIDGE_NATS_CREDS = %q, want /etc/genlbridge/nats/user.creds (deploy/README.md)", env["GENLBRIDGE_NATS_CREDS"])
	}
}

func TestService(t *testing.T) {
	env := literalEnv(t, bridgeContainer(t, baseDaemonSet(t)))
	port := httpPort(t, env)
	objs, err := decodeStrict(read(t, "base/service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[0].(*corev1.Service)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service: want headless (clusterIP: None)")
	}
	if len(svc.Spec.Ports) != 1 || int(svc.Spec.Ports[0].Port) != port || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("service ports %+v, want %d -> metrics", svc.Spec.Ports, port)
	}
	if a := svc.Annotations["prometheus.io/port"]; a != strconv.Itoa(port) {
		t.Errorf("service annotation prometheus.io/port %q, want %d", a, port)
	}
	ds := baseDaemonSet(t)
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s does not select the DaemonSet's pods", k, v)
		}
	}
}

// ---------------------------------------------------------------------------
// Kustomize

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

// ---------------------------------------------------------------------------
// NATS: Helm values and the stream

func TestNATSValues(t *testing.T) {
	var v struct {
		FullnameOverride string `json:"fullnameOverride"`
		Config           struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					Enabled bool   `json:"enabled"`
					MaxSize string `json:"maxSize"`
					PVC     struct {
						Enabled bool   `json:"enabled"`
						Size    string `json:"size"`
					} `json:"pvc"`
				} `json:"fileStore"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(read(t, "nats/values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("want a 3-server cluster, have enabled=%v replicas=%d", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		t.Errorf("want JetStream with a file store on a PVC: %+v", c.JetStream)
	}
	st := streamFile(t)
	if st.Replicas > c.Cluster.Replicas {
		t.Errorf("stream replicas %d > cluster servers %d", st.Replicas, c.Cluster.Replicas)
	}
	maxSize, err1 := resource.ParseQuantity(c.JetStream.FileStore.MaxSize)
	pvc, err2 := resource.ParseQuantity(c.JetStream.FileStore.PVC.Size)
	if err1 != nil || err2 != nil {
		t.Fatalf("fileStore sizes: %v %v", err1, err2)
	}
	if maxSize.Value() < st.MaxBytes || pvc.Cmp(maxSize) < 0 {
		t.Errorf("want stream max_bytes (%d) <= fileStore.maxSize (%s) <= pvc.size (%s)", st.MaxBytes, &maxSize, &pvc)
	}
	// The bridges reach the chart's service.
	env := literalEnv(t, bridgeContainer(t, baseDaemonSet(t)))
	if u := env["GENLBRIDGE_NATS_URL"]; !strings.HasPrefix(u, "nats://"+v.FullnameOverride+".nats.svc") {
		t.Errorf("GENLBRIDGE_NATS_URL %q is not the chart's service %s.nats.svc", u, v.FullnameOverride)
	}
}

func streamFile(t *testing.T) *server.StreamConfig {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(read(t, "nats/stream-genl.json")))
	dec.DisallowUnknownFields()
	var sc server.StreamConfig
	if err := dec.Decode(&sc); err != nil {
		t.Fatalf("nats/stream-genl.json: %v", err)
	}
	return &sc
}

// subjectMatches is NATS subject matching: * one token, > the rest.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func TestStream(t *testing.T) {
	st := streamFile(t)
	ds := baseDaemonSet(t)
	env := literalEnv(t, bridgeContainer(t, ds))
	if effective(t, env, "GENLBRIDGE_SINK") != "jetstream" {
		t.Errorf("the DaemonSet does not use the jetstream sink")
	}
	if st.Storage != server.FileStorage || st.Replicas != 3 || st.MaxAge <= 0 || st.Duplicates <= 0 {
		t.Errorf("want file storage, 3 replicas, a max age and a duplicate window: %+v", st)
	}
	// The subjects capture every subject the bridge makes.
	for _, name := range []string{"GENLBRIDGE_SUBJECT", "GENLBRIDGE_LOSS_SUBJECT"} {
		tmpl, err := sink.ParseTemplate(effective(t, env, name))
		if err != nil {
			t.Fatal(err)
		}
		probe := tmpl.Subject("CONTROL_EXMPL", "EXMPL_GRP", "node-1")
		ok := false
		for _, f := range st.Subjects {
			ok = ok || subjectMatches(f, probe)
		}
		if !ok {
			t.Errorf("stream subjects %v do not capture %s (%s)", st.Subjects, probe, name)
		}
	}
	// The duplicate window covers a republish.
	if span := duration(t, env, "GENLBRIDGE_FLUSH_TIMEOUT") + duration(t, env, "GENLBRIDGE_RETRY_MAX"); st.Duplicates < 4*span {
		t.Errorf("duplicate_window %s < 4 x (FLUSH_TIMEOUT + RETRY_MAX) = %s", st.Duplicates, 4*span)
	}
	// The bridge's STREAM settings describe this stream, so that
	// GENLBRIDGE_STREAM_MANAGE=true would find no difference.
	want := map[string]string{
		"GENLBRIDGE_STREAM":                  st.Name,
		"GENLBRIDGE_STREAM_SUBJECTS":         strings.Join(st.Subjects, ","),
		"GENLBRIDGE_STREAM_MAX_AGE":          st.MaxAge.String(),
		"GENLBRIDGE_STREAM_STORAGE":          st.Storage.String(),
		"GENLBRIDGE_STREAM_REPLICAS":         strconv.Itoa(st.Replicas),
		"GENLBRIDGE_STREAM_DUPLICATE_WINDOW": st.Duplicates.String(),
	}
	for name, w := range want {
		if _, ok := vars(t)[name]; !ok {
			t.Errorf("%s is not a setting of the binary", name)
			continue
		}
		got := effective(t, env, name)
		if d1, err1 := time.ParseDuration(got); err1 == nil {
			if d2, _ := time.ParseDuration(w); d1 == d2 {
				continue
			}
		}
		if !strings.EqualFold(got, w) {
			t.Errorf("%s = %q, the stream has %q", name, got, w)
		}
	}
	for _, n := range []struct {
		name string
		have int64
	}{{"GENLBRIDGE_STREAM_MAX_BYTES", st.MaxBytes}, {"GENLBRIDGE_STREAM_MAX_MSGS", st.MaxMsgs}} {
		var b config.ByteSize
		if err := b.Decode(effective(t, env, n.name)); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		if max(int64(b), -1) != n.have && !(b == 0 && n.have == -1) {
			t.Errorf("%s = %d, the stream has %d", n.name, b, n.have)
		}
	}

	// A JetStream server takes the file as `nats stream add --config` sends it
	// (with one replica: this server is alone).
	raw := map[string]any{}
	if err := json.Unmarshal(read(t, "nats/stream-genl.json"), &raw); err != nil {
		t.Fatal(err)
	}
	raw["num_replicas"] = 1
	req, _ := json.Marshal(raw)
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	resp, err := nc.Request("$JS.API.STREAM.CREATE."+st.Name, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		Config server.StreamConfig `json:"config"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil {
		t.Fatalf("the server refuses the stream: %s", r.Error.Description)
	}
	if r.Config.Duplicates != st.Duplicates || r.Config.MaxAge != st.MaxAge {
		t.Errorf("the server changed the stream: %+v", r.Config)
	}
}

// ---------------------------------------------------------------------------
// Grafana

type fakeSource struct{ subs []bridge.Subscription }

func (f fakeSource) Stats() bridge.Stats { return bridge.Stats{Lost: map[string]uint64{}} }
func (f fakeSource) Subscriptions() []bridge.SubscriptionStatus {
	var out []bridge.SubscriptionStatus
	for _, s := range f.subs {
		out = append(out, bridge.SubscriptionStatus{Subscription: s, State: bridge.StateJoined})
	}
	return out
}

// exported returns the metric families the binary's registry exports, with
// their types.
func exported(t *testing.T) map[string]string {
	t.Helper()
	subs, err := bridge.ParseSubscriptions([]string{"CONTROL_EXMPL/EXMPL_GRP"})
	if err != nil {
		t.Fatal(err)
	}
	m := monitor.New(monitor.Options{Version: "test"})
	m.SetSource(fakeSource{subs: subs})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range fams {
		out[f.GetName()] = f.GetType().String()
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:genlbridge|process|go)_[a-z0-9_]*[a-z0-9]`)

func TestGrafanaDashboard(t *testing.T) {
	var dash any
	if err := json.Unmarshal(read(t, "grafana/genlbridge.json"), &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				exprs = append(exprs, x)
			}
		}
	}
	walk(dash, "")
	if len(exprs) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	have := exported(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			base := name
			if _, ok := have[name]; !ok {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b := strings.TrimSuffix(name, suf); b != name && (have[b] == "HISTOGRAM" || have[b] == "SUMMARY") {
						base = b
					}
				}
			}
			if _, ok := have[base]; !ok {
				t.Errorf("the dashboard queries %s, which the binary does not export (in %q)", name, e)
			}
			used[base] = true
		}
	}
	// What the dashboard must show (issue 5): every metric of the bridge.
	for name := range have {
		if strings.HasPrefix(name, "genlbridge_") && !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}

// ---------------------------------------------------------------------------
// systemd

func TestSystemdUnit(t *testing.T) {
	data := read(t, "systemd/genlbridge.service")
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Errorf("not key=value: %q", l)
				continue
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	want := map[string]string{
		"CapabilityBoundingSet":   "CAP_NET_ADMIN",
		"AmbientCapabilities":     "CAP_NET_ADMIN",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"StateDirectory":          "genlbridge",
		"DynamicUser":             "yes",
		"RestrictAddressFamilies": "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
		"EnvironmentFile":         "-/etc/genlbridge/env",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		if got := keys["Service."+k]; !slices.Equal(got, []string{v}) {
			t.Errorf("[Service] %s = %v, want %s", k, got, v)
		}
	}
	for _, k := range []string{"PrivateNetwork", "User"} {
		if keys["Service."+k] != nil {
			t.Errorf("[Service] %s is set: %v", k, keys["Service."+k])
		}
	}
	if ex := keys["Service.ExecStart"]; len(ex) != 1 || !strings.HasSuffix(ex[0], "genlbridge run") {
		t.Errorf("ExecStart %v, want .../genlbridge run", ex)
	}
	env := map[string]string{}
	for _, e := range keys["Service.Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		env[k] = v
	}
	if env["GENLBRIDGE_DATA_DIR"] != "/var/lib/"+keys["Service.StateDirectory"][0] {
		t.Errorf("GENLBRIDGE_DATA_DIR %q is not the state directory", env["GENLBRIDGE_DATA_DIR"])
	}
	if _, err := loadWith(t, env); err != nil {
		t.Errorf("the binary rejects the unit's settings: %v", err)
	}
	stop := duration(t, env, "GENLBRIDGE_SHUTDOWN_TIMEOUT") + duration(t, env, "GENLBRIDGE_FLUSH_TIMEOUT")
	ts := keys["Service.TimeoutStopSec"]
	if len(ts) != 1 {
		t.Fatalf("TimeoutStopSec %v", ts)
	}
	d, err := time.ParseDuration(ts[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", ts[0], err)
	}
	if d <= stop {
		t.Errorf("TimeoutStopSec %s must exceed GENLBRIDGE_SHUTDOWN_TIMEOUT + GENLBRIDGE_FLUSH_TIMEOUT = %s", d, stop)
	}
}

// Every GENLBRIDGE_ name written anywhere in deploy/ or the Dockerfile is a
// setting (a name ending in _ or _* is a prefix of some).
func TestSettingNamesInFiles(t *testing.T) {
	known := vars(t)
	files := deployFiles(t, func(p string) bool { return !strings.HasSuffix(p, "_test.go") })
	files = append(files, "../Dockerfile")
	re := regexp.MustCompile(`GENLBRIDGE_[A-Z0-9_]*`)
	for _, f := range files {
		for _, name := range re.FindAllString(string(read(t, f)), -1) {
			if strings.HasSuffix(name, "_") {
				found := false
				for k := range known {
					found = found || strings.HasPrefix(k, name)
				}
				if !found {
					t.Errorf("%s: %s* matches no setting", f, name)
				}
				continue
			}
			if _, ok := known[name]; !ok {
				t.Errorf("%s: %s is not a setting of the binary", f, name)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	cmd, args string
	line      int
}

func parseDockerfile(t *testing.T, p string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(read(t, p)), "\n") {
		tl := strings.TrimSpace(l)
		if cur.Len() == 0 && (tl == "" || strings.HasPrefix(tl, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(tl, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(tl, `\`) {
			cur.WriteString(strings.TrimSuffix(tl, `\`) + " ")
			continue
		}
		cur.WriteString(tl)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

func goVersion(t *testing.T) string {
	t.Helper()
	for _, l := range strings.Split(string(read(t, "../go.mod")), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod: no go directive")
	return ""
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	var stages [][]instruction
	args := map[string]string{}
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if in.cmd == "ARG" && len(stages) == 0 {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, have %d stages", len(stages))
	}
	if gv := goVersion(t); args["GO_VERSION"] != gv {
		t.Errorf("ARG GO_VERSION=%q, go.mod says go %s", args["GO_VERSION"], gv)
	}
	build, final := stages[0], stages[len(stages)-1]
	if from := build[0].args; !strings.Contains(from, "golang:${GO_VERSION}") || !strings.Contains(from, " AS ") {
		t.Errorf("first stage %q: want a named golang:${GO_VERSION} builder", from)
	}
	built := false
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = true
			for _, w := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/genlbridge", "-o /out/genlbridge"} {
				if !strings.Contains(in.args, w) {
					t.Errorf("line %d: go build without %s", in.line, w)
				}
			}
		}
	}
	if !built {
		t.Error("the builder stage runs no go build")
	}

	var user, entrypoint, cmd string
	var expose []string
	labels := map[string]bool{}
	copied := false
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "LABEL":
			for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)=`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = true
			}
		case "COPY":
			copied = copied || strings.HasPrefix(in.args, "--from=build /out/genlbridge /genlbridge")
		}
	}
	if !strings.HasPrefix(final[0].args, "gcr.io/distroless/static") && final[0].args != "scratch" {
		t.Errorf("final image %q: want distroless static or scratch", final[0].args)
	}
	if !copied {
		t.Error("the final stage does not copy /out/genlbridge from the build stage to /genlbridge")
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	for _, l := range []string{"title", "description", "source", "version"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no label org.opencontainers.image.%s", l)
		}
	}
	port := httpPort(t, nil)
	if !slices.Contains(expose, strconv.Itoa(port)) && !slices.Contains(expose, strconv.Itoa(port)+"/tcp") {
		t.Errorf("EXPOSE %v, want %d (GENLBRIDGE_HTTP_ADDR's default)", expose, port)
	}
	if entrypoint != `["/genlbridge"]` || cmd != `["run"]` {
		t.Errorf(`ENTRYPOINT %s CMD %s, want ["/genlbridge"] ["run"]`, entrypoint, cmd)
	}
}

// dockerIgnored is .dockerignore's verdict on a path of the build context
// (patterns as path.Match, ** for any directories, ! for exceptions; the
// last match wins).
func dockerIgnored(patterns []string, p string) bool {
	ignored := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.TrimPrefix(pat, "!")
		match := false
		for dir := p; ; dir = path.Dir(dir) {
			if ok, _ := path.Match(pat, dir); ok {
				match = true
			}
			if rest, ok := strings.CutPrefix(pat, "**/"); ok {
				if ok, _ := path.Match(rest, path.Base(dir)); ok {
					match = true
				}
			}
			if dir == "." || dir == "/" || !strings.Contains(dir, "/") {
				break
			}
		}
		if match {
			ignored = !neg
		}
	}
	return ignored
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(read(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	// What the images need: the Go module and the binary's packages, the
	// module's sources and the init container's script.
	need := []string{"go.mod", "go.sum", "cmd/genlbridge/main.go", "bridge/bridge.go", "config/config.go",
		"monitor/monitor.go", "sink/nats.go", "event/event.go", "kmod/genl_exmpl.c", "kmod/Kbuild",
		"deploy/kmod/build-and-load.sh"}
	for _, df := range []string{"../Dockerfile", "kmod/Dockerfile"} {
		for _, in := range parseDockerfile(t, df) {
			if in.cmd != "COPY" || strings.HasPrefix(in.args, "--from") {
				continue
			}
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if src != "." && !strings.HasPrefix(src, "--") {
					need = append(need, src)
				}
			}
		}
	}
	for _, p := range need {
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if dockerIgnored(patterns, p) {
			t.Errorf(".dockerignore excludes %s, which an image needs", p)
		}
	}
	for _, p := range []string{".git/config", "build/genlbridge", "deploy/base/daemonset.yaml", "kmod/genl_exmpl.ko"} {
		if !dockerIgnored(patterns, p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
}

// ---------------------------------------------------------------------------
// README

func TestReadmeNamesEveryFile(t *testing.T) {
	readme := string(read(t, "README.md"))
	for _, f := range deployFiles(t, func(p string) bool { return p != "README.md" }) {
		rel := filepath.ToSlash(f)
		if !strings.Contains(readme, rel) && !strings.Contains(readme, "`"+path.Base(rel)+"`") {
			t.Errorf("README.md does not mention %s", rel)
		}
	}
}
