// The bridge's DaemonSet: base/daemonset.yaml (and, through
// checkBridgeDaemonSet, the DaemonSet of every kustomize build, see
// kustomize_test.go) against the binary's settings (config.Vars,
// config.Load), its HTTP port and probes, and what the kernel and Kubernetes
// demand of a node agent that reads generic netlink multicast.
//
// The checks are the table daemonSetChecks, each run as a subtest named
// after the property it checks, so that a failure reads e.g.
// TestKustomizeExamples/no-net-admin/runAsUser.

package deploy_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

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

// bridgeDaemonSet is what every check of daemonSetChecks looks at.
type bridgeDaemonSet struct {
	where    string // where the DaemonSet comes from; it starts every error
	ds       *appsv1.DaemonSet
	spec     *corev1.PodSpec   // &ds.Spec.Template.Spec
	c        *corev1.Container // the container named genlbridge
	env      map[string]string // c's GENLBRIDGE_* variables with literal values
	wantCaps []string          // the capabilities c must add, exactly
}

func (d *bridgeDaemonSet) errorf(t *testing.T, format string, a ...any) {
	t.Helper()
	t.Errorf(d.where+": "+format, a...)
}

// securityContext is the container's securityContext, for the checks of its
// fields; they skip when it is missing or has no capabilities, which check
// securityContext reports.
func (d *bridgeDaemonSet) securityContext(t *testing.T) *corev1.SecurityContext {
	t.Helper()
	sc := d.c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Skip("no securityContext with capabilities (see check securityContext)")
	}
	return sc
}

// checkProbe checks that probe is an httpGet probe on path at
// GENLBRIDGE_HTTP_ADDR's port, the port given by number or by the name of a
// container port.
func (d *bridgeDaemonSet) checkProbe(t *testing.T, name string, probe *corev1.Probe, path string) {
	t.Helper()
	port := httpPort(t, d.env)
	named := map[string]int32{}
	for _, p := range d.c.Ports {
		named[p.Name] = p.ContainerPort
	}
	resolve := func(p intstr.IntOrString) int {
		if p.Type == intstr.String {
			n, ok := named[p.StrVal]
			if !ok {
				d.errorf(t, "probe port %q names no container port", p.StrVal)
			}
			return int(n)
		}
		return p.IntValue()
	}
	if probe == nil || probe.HTTPGet == nil {
		d.errorf(t, "%s: want an httpGet probe on %s", name, path)
		return
	}
	if probe.HTTPGet.Path != path {
		d.errorf(t, "%s path %q, want %s", name, probe.HTTPGet.Path, path)
	}
	if got := resolve(probe.HTTPGet.Port); got != port {
		d.errorf(t, "%s port %d, GENLBRIDGE_HTTP_ADDR's port is %d", name, got, port)
	}
}

// daemonSetChecks check the bridge's DaemonSet against the binary, one
// property each; checkBridgeDaemonSet runs them.
var daemonSetChecks = []struct {
	name  string
	check func(t *testing.T, d *bridgeDaemonSet)
}{
	// Environment: real names, values the binary accepts, NODE_NAME from the downward API.
	{"env", func(t *testing.T, d *bridgeDaemonSet) {
		known := vars(t)
		seen := map[string]bool{}
		for _, e := range d.c.Env {
			if seen[e.Name] {
				d.errorf(t, "env %s set twice", e.Name)
			}
			seen[e.Name] = true
			if e.Name == "NODE_NAME" || goRuntimeVars[e.Name] {
				continue
			}
			if _, ok := known[e.Name]; !ok {
				d.errorf(t, "env %s is not a setting of the binary (config.Vars()), NODE_NAME nor a Go runtime variable", e.Name)
			}
		}
	}},
	{"NODE_NAME", func(t *testing.T, d *bridgeDaemonSet) {
		seen := false
		for _, e := range d.c.Env {
			if e.Name != "NODE_NAME" {
				continue
			}
			seen = true
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				d.errorf(t, "NODE_NAME must come from the downward API (fieldRef spec.nodeName)")
			}
		}
		if !seen {
			d.errorf(t, "no NODE_NAME: events would carry the pod's host name only by accident of hostNetwork")
		}
	}},
	{"configLoad", func(t *testing.T, d *bridgeDaemonSet) {
		if _, err := loadWith(t, d.env); err != nil {
			d.errorf(t, "the binary rejects the manifest's settings: %v", err)
		}
	}},
	{"GENLBRIDGE_NATS_URL", func(t *testing.T, d *bridgeDaemonSet) {
		if d.env["GENLBRIDGE_NATS_URL"] == "" {
			d.errorf(t, "GENLBRIDGE_NATS_URL is empty: the bridge would start an embedded server, on a read-only root filesystem")
		}
	}},

	// Network: the host's, with cluster DNS.
	{"hostNetwork", func(t *testing.T, d *bridgeDaemonSet) {
		if !d.spec.HostNetwork {
			d.errorf(t, "hostNetwork must be true: genlmsg_multicast reaches only the initial network namespace")
		}
	}},
	{"dnsPolicy", func(t *testing.T, d *bridgeDaemonSet) {
		if d.spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			d.errorf(t, "dnsPolicy %q, want ClusterFirstWithHostNet (cluster DNS with the host network)", d.spec.DNSPolicy)
		}
	}},

	// Ports and probes at GENLBRIDGE_HTTP_ADDR's port.
	{"metricsPort", func(t *testing.T, d *bridgeDaemonSet) {
		port := httpPort(t, d.env)
		metricsPort := false
		for _, p := range d.c.Ports {
			if p.Name == "metrics" {
				metricsPort = true
				if int(p.ContainerPort) != port {
					d.errorf(t, "containerPort metrics = %d, GENLBRIDGE_HTTP_ADDR's port is %d", p.ContainerPort, port)
				}
				if p.HostPort != 0 && p.HostPort != p.ContainerPort {
					d.errorf(t, "hostPort %d differs from containerPort %d (host network)", p.HostPort, p.ContainerPort)
				}
			}
		}
		if !metricsPort {
			d.errorf(t, "no containerPort named metrics")
		}
	}},
	{"livenessProbe", func(t *testing.T, d *bridgeDaemonSet) {
		d.checkProbe(t, "livenessProbe", d.c.LivenessProbe, "/healthz")
	}},
	{"readinessProbe", func(t *testing.T, d *bridgeDaemonSet) {
		d.checkProbe(t, "readinessProbe", d.c.ReadinessProbe, "/readyz")
	}},
	{"prometheusPortAnnotation", func(t *testing.T, d *bridgeDaemonSet) {
		port := httpPort(t, d.env)
		if a := d.ds.Spec.Template.Annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(port) {
			d.errorf(t, "annotation prometheus.io/port %q, want %d", a, port)
		}
	}},

	// Security.
	{"securityContext", func(t *testing.T, d *bridgeDaemonSet) {
		if sc := d.c.SecurityContext; sc == nil || sc.Capabilities == nil {
			d.errorf(t, "no securityContext with capabilities")
		}
	}},
	{"capabilitiesDrop", func(t *testing.T, d *bridgeDaemonSet) {
		var drop []string
		for _, c := range d.securityContext(t).Capabilities.Drop {
			drop = append(drop, string(c))
		}
		if !slices.Equal(drop, []string{"ALL"}) {
			d.errorf(t, "capabilities dropped %v, want [ALL]", drop)
		}
	}},
	{"capabilitiesAdd", func(t *testing.T, d *bridgeDaemonSet) {
		var add []string
		for _, c := range d.securityContext(t).Capabilities.Add {
			add = append(add, string(c))
		}
		if !slices.Equal(add, d.wantCaps) && !(len(add) == 0 && len(d.wantCaps) == 0) {
			d.errorf(t, "capabilities added %v, want %v", add, d.wantCaps)
		}
	}},
	{"allowPrivilegeEscalation", func(t *testing.T, d *bridgeDaemonSet) {
		if sc := d.securityContext(t); sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			d.errorf(t, "allowPrivilegeEscalation must be false")
		}
	}},
	{"privileged", func(t *testing.T, d *bridgeDaemonSet) {
		if sc := d.securityContext(t); sc.Privileged != nil && *sc.Privileged {
			d.errorf(t, "privileged")
		}
	}},
	{"readOnlyRootFilesystem", func(t *testing.T, d *bridgeDaemonSet) {
		if sc := d.securityContext(t); sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			d.errorf(t, "readOnlyRootFilesystem must be true")
		}
	}},
	{"seccompProfile", func(t *testing.T, d *bridgeDaemonSet) {
		seccomp := d.securityContext(t).SeccompProfile
		if seccomp == nil && d.spec.SecurityContext != nil {
			seccomp = d.spec.SecurityContext.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			d.errorf(t, "seccompProfile must be RuntimeDefault")
		}
	}},
	// The choice of deploy/README.md: Kubernetes gives a non-root process no
	// capability it can use (no ambient set; file capabilities do not apply
	// under no_new_privs), so a container that adds one runs as uid 0, and
	// one that adds none runs as non-root.
	{"runAsUser", func(t *testing.T, d *bridgeDaemonSet) {
		sc := d.securityContext(t)
		uid := sc.RunAsUser
		if uid == nil && d.spec.SecurityContext != nil {
			uid = d.spec.SecurityContext.RunAsUser
		}
		if len(d.wantCaps) > 0 {
			if uid == nil || *uid != 0 {
				d.errorf(t, "adds %v but does not run as uid 0: a non-root process would not hold the capability", d.wantCaps)
			}
			if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
				d.errorf(t, "runAsNonRoot with runAsUser 0")
			}
		} else {
			if uid == nil || *uid == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				d.errorf(t, "adds no capability: want a non-root runAsUser and runAsNonRoot: true")
			}
		}
	}},

	// Resources: requests and limits for CPU and memory.
	{"resources", func(t *testing.T, d *bridgeDaemonSet) {
		for _, rl := range []struct {
			name string
			l    corev1.ResourceList
		}{{"requests", d.c.Resources.Requests}, {"limits", d.c.Resources.Limits}} {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := rl.l[r]; !ok || q.IsZero() {
					d.errorf(t, "resources.%s.%s missing", rl.name, r)
				}
			}
		}
	}},

	// Scheduling and updates.
	{"tolerations", func(t *testing.T, d *bridgeDaemonSet) {
		everywhere := false
		for _, tol := range d.spec.Tolerations {
			everywhere = everywhere || (tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == "")
		}
		if !everywhere {
			d.errorf(t, "want a toleration {operator: Exists} to run on every node")
		}
	}},
	{"updateStrategy", func(t *testing.T, d *bridgeDaemonSet) {
		us := d.ds.Spec.UpdateStrategy
		if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil || us.RollingUpdate.MaxUnavailable == nil {
			d.errorf(t, "want updateStrategy RollingUpdate with maxUnavailable")
		}
	}},
	{"priorityClassName", func(t *testing.T, d *bridgeDaemonSet) {
		if d.spec.PriorityClassName != "system-node-critical" {
			d.errorf(t, "priorityClassName %q, want system-node-critical", d.spec.PriorityClassName)
		}
	}},

	// Shutdown: the bridge delivers for SHUTDOWN_TIMEOUT, then closes the sink within FLUSH_TIMEOUT.
	{"terminationGracePeriodSeconds", func(t *testing.T, d *bridgeDaemonSet) {
		stop := duration(t, d.env, "GENLBRIDGE_SHUTDOWN_TIMEOUT") + duration(t, d.env, "GENLBRIDGE_FLUSH_TIMEOUT")
		if g := d.spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= stop {
			d.errorf(t, "terminationGracePeriodSeconds must exceed GENLBRIDGE_SHUTDOWN_TIMEOUT + GENLBRIDGE_FLUSH_TIMEOUT = %s", stop)
		}
	}},

	// The spool: on, in a hostPath directory that outlives the pod.
	{"spool", func(t *testing.T, d *bridgeDaemonSet) {
		cfg, err := loadWith(t, d.env)
		if err != nil {
			return // configLoad says why
		}
		if !cfg.UsesSpool() {
			d.errorf(t, "the spool is off: an outage of the NATS cluster longer than the socket buffer holds loses events")
			return
		}
		dir := cfg.SpoolDir
		var mount *corev1.VolumeMount
		for i, m := range d.c.VolumeMounts {
			if dir == m.MountPath || strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/") {
				mount = &d.c.VolumeMounts[i]
			}
		}
		if mount == nil {
			d.errorf(t, "GENLBRIDGE_SPOOL_DIR %s is in no volume: the root filesystem is read-only, and a pod's own disk goes with the pod", dir)
			return
		}
		if mount.ReadOnly {
			d.errorf(t, "the spool's mount %s is read-only", mount.MountPath)
		}
		for _, v := range d.spec.Volumes {
			if v.Name != mount.Name {
				continue
			}
			switch {
			case v.HostPath != nil:
				if v.HostPath.Type == nil || (*v.HostPath.Type != corev1.HostPathDirectoryOrCreate && *v.HostPath.Type != corev1.HostPathDirectory) {
					d.errorf(t, "the spool's hostPath %s wants type DirectoryOrCreate (or Directory, made beforehand for a non-root user)", v.HostPath.Path)
				}
			case v.EmptyDir != nil:
				d.errorf(t, "the spool is an emptyDir: every rollout deletes it, and what it holds")
			case v.PersistentVolumeClaim == nil:
				d.errorf(t, "the spool's volume %s is neither a hostPath nor a persistent volume", v.Name)
			}
		}
	}},
	// GOMEMLIMIT, if set, leaves the collector room below the memory limit.
	{"GOMEMLIMIT", func(t *testing.T, d *bridgeDaemonSet) {
		var val string
		for _, e := range d.c.Env {
			if e.Name == "GOMEMLIMIT" {
				val = e.Value
			}
		}
		if val == "" {
			return
		}
		// Go's units (KiB, MiB, GiB; B) without the B are Kubernetes' own.
		lim, err := resource.ParseQuantity(strings.TrimSuffix(val, "B"))
		if err != nil {
			d.errorf(t, "GOMEMLIMIT %q: %v", val, err)
			return
		}
		mem, ok := d.c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			d.errorf(t, "GOMEMLIMIT %s without a memory limit", val)
			return
		}
		if lim.Value() > mem.Value()*8/10 {
			d.errorf(t, "GOMEMLIMIT %s is more than 80%% of the memory limit %s", val, mem.String())
		}
	}},

	// Files named by settings are mounted read-only from Secrets, or are
	// the projected service account token (GENLBRIDGE_NATS_TOKEN_FILE).
	{"secretMounts", func(t *testing.T, d *bridgeDaemonSet) {
		secretVolumes := map[string]bool{}
		for _, v := range d.spec.Volumes {
			if v.Secret != nil {
				secretVolumes[v.Name] = true
			}
		}
		for name, val := range d.env {
			if !fileSetting.MatchString(name) || val == "" {
				continue
			}
			if _, _, ok := projectedToken(d.spec, d.c, val); ok {
				continue // checked by natsToken
			}
			if !inSecretMount(d.c, secretVolumes, val) {
				d.errorf(t, "%s = %s is not in a read-only Secret mount", name, val)
			}
		}
	}},
	// The NATS token, if the bridge connects with one, is the pod's own
	// projected service account token for the callout's audience, short-lived.
	{"natsToken", func(t *testing.T, d *bridgeDaemonSet) {
		file := d.env["GENLBRIDGE_NATS_TOKEN_FILE"]
		if file == "" {
			return
		}
		src, ro, ok := projectedToken(d.spec, d.c, file)
		if !ok {
			d.errorf(t, "GENLBRIDGE_NATS_TOKEN_FILE %s is not a projected service account token of the pod", file)
			return
		}
		if !ro {
			d.errorf(t, "the token's mount is not read-only")
		}
		if src.Audience != calloutAudience {
			d.errorf(t, "the token's audience is %q, want %q (the responder's GENLBRIDGE_CALLOUT_AUDIENCE): a token for the API server's audience would be usable against it", src.Audience, calloutAudience)
		}
		// The API server's minimum is 600 s; an hour bounds what a stolen token is worth.
		if e := src.ExpirationSeconds; e == nil || *e < 600 || *e > 3600 {
			d.errorf(t, "the token's expirationSeconds %v: want 600..3600", e)
		}
	}},
}

// calloutAudience is the audience of the DaemonSet's NATS token: what
// deploy/nats/callout admits (callout_test.go checks it does).
const calloutAudience = "genlbridge-nats"

// inSecretMount tells whether file lies in a read-only mount of one of the
// Secret volumes.
func inSecretMount(c *corev1.Container, secretVolumes map[string]bool, file string) bool {
	for _, m := range c.VolumeMounts {
		if secretVolumes[m.Name] && m.ReadOnly && strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// projectedToken finds the projected serviceAccountToken source that file
// is, in the container's mounts, and whether that mount is read-only.
func projectedToken(spec *corev1.PodSpec, c *corev1.Container, file string) (*corev1.ServiceAccountTokenProjection, bool, bool) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if !strings.HasPrefix(file, dir) || m.SubPath != "" {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil && dir+s.ServiceAccountToken.Path == file {
					return s.ServiceAccountToken, m.ReadOnly, true
				}
			}
		}
	}
	return nil, false, false
}

// goRuntimeVars are the Go runtime's variables a manifest may set.
var goRuntimeVars = map[string]bool{"GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true, "GODEBUG": true}

// checkBridgeDaemonSet checks the bridge's DaemonSet against the binary, each
// of daemonSetChecks in a subtest of its name; where names the DaemonSet's
// source in the errors, and wantCaps are the capabilities its container must
// add, exactly.
func checkBridgeDaemonSet(t *testing.T, where string, ds *appsv1.DaemonSet, wantCaps []string) {
	t.Helper()
	c := bridgeContainer(t, ds)
	d := &bridgeDaemonSet{
		where:    where,
		ds:       ds,
		spec:     &ds.Spec.Template.Spec,
		c:        c,
		env:      literalEnv(t, c),
		wantCaps: wantCaps,
	}
	for _, dc := range daemonSetChecks {
		t.Run(dc.name, func(t *testing.T) { dc.check(t, d) })
	}
}

func TestDaemonSet(t *testing.T) {
	ds := baseDaemonSet(t)
	checkBridgeDaemonSet(t, "base/daemonset.yaml", ds, []string{"NET_ADMIN"})
	// No NATS secret on the nodes: the pod's own token, nothing else.
	env := literalEnv(t, bridgeContainer(t, ds))
	if env["GENLBRIDGE_NATS_TOKEN_FILE"] != "/var/run/secrets/genlbridge/nats-token" {
		t.Errorf("GENLBRIDGE_NATS_TOKEN_FILE = %q, want /var/run/secrets/genlbridge/nats-token (deploy/README.md)", env["GENLBRIDGE_NATS_TOKEN_FILE"])
	}
	for name, val := range env {
		if strings.HasPrefix(name, "GENLBRIDGE_NATS_") && name != "GENLBRIDGE_NATS_URL" && name != "GENLBRIDGE_NATS_TOKEN_FILE" && val != "" {
			t.Errorf("%s is set: the base authenticates with the pod's token alone", name)
		}
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("volume %s is a Secret (%s): the base mounts no secret", v.Name, v.Secret.SecretName)
		}
	}
}
