//go:build k8s

package k8stest

// What the tests share: the cluster (started once, by the first test that
// needs it, stopped by TestMain with the host checked), the hub (a
// nats-server process on the host's loopback with JetStream and an nkey
// user for the bridge), the test overlay of deploy/base, the pods, their
// metrics, and a generator of module-shaped events.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/k8scluster"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	corev1 "k8s.io/api/core/v1"
)

const (
	namespace = "genlbridge"
	dsName    = "genlbridge"
	podLabel  = "app.kubernetes.io/name=genlbridge"
	// The injected load: module-shaped events (internal/inject) multicast
	// from userspace into VFS_DQUOT's group in the host's network
	// namespace, a group nothing else on this machine listens to or sends
	// to (no disk quotas here), decoded with the example module's schema.
	injectFamily, injectGroup = "VFS_DQUOT", "events"
	injectSub                 = injectFamily + "/" + injectGroup + ":exmpl"
)

var (
	repoRoot = func() string { d, _ := filepath.Abs(".."); return d }()
	// Set by make k8s-test; the defaults are its paths.
	binDir   = envOr("K8STEST_BIN", filepath.Join(repoRoot, "build/k8s/bin"))
	stateDir = envOr("K8STEST_STATE", filepath.Join(repoRoot, "build/k8s/state"))
	imageOCI = envOr("K8STEST_IMAGE_OCI", filepath.Join(repoRoot, "build/image/oci"))
	imageTar = envOr("K8STEST_IMAGE_TAR", filepath.Join(repoRoot, "build/image/genlbridge.tar"))
	// nats-server, for the hub: make k8s-test builds it into build/k8s/bin;
	// otherwise the first hub builds it into a directory removed at the end.
	natsServer = os.Getenv("K8STEST_NATS_SERVER")
	natsOnce   sync.Once
	natsDir    string
	imageRepo  = "localhost/genlbridge"
	keepLogsTo = os.Getenv("K8STEST_LOGS") // a directory to copy the components' logs to

	clusterOnce sync.Once
	cluster     *k8scluster.Cluster
	clusterErr  error
	imageTag    string
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if natsDir != "" {
		os.RemoveAll(natsDir)
	}
	if cluster != nil {
		if keepLogsTo != "" {
			_ = os.MkdirAll(keepLogsTo, 0o755)
			logs, _ := filepath.Glob(cluster.Path("logs", "*.log"))
			for _, l := range logs {
				if b, err := os.ReadFile(l); err == nil {
					_ = os.WriteFile(filepath.Join(keepLogsTo, filepath.Base(l)), b, 0o644)
				}
			}
		}
		start := time.Now()
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "k8stest: stopping the cluster: %v\n", err)
			code = 1
		} else {
			fmt.Fprintf(os.Stderr, "k8stest: cluster stopped in %v; no process, mount, cgroup, sysctl, iptables rule or file of the components left on the host\n", time.Since(start).Round(time.Millisecond))
		}
	}
	os.Exit(code)
}

// need skips t unless it runs as root, and returns the cluster, started
// once for all tests with the image imported.
func need(t *testing.T) *k8scluster.Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs etcd, containerd, a kubelet and pods on the host network; run as root: make k8s-test")
	}
	clusterOnce.Do(func() {
		tag, err := imageRef(imageOCI)
		if err != nil {
			clusterErr = fmt.Errorf("the image (make image): %w", err)
			return
		}
		imageTag = tag
		dir, err := os.MkdirTemp("", "k8s-")
		if err != nil {
			clusterErr = err
			return
		}
		host, _ := os.Hostname()
		start := time.Now()
		cluster, clusterErr = k8scluster.Start(k8scluster.Config{
			Bin: binDir, Dir: dir, StateDir: stateDir,
			Logf: func(f string, a ...any) {
				if testing.Verbose() {
					fmt.Fprintf(os.Stderr, "k8scluster: "+f+"\n", a...)
				}
			},
		})
		if clusterErr != nil {
			return
		}
		// Not the kernel's hostname: the events must carry the node's
		// name, which only the downward API (NODE_NAME) gives the pod.
		if cluster.NodeName() == host {
			clusterErr = fmt.Errorf("the node's name equals the hostname %q", host)
			return
		}
		if err := cluster.ImportImage(imageTar, imageRepo); err != nil {
			clusterErr = err
			return
		}
		if out, err := cluster.Ctr("images", "ls", "-q"); err != nil || !strings.Contains(out, imageRepo+":"+imageTag+"\n") {
			clusterErr = fmt.Errorf("%s:%s is not in the node's images after the import (%v):\n%s", imageRepo, imageTag, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "k8stest: cluster up and %s:%s imported in %v\n", imageRepo, imageTag, time.Since(start).Round(time.Millisecond))
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return cluster
}

// imageRef reads the tag of the manifest list in the OCI layout.
func imageRef(layout string) (string, error) {
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return "", err
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] == "" {
		return "", fmt.Errorf("%s: want one named manifest list", layout)
	}
	return idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"], nil
}

// kubectl runs kubectl and fails the test on error.
func kubectl(t *testing.T, c *k8scluster.Cluster, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---------------------------------------------------------------------------
// The hub

// hub is a nats-server process on the host's loopback with JetStream and
// two nkey users: the bridges', and the test's own. (The test's is an nkey
// too so that the server, with the bridges' user revoked, still offers
// nkey authentication: a server with no nkey user left sends no nonce, and
// nats.go then retries forever rather than see an authorization error.)
type hub struct {
	t       *testing.T
	bin     string
	port    int
	dir     string
	conf    string
	seed    []byte // the bridges' nkey seed
	pub     string
	admin   nkeys.KeyPair
	revoked bool
	cmd     *exec.Cmd
	exited  chan struct{}
	nc      *nats.Conn
}

func startHub(t *testing.T) *hub {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	admin, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{t: t, bin: natsServerBinary(t), port: proctest.FreePort(t), dir: t.TempDir(), seed: seed, pub: pub, admin: admin}
	h.conf = filepath.Join(h.dir, "hub.conf")
	h.writeConf()
	h.start()
	t.Cleanup(func() {
		if h.nc != nil {
			h.nc.Close()
		}
		h.kill()
	})
	nc, err := nats.Connect(h.url(), h.adminAuth(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h.nc = nc
	h.createStream()
	return h
}

// natsServerBinary is K8STEST_NATS_SERVER, or nats-server built from the
// module's dependency once.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		if natsServer != "" {
			return
		}
		dir, err := os.MkdirTemp("", "k8stest-nats-")
		if err != nil {
			return
		}
		natsDir = dir
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("go build nats-server: %v: %s", err, out)
			return
		}
		natsServer = filepath.Join(dir, "nats-server")
	})
	if natsServer == "" {
		t.Fatal("no nats-server for the hub")
	}
	return natsServer
}

func (h *hub) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", h.port) }

// adminAuth authenticates the test's own client.
func (h *hub) adminAuth() nats.Option {
	pub, _ := h.admin.PublicKey()
	return nats.Nkey(pub, h.admin.Sign)
}

func (h *hub) writeConf() {
	h.t.Helper()
	admin, _ := h.admin.PublicKey()
	users := fmt.Sprintf("{nkey: %s}", admin)
	if !h.revoked {
		users += fmt.Sprintf(", {nkey: %s}", h.pub)
	}
	conf := fmt.Sprintf("server_name: k8stest-hub\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\nauthorization { users: [%s] }\n",
		h.port, filepath.Join(h.dir, "store"), users)
	if err := os.WriteFile(h.conf, []byte(conf), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *hub) start() {
	h.t.Helper()
	cmd := exec.Command(h.bin, "-c", h.conf)
	logf, err := os.OpenFile(filepath.Join(h.dir, "hub.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := k8scluster.Spawn(cmd); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	h.cmd, h.exited = cmd, exited
	waitFor(h.t, 30*time.Second, "the hub to listen", func() bool {
		select {
		case <-exited:
			h.t.Fatalf("the hub exited; its log:\n%s", h.log())
		default:
		}
		nc, err := nats.Connect(h.url(), h.adminAuth())
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
}

func (h *hub) log() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "hub.log"))
	return string(b)
}

// kill ends the hub with SIGKILL (its store stays for the next start).
func (h *hub) kill() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.exited
	h.cmd = nil
}

// revoke reloads the hub without the bridges' user (or with it again).
func (h *hub) revoke(revoked bool) {
	h.t.Helper()
	h.revoked = revoked
	h.writeConf()
	if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		h.t.Fatal(err)
	}
}

// createStream makes the stream of deploy/nats/stream-genl.json, as an
// administrator would with `nats stream add --config`, with one replica
// (one server) and 1 GiB.
func (h *hub) createStream() {
	h.t.Helper()
	createStream(h.t, h.nc)
}

// createStream makes the stream of deploy/nats/stream-genl.json through nc.
func createStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/nats/stream-genl.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["num_replicas"] = 1
	cfg["max_bytes"] = 1 << 30
	req, _ := json.Marshal(cfg)
	resp, err := nc.Request("$JS.API.STREAM.CREATE.GENL", req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil || r.Error != nil {
		t.Fatalf("create the stream: %s", resp.Data)
	}
}

// records reads everything the stream holds.
func (h *hub) records() jstest.Records { return jstest.ReadStream(h.t, h.nc, "GENL") }

// ---------------------------------------------------------------------------
// The overlay

// overlay is a test overlay of deploy/base (or of an example): the hub's
// address and, for the nkey hub, the bridges' nkey seed (a Secret, in
// place of the base's projected service account token; the operator-mode
// hub of identity_test.go takes the token as the base has it), the
// subscriptions,
// userspace senders allowed, a metrics port of its own, the spool in a
// hostPath under the test's temporary directory, and extra settings.
type overlay struct {
	base        string // relative to the repository root
	subscribe   string
	env         map[string]string
	metricsPort int
	spoolDir    string
	spoolOwner  int // uid and gid of the spool's directory (-1: root's)
}

func (o *overlay) metricsURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", o.metricsPort, path)
}

// newOverlay is the base with the usual test settings.
func newOverlay(t *testing.T) *overlay {
	return &overlay{
		base:        "deploy/base",
		subscribe:   "netdev/mgmt,mptcp_pm/mptcp_pm_events," + injectSub,
		env:         map[string]string{},
		metricsPort: proctest.FreePort(t),
		spoolDir:    filepath.Join(t.TempDir(), "spool"),
		spoolOwner:  -1,
	}
}

// write writes the overlay's kustomization into a temporary directory:
// the bridges connect to url with the nkey seed, or with the base's
// projected token when seed is nil.
func (o *overlay) write(t *testing.T, url string, seed []byte) string {
	t.Helper()
	dir := t.TempDir()
	if o.spoolOwner >= 0 {
		if err := os.MkdirAll(o.spoolDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(o.spoolDir, o.spoolOwner, o.spoolOwner); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{
		"GENLBRIDGE_NATS_URL":                url,
		"GENLBRIDGE_SUBSCRIBE":               o.subscribe,
		"GENLBRIDGE_ALLOW_USERSPACE_SENDERS": "true",
		"GENLBRIDGE_HTTP_ADDR":               fmt.Sprintf("127.0.0.1:%d", o.metricsPort),
		// The hub is one server: the stream has one replica.
		"GENLBRIDGE_STREAM_REPLICAS":  "1",
		"GENLBRIDGE_STREAM_MAX_BYTES": "1GiB",
	}
	for k, v := range o.env {
		env[k] = v
	}
	// The nkey hub: the seed from a Secret (mode 0440: the examples' non-root
	// user reads it through its fsGroup) instead of the token.
	resources, mounts, volumes := "", "", ""
	if seed != nil {
		env["GENLBRIDGE_NATS_NKEY_SEED"] = "/etc/genlbridge/nats/user.nk"
		resources = "  - secret.yaml\n"
		mounts = "                volumeMounts:\n                  - name: nats-creds\n                    mountPath: /etc/genlbridge/nats\n                    readOnly: true\n"
		volumes = "              - name: nats-creds\n                secret:\n                  secretName: genlbridge-nats\n                  defaultMode: 0440\n"
	}
	var envYAML strings.Builder
	if seed != nil {
		envYAML.WriteString("                  - name: GENLBRIDGE_NATS_TOKEN_FILE\n                    $patch: delete\n")
	}
	for k, v := range env {
		fmt.Fprintf(&envYAML, "                  - name: %s\n                    value: %q\n", k, v)
	}
	kust := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %[1]s
resources:
  - %[2]s
%[8]simages:
  - name: ghcr.io/genlbridge/genlbridge
    newName: %[3]s
    newTag: %[4]s
patches:
  - target:
      kind: DaemonSet
      name: genlbridge
    patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: genlbridge
      spec:
        template:
          spec:
            containers:
              - name: genlbridge
                env:
%[5]s%[9]s            volumes:
              - name: spool
                hostPath:
                  path: %[6]s
%[10]s  - target:
      kind: DaemonSet
      name: genlbridge
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/ports/0/containerPort
        value: %[7]d
`, namespace, rel(t, dir, filepath.Join(repoRoot, o.base)), imageRepo, imageTag, envYAML.String(), o.spoolDir, o.metricsPort,
		resources, mounts, volumes)
	files := map[string]string{"kustomization.yaml": kust}
	if seed != nil {
		files["secret.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: genlbridge-nats\nstringData:\n  user.nk: %q\n", seed)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// deploy applies the overlay, fails the test on any warning kubectl
// prints, and deletes the namespace (waiting for its pods to end) when the
// test ends.
func deploy(t *testing.T, c *k8scluster.Cluster, h *hub, o *overlay) {
	t.Helper()
	apply(t, c, o, o.write(t, h.url(), h.seed))
}

// apply applies the overlay written in dir, as deploy.
func apply(t *testing.T, c *k8scluster.Cluster, o *overlay, dir string) {
	t.Helper()
	t.Cleanup(func() { undeploy(t, c) })
	stdout, stderr, err := c.KubectlOutput(context.Background(), "apply", "-k", dir)
	if err != nil {
		t.Fatalf("kubectl apply -k: %v\n%s%s", err, stdout, stderr)
	}
	if strings.TrimSpace(stderr) != "" {
		t.Errorf("kubectl apply -k printed on its standard error (a warning):\n%s", stderr)
	}
	t.Logf("kubectl apply -k (%s):\n%s", o.base, strings.TrimSpace(stdout))
}

// rel is target relative to dir: kustomize takes no absolute path of a base.
func rel(t *testing.T, dir, target string) string {
	t.Helper()
	r, err := filepath.Rel(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func undeploy(t *testing.T, c *k8scluster.Cluster) {
	if t.Failed() {
		t.Logf("pods at the end:\n%s", mustOut(c.Kubectl("-n", namespace, "get", "pods", "-o", "wide")))
		t.Logf("events:\n%s", mustOut(c.Kubectl("-n", namespace, "get", "events", "--sort-by=.lastTimestamp")))
		for _, p := range pods(t, c) {
			t.Logf("log of %s:\n%s", p.Name, tail(mustOut(c.Kubectl("-n", namespace, "logs", p.Name, "--tail=60")), 60))
		}
	}
	if _, err := c.Kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s"); err != nil {
		t.Errorf("delete the namespace: %v", err)
	}
}

func mustOut(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// Pods

// pods lists the DaemonSet's pods.
func pods(t *testing.T, c *k8scluster.Cluster) []corev1.Pod {
	t.Helper()
	out, err := c.Kubectl("-n", namespace, "get", "pods", "-l", podLabel, "-o", "json")
	if err != nil {
		t.Logf("list pods: %v", err)
		return nil
	}
	var l corev1.PodList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPod waits until the DaemonSet has exactly one pod, not being
// deleted, for which cond holds, and returns it.
func waitPod(t *testing.T, c *k8scluster.Cluster, timeout time.Duration, what string, cond func(*corev1.Pod) bool) corev1.Pod {
	t.Helper()
	var got corev1.Pod
	waitFor(t, timeout, what, func() bool {
		ps := pods(t, c)
		var live []corev1.Pod
		for _, p := range ps {
			if p.DeletionTimestamp == nil {
				live = append(live, p)
			}
		}
		if len(live) != 1 || !cond(&live[0]) {
			return false
		}
		got = live[0]
		return true
	})
	return got
}

// waitReadyPod waits for the one pod to be Ready, other than the pods
// named in not.
func waitReadyPod(t *testing.T, c *k8scluster.Cluster, timeout time.Duration, not ...string) corev1.Pod {
	t.Helper()
	return waitPod(t, c, timeout, "a Ready pod", func(p *corev1.Pod) bool {
		for _, n := range not {
			if p.Name == n {
				return false
			}
		}
		return podReady(p)
	})
}

// rollout waits for kubectl rollout status to say the DaemonSet is rolled out.
func rollout(t *testing.T, c *k8scluster.Cluster) {
	t.Helper()
	kubectl(t, c, "-n", namespace, "rollout", "status", "ds/"+dsName, "--timeout=180s")
}

// containerPid is the host pid of the pod's container's process (the
// bridge), from containerd's task list.
func containerPid(t *testing.T, c *k8scluster.Cluster, p *corev1.Pod) int {
	t.Helper()
	if len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s: %d container statuses", p.Name, len(p.Status.ContainerStatuses))
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	out, err := c.Ctr("tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no task %s in containerd's list:\n%s", id, out)
	return 0
}

// podWatcher follows the DaemonSet's pods (kubectl get -w) and keeps the
// last state each pod's container was reported in: a deleted pod's
// terminated state (exit code, when) is reported before the pod goes.
type podWatcher struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	last map[string]corev1.Pod
}

func watchPods(t *testing.T, c *k8scluster.Cluster) *podWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.KubectlCmd(ctx, "-n", namespace, "get", "pods", "-l", podLabel, "--watch", "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := k8scluster.Spawn(cmd); err != nil {
		t.Fatal(err)
	}
	w := &podWatcher{cmd: cmd, last: map[string]corev1.Pod{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		dec := json.NewDecoder(out)
		for {
			var p corev1.Pod
			if err := dec.Decode(&p); err != nil {
				return
			}
			if p.Kind == "List" || p.Name == "" {
				continue
			}
			w.mu.Lock()
			w.last[p.Name] = p
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); _ = cmd.Wait(); <-done })
	return w
}

// terminated returns the terminated state last reported for the pod's
// container, if any.
func (w *podWatcher) terminated(name string) (*corev1.ContainerStateTerminated, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.last[name]
	if !ok || len(p.Status.ContainerStatuses) == 0 {
		return nil, false
	}
	st := p.Status.ContainerStatuses[0].State.Terminated
	return st, st != nil
}

// ---------------------------------------------------------------------------
// Metrics and health

var httpClient = &http.Client{Timeout: 3 * time.Second}

func scrape(o *overlay) (proctest.Metrics, error) {
	resp, err := httpClient.Get(o.metricsURL("/metrics"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return proctest.ParseMetrics(resp.Body)
}

// waitMetrics scrapes until cond holds and returns that scrape.
func waitMetrics(t *testing.T, o *overlay, timeout time.Duration, what string, cond func(proctest.Metrics) bool) proctest.Metrics {
	t.Helper()
	var last proctest.Metrics
	waitFor(t, timeout, what, func() bool {
		m, err := scrape(o)
		if err != nil {
			return false
		}
		last = m
		return cond(m)
	})
	return last
}

// get fetches path from the bridge's HTTP address: status and body.
func get(o *overlay, path string) (int, string, error) {
	resp, err := httpClient.Get(o.metricsURL(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), nil
}

// waitFor polls cond until it holds; it fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// The load

// sender multicasts module-shaped events into the injected group, in the
// host's network namespace, with sequence numbers from 1.
type sender struct {
	snd  *inject.Sender
	next atomic.Uint64 // the next sequence number
}

func newSender(t *testing.T) *sender {
	t.Helper()
	snd, err := inject.New(0, injectFamily, injectGroup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	s := &sender{snd: snd}
	s.next.Store(1)
	return s
}

// sent is how many events have been sent (sequences 1..sent).
func (s *sender) sent() uint64 { return s.next.Load() - 1 }

// send sends n events at rate per second (0: as fast as it can).
func (s *sender) send(n, rate int) error {
	const chunk = 50
	start := time.Now()
	for done := 0; done < n; {
		k := min(n-done, chunk)
		if rate > 0 {
			want := min(n, int(time.Since(start).Seconds()*float64(rate))+1)
			if want <= done {
				time.Sleep(time.Millisecond)
				continue
			}
			k = min(want-done, chunk)
		}
		if err := s.snd.SendExmpl(s.next.Load(), k); err != nil {
			return err
		}
		s.next.Add(uint64(k))
		done += k
	}
	return nil
}

// flow sends at rate per second until stop is closed, from its own
// goroutine; the returned channel gives its error when it has stopped.
func (s *sender) flow(rate int, stop <-chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per := max(rate/100, 1)
		for {
			select {
			case <-stop:
				errc <- nil
				return
			case <-tick.C:
				if err := s.snd.SendExmpl(s.next.Load(), per); err != nil {
					errc <- err
					return
				}
				s.next.Add(uint64(per))
			}
		}
	}()
	return errc
}

// account checks the hub's stream for the injected subscription: every
// sequence 1..sent is exactly once an event or inside exactly one loss
// record's exact range (first_seq..last_seq, count = their difference + 1,
// all of one instance), no message is stored twice. It returns the events
// and the loss records' reasons with their counts.
func account(t *testing.T, h *hub, sent uint64) (events int, lost map[string]uint64) {
	t.Helper()
	recs := h.records()
	for id, n := range recs.IDs {
		if n != 1 {
			t.Errorf("Nats-Msg-Id %s stored %d times", id, n)
		}
	}
	seen := make([]uint8, sent+1)
	instances := map[uint64]bool{}
	for _, e := range recs.Events {
		if e.Family != injectFamily {
			continue
		}
		if e.Seq < 1 || e.Seq > sent || e.SeqSource != event.SeqKernel {
			t.Fatalf("event seq %d (%s) outside 1..%d", e.Seq, e.SeqSource, sent)
		}
		seen[e.Seq]++
		events++
		instances[e.Instance] = true
	}
	lost = map[string]uint64{}
	for _, l := range recs.Losses {
		if l.Family != injectFamily {
			continue
		}
		if l.FirstSeq == 0 || l.LastSeq < l.FirstSeq || l.LastSeq-l.FirstSeq+1 != l.Count || l.LastSeq > sent {
			t.Fatalf("loss record %+v: want an exact range within 1..%d", l, sent)
		}
		instances[l.Instance] = true
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
		lost[l.Reason] += l.Count
	}
	if len(instances) > 1 {
		t.Errorf("records of %d instances, want one: %v", len(instances), instances)
	}
	var missing, twice []uint64
	for s := uint64(1); s <= sent; s++ {
		switch {
		case seen[s] == 0:
			missing = append(missing, s)
		case seen[s] > 1:
			twice = append(twice, s)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Fatalf("of %d sequences, %d in no record (first %v), %d in more than one (first %v); %d events, losses %v",
			sent, len(missing), missing[:min(10, len(missing))], len(twice), twice[:min(10, len(twice))], events, lost)
	}
	return events, lost
}

// waitAccounted waits until the hub's stream accounts for sequences
// 1..sent of the injected group (events and loss records).
func waitAccounted(t *testing.T, h *hub, sent uint64, timeout time.Duration) {
	t.Helper()
	var got uint64
	waitFor(t, timeout, fmt.Sprintf("the hub to account for %d events", sent), func() bool {
		recs := h.records()
		got = 0
		for _, e := range recs.Events {
			if e.Family == injectFamily {
				got++
			}
		}
		for _, l := range recs.Losses {
			if l.Family == injectFamily {
				got += l.Count
			}
		}
		return got >= sent
	})
}

// procStatus reads /proc/PID/status into a map.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
