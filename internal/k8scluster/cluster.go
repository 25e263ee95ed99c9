//go:build linux

// Package k8scluster runs a one-node Kubernetes cluster on this machine, as
// root, for the tests of k8stest (make k8s-test): Debian's etcd, containerd
// and runc, and kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet and kubectl built by mk/k8s.mk.
//
// The machine is shared, so the cluster keeps to itself and Stop undoes
// what it changed:
//
//   - Every file it writes is under Config.Dir (and one record in
//     Config.StateDir). The components run in a mount namespace of their
//     own (the node's) where /var and /run are overlays whose upper layers
//     are in Dir, so whatever they write there by default (the kubelet's
//     /var/log/containers, containerd's shim sockets under /run/containerd)
//     lands in Dir too; every mount they make (volumes, container root
//     filesystems, snapshots) exists only in that namespace and goes with
//     it.
//   - The kubelet sets six sysctls at start (vm.overcommit_memory,
//     vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
//     kernel.keys.root_maxkeys, kernel.keys.root_maxbytes): in the node's
//     namespace each of those /proc/sys files is a bind mount of a plain
//     file, so what it writes never reaches the kernel.
//   - Its cgroups (cgroupfs driver, cgroup v1) are all under one root,
//     /k8scluster-<pid>, removed from every hierarchy by Stop.
//   - No iptables chain is made (makeIPTablesUtilChains: false, no
//     kube-proxy, pods only on the host network; the CNI configuration is
//     loopback only).
//   - Everything listens on 127.0.0.1 only, on free ports. The node's name
//     is its IP, 127.0.0.1 (--hostname-override: the kubelet refuses a
//     loopback --node-ip, and takes an IP given as the name for the node's
//     address), so the kubelet's probes and the API server's calls to the
//     kubelet stay on loopback.
//
// A test process killed before Stop leaves its record in StateDir: the next
// Start tears that cluster down first (processes in its namespace and its
// cgroups, killed; cgroups removed; Dir removed).
package k8scluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says where the binaries are and where the cluster lives.
type Config struct {
	// Bin holds kube-apiserver, kube-controller-manager, kube-scheduler,
	// kubelet, kubectl and pause (a static binary, the sandbox image's).
	Bin string
	// Dir is the cluster's own directory; Start makes it, Stop removes it.
	// Keep its path short: the kubelet puts unix sockets under it.
	Dir string
	// StateDir holds a record of each running cluster (NAME.json).
	StateDir string
	// Logf, if set, is told of each step.
	Logf func(format string, args ...any)
}

// Cluster is a running one-node cluster.
type Cluster struct {
	cfg        Config
	pki        *pki
	kubeconfig string
	apiURL     string
	sock       string // containerd's socket
	cgroupRoot string // the kubelet's --cgroup-root, e.g. /k8scluster-1234
	state      string // the record in StateDir

	mu      sync.Mutex
	procs   []*proc // in start order
	holder  *proc   // keeps the node's mount namespace
	nsIno   uint64  // that namespace's inode
	before  hostState
	stopped bool
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

// record is what Start writes to StateDir, for the next Start after a crash.
type record struct {
	Owner      int    `json:"owner"` // the test process
	Dir        string `json:"dir"`
	CgroupRoot string `json:"cgroup_root"`
	NSIno      uint64 `json:"ns_ino"`
}

// Sysctls are the files under /proc/sys the kubelet writes at start.
var Sysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// Path is a path under the cluster's directory.
func (c *Cluster) Path(elem ...string) string {
	return filepath.Join(append([]string{c.cfg.Dir}, elem...)...)
}

// Kubeconfig is the administrator's kubeconfig file (system:masters).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// APIURL is the API server's address, https://127.0.0.1:PORT: what a pod
// on the host network reaches it at (there is no kube-proxy for the
// "kubernetes" Service).
func (c *Cluster) APIURL() string { return c.apiURL }

// ServiceAccountIssuer is the iss of the service account tokens the API
// server signs, and the issuer its OIDC discovery names.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// NodeName is the node's name, which is its address too.
const NodeName = "127.0.0.1"

// NodeName is the node's name.
func (c *Cluster) NodeName() string { return NodeName }

// CgroupRoot is the kubelet's cgroup root, e.g. /k8scluster-1234.
func (c *Cluster) CgroupRoot() string { return c.cgroupRoot }

// Start starts etcd, the control plane, containerd and the kubelet, and
// waits until the node is Ready. On error, what was started is stopped.
func Start(cfg Config) (c *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("k8scluster: needs root")
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "pause"} {
		if _, err := os.Stat(filepath.Join(cfg.Bin, b)); err != nil {
			return nil, fmt.Errorf("k8scluster: %w (make k8s-bins builds it)", err)
		}
	}
	for _, b := range []string{"etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "unshare", "nsenter", "mount"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("k8scluster: %w (make k8s-deps installs it)", err)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/loopback"); err != nil {
		return nil, fmt.Errorf("k8scluster: %w (containernetworking-plugins)", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{cfg: cfg, cgroupRoot: fmt.Sprintf("/k8scluster-%d", os.Getpid())}
	CleanStale(cfg.StateDir, c.logf)
	c.before = snapshotHost(c.cgroupRoot, cfg.Dir)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("k8scluster: %w", err)
			if serr := c.Stop(); serr != nil {
				err = fmt.Errorf("%w; and stopping: %v", err, serr)
			}
			c = nil
		}
	}()
	if err := c.startNode(); err != nil {
		return c, err
	}
	if err := c.writeRecord(); err != nil {
		return c, err
	}
	if err := c.startControlPlane(); err != nil {
		return c, err
	}
	if err := c.startContainerd(); err != nil {
		return c, err
	}
	if err := c.importPause(); err != nil {
		return c, err
	}
	if err := c.startKubelet(); err != nil {
		return c, err
	}
	return c, nil
}

var (
	spawnOnce sync.Once
	spawner   = make(chan spawnReq)
)

// Spawn starts cmd with SIGKILL (or the signal cmd names) as its
// parent-death signal, so that it dies with the test process even when
// that is killed: the cluster's components, and whatever a test starts
// that must not outlive it. The signal is tied to the thread that forks,
// so every process is started from one OS thread that never exits.
func Spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for r := range spawner {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	errc := make(chan error)
	spawner <- spawnReq{cmd, errc}
	return <-errc
}

// run starts a component; inNode runs it in the node's mount namespace.
// Its output goes to Dir/logs/NAME.log.
func (c *Cluster) run(name string, inNode bool, bin string, args ...string) (*proc, error) {
	return c.runSig(name, syscall.SIGKILL, inNode, bin, args...)
}

// runSig is run with the parent-death signal sig.
func (c *Cluster) runSig(name string, sig syscall.Signal, inNode bool, bin string, args ...string) (*proc, error) {
	if inNode {
		args = append([]string{fmt.Sprintf("--mount=/proc/%d/ns/mnt", c.holder.cmd.Process.Pid), "--", bin}, args...)
		bin = "nsenter"
	}
	if err := os.MkdirAll(c.Path("logs"), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.Path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.cfg.Dir
	// LIBMOUNT_UTAB: mount(8), which the node's setup and the kubelet run,
	// keeps its table and lock there, not in the host's /run/mount.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + c.Path("home"),
		"LIBMOUNT_UTAB=" + c.Path("node", "utab")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
	if err := Spawn(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Log returns what a component wrote (its log file), for failures.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(c.Path("logs", name+".log"))
	return string(b)
}

// startNode makes the node's mount namespace, held by a sleeping process.
func (c *Cluster) startNode() error {
	ns := c.Path("node")
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range []string{"var", "run"} {
		up, work := filepath.Join(ns, d+".upper"), filepath.Join(ns, d+".work")
		if err := os.MkdirAll(up, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		fmt.Fprintf(&script, "mount -t overlay overlay -o lowerdir=/%s,upperdir=%s,workdir=%s /%s\n", d, up, work, d)
	}
	for _, s := range Sysctls {
		if _, err := os.Stat("/proc/sys/" + s); err != nil {
			continue
		}
		f := filepath.Join(ns, "sysctl."+strings.ReplaceAll(s, "/", "."))
		fmt.Fprintf(&script, "cat /proc/sys/%s > %s\nmount --bind %s /proc/sys/%s\n", s, f, f, s)
	}
	// The kubelet's root is a shared mount, so that the containers' mount
	// namespaces see the volumes it mounts after they start.
	kubelet := c.Path("kubelet")
	if err := os.MkdirAll(kubelet, 0o750); err != nil {
		return err
	}
	fmt.Fprintf(&script, "mount --bind %s %s\nmount --make-rshared %s\n", kubelet, kubelet, kubelet)
	// The holder is the dead man's switch too: it gets SIGTERM when the
	// test process dies (its parent-death signal) or stops the cluster,
	// and then kills what is left in the node's namespace and cgroups (the
	// containers, and the shims containerd leaves) and removes the cgroups.
	var cgdirs []string
	for _, h := range cgroupHierarchies() {
		cgdirs = append(cgdirs, filepath.Join(h, c.cgroupRoot))
	}
	fmt.Fprintf(&script, `ns=$(readlink /proc/$$/ns/mnt)
cgroups="%s"
cleanup() {
	trap - TERM
	for i in $(seq 50); do
		n=0
		for f in $(find $cgroups -name cgroup.procs 2>/dev/null); do
			for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; n=$((n+1)); done
		done
		for d in /proc/[0-9]*; do
			p=${d#/proc/}
			[ "$p" = "$$" ] && continue
			[ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$ns" ] && { kill -9 "$p" 2>/dev/null; n=$((n+1)); }
		done
		[ "$n" = 0 ] && break
		sleep 0.2
	done
	find $cgroups -depth -type d -exec rmdir {} + 2>/dev/null
	exit 0
}
trap cleanup TERM
echo node-ready
sleep infinity &
wait $!
`, strings.Join(cgdirs, " "))
	if err := os.WriteFile(filepath.Join(ns, "setup.sh"), []byte(script.String()), 0o755); err != nil {
		return err
	}
	p, err := c.runSig("node", syscall.SIGTERM, false, "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", filepath.Join(ns, "setup.sh"))
	if err != nil {
		return err
	}
	c.holder = p
	if err := c.waitFor(10*time.Second, "the node's mount namespace", func() error {
		if !p.running() {
			return errStop(fmt.Errorf("the node's namespace: %v: %s", p.err, c.Log("node")))
		}
		if !strings.Contains(c.Log("node"), "node-ready") {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		return err
	}
	ino, err := nsInode(p.cmd.Process.Pid)
	if err != nil {
		return err
	}
	self, err := nsInode(os.Getpid())
	if err != nil {
		return err
	}
	if ino == self {
		return errors.New("the node's mount namespace is the test's")
	}
	c.nsIno = ino
	return nil
}

func nsInode(pid int) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func (c *Cluster) writeRecord() error {
	b, _ := json.Marshal(record{Owner: os.Getpid(), Dir: c.cfg.Dir, CgroupRoot: c.cgroupRoot, NSIno: c.nsIno})
	c.state = filepath.Join(c.cfg.StateDir, fmt.Sprintf("cluster-%d.json", os.Getpid()))
	return os.WriteFile(c.state, b, 0o644)
}

// FreePort returns a loopback TCP port nothing listened on a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type stopErr struct{ error }

// errStop ends a waitFor at once with err.
func errStop(err error) error { return stopErr{err} }

// waitFor polls check until it returns nil, or returns its last error after
// timeout (at once when it returns errStop).
func (c *Cluster) waitFor(timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		var s stopErr
		if errors.As(err, &s) {
			return s.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s: %w", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) startControlPlane() error {
	p, err := newPKI(c.Path("pki"))
	if err != nil {
		return err
	}
	c.pki = p
	node := NodeName
	for _, cert := range []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{"127.0.0.1", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"admin", "kubernetes-admin", []string{"system:masters"}, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"kubelet-client", "system:node:" + node, []string{"system:nodes"}, nil},
	} {
		if err := p.issue(cert.name, cert.cn, cert.orgs, cert.hosts); err != nil {
			return err
		}
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}

	etcdClient, err := FreePort()
	if err != nil {
		return err
	}
	etcdPeer, err := FreePort()
	if err != nil {
		return err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", etcdClient), fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if _, err := c.run("etcd", true, "etcd", "--name", "k8scluster", "--data-dir", c.Path("etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "k8scluster="+peer, "--listen-metrics-urls", "",
		"--logger", "zap", "--log-outputs", "stderr"); err != nil {
		return err
	}
	if err := c.waitFor(30*time.Second, "etcd", func() error { return httpOK(http.DefaultClient, client+"/health") }); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(c.Log("etcd"), 30))
	}

	apiPort, err := FreePort()
	if err != nil {
		return err
	}
	c.apiURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if _, err := c.run("kube-apiserver", true, filepath.Join(c.cfg.Bin, "kube-apiserver"),
		"--etcd-servers", client,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", c.Path("apiserver"),
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--client-ca-file", p.path("ca.crt"),
		"--tls-cert-file", p.path("apiserver.crt"), "--tls-private-key-file", p.path("apiserver.key"),
		"--kubelet-client-certificate", p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", p.path("apiserver-kubelet-client.key"),
		"--service-account-issuer", ServiceAccountIssuer,
		"--service-account-key-file", p.path("sa.pub"), "--service-account-signing-key-file", p.path("sa.key"),
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
		// The node's IP is loopback: the "kubernetes" Service's endpoints
		// would be refused, and nothing here uses them.
		"--endpoint-reconciler-type", "none",
		"--profiling=false"); err != nil {
		return err
	}
	c.kubeconfig = c.Path("admin.kubeconfig")
	if err := c.writeKubeconfig(c.kubeconfig, "admin"); err != nil {
		return err
	}
	hc, err := c.httpClient("admin")
	if err != nil {
		return err
	}
	if err := c.waitFor(90*time.Second, "kube-apiserver", func() error { return httpOK(hc, c.apiURL+"/readyz") }); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(c.Log("kube-apiserver"), 30))
	}
	c.logf("kube-apiserver ready at %s", c.apiURL)

	if _, err := c.run("kube-controller-manager", true, filepath.Join(c.cfg.Bin, "kube-controller-manager"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file", p.path("sa.key"), "--root-ca-file", p.path("ca.crt"),
		"--use-service-account-credentials=false", "--profiling=false"); err != nil {
		return err
	}
	if _, err := c.run("kube-scheduler", true, filepath.Join(c.cfg.Bin, "kube-scheduler"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--secure-port=0", "--profiling=false"); err != nil {
		return err
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for the client certificate NAME.
func (c *Cluster) writeKubeconfig(path, name string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8scluster
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: k8scluster
  context:
    cluster: k8scluster
    user: %s
current-context: k8scluster
`, c.apiURL, c.pki.path("ca.crt"), name, c.pki.path(name+".crt"), c.pki.path(name+".key"), name)
	return os.WriteFile(path, []byte(kc), 0o600)
}

func (c *Cluster) httpClient(name string) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(c.pki.path(name+".crt"), c.pki.path(name+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}}, nil
}

func httpOK(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PauseImage is the sandbox image's name.
const PauseImage = "localhost/k8scluster/pause:3.10"

func (c *Cluster) startContainerd() error {
	cd := c.Path("containerd")
	c.sock = filepath.Join(cd, "containerd.sock")
	cni := c.Path("cni")
	for _, d := range []string{cd, cni} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Pods here use the host's network: the CNI configuration exists so
	// that the runtime reports its network ready, and makes nothing.
	if err := os.WriteFile(filepath.Join(cni, "10-loopback.conflist"),
		[]byte(`{"cniVersion": "0.4.0", "name": "k8scluster-lo", "plugins": [{"type": "loopback"}]}`+"\n"), 0o644); err != nil {
		return err
	}
	runc, _ := exec.LookPath("runc")
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # No CAP_SYS_RESOURCE here: the kubelet's oom_score_adj of -997 for
  # node-critical pods cannot be set; the runtime lowers it to what it may.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[8]q
        Root = %[9]q
        SystemdCgroup = false
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), c.sock, c.sock+".ttrpc", filepath.Join(cd, "opt"),
		PauseImage, cni, runc, filepath.Join(cd, "runc"))
	confPath := filepath.Join(cd, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := c.run("containerd", true, "containerd", "--config", confPath)
	if err != nil {
		return err
	}
	return c.waitFor(30*time.Second, "containerd", func() error {
		if !p.running() {
			return errStop(fmt.Errorf("containerd exited: %v\n%s", p.err, tail(c.Log("containerd"), 30)))
		}
		_, err := c.Ctr("version")
		return err
	})
}

// Ctr runs ctr against the cluster's containerd, in its k8s.io namespace.
func (c *Cluster) Ctr(args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.Path("home")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := Spawn(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return out.String(), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// ImportImage imports an image archive (OCI or docker) into the node's
// containerd; baseName names images whose archive names only a tag.
func (c *Cluster) ImportImage(archive, baseName string) error {
	args := []string{"images", "import"}
	if baseName != "" {
		args = append(args, "--base-name", baseName)
	}
	_, err := c.Ctr(append(args, archive)...)
	return err
}

// importPause makes the sandbox image from the static pause binary (one
// layer, an OCI archive) and imports it.
func (c *Cluster) importPause() error {
	archive := c.Path("pause.oci.tar")
	if err := writePauseImage(archive, filepath.Join(c.cfg.Bin, "pause"), PauseImage); err != nil {
		return err
	}
	return c.ImportImage(archive, "")
}

func (c *Cluster) startKubelet() error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	root := c.Path("kubelet")
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (this machine's): allowed, not failed on.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
# No KUBE-* iptables chains on the host.
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://%[2]s
address: 127.0.0.1
port: %[3]d
readOnlyPort: 0
healthzPort: 0
podLogsDir: %[4]s
resolvConf: /etc/resolv.conf
failSwapOn: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[5]s
authorization:
  mode: Webhook
# A shared machine's disk: no eviction or image collection for its sake.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
`, c.cgroupRoot, c.sock, port, c.Path("pods-logs"), c.pki.path("ca.crt"))
	confPath := c.Path("kubelet.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	kc := c.Path("kubelet.kubeconfig")
	if err := c.writeKubeconfig(kc, "kubelet-client"); err != nil {
		return err
	}
	// The kubelet makes its cgroup root in each hierarchy only partly by
	// itself (cgroup v1): make it everywhere first.
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, c.cgroupRoot), 0o755); err != nil {
			return err
		}
	}
	p, err := c.run("kubelet", true, filepath.Join(c.cfg.Bin, "kubelet"),
		"--config", confPath, "--kubeconfig", kc, "--root-dir", root, "--cert-dir", c.Path("kubelet-pki"),
		"--hostname-override", NodeName, "--v", "1")
	if err != nil {
		return err
	}
	return c.waitFor(2*time.Minute, "the node Ready", func() error {
		if !p.running() {
			return errStop(fmt.Errorf("the kubelet exited: %v\n%s", p.err, tail(c.Log("kubelet"), 40)))
		}
		out, err := c.Kubectl("get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})
}

// Kubectl runs kubectl as the administrator and returns its standard
// output; an error carries its standard error.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	out, errOut, err := c.KubectlOutput(context.Background(), args...)
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	return out, nil
}

// KubectlCmd is kubectl as the administrator, with a home (its cache) in
// the cluster's directory; start it with Spawn.
func (c *Cluster) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.Bin, "kubectl"),
		append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", c.Path("home", ".kube", "cache")}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.Path("home")}
	return cmd
}

// KubectlOutput runs kubectl and returns both of its outputs.
func (c *Cluster) KubectlOutput(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := c.KubectlCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err = Spawn(cmd); err == nil {
		err = cmd.Wait()
	}
	return out.String(), errb.String(), err
}

// Stop stops every component, kills whatever is left in the node's
// namespace and in its cgroups (the containers), removes its cgroups and
// its directory, and checks that the host is as Start found it.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	byName := map[string]*proc{}
	for _, p := range procs {
		byName[p.name] = p
	}
	// The kubelet first, so that it restarts nothing; then the containers.
	if p := byName["kubelet"]; p != nil {
		p.stop(10 * time.Second)
	}
	var errs []error
	if err := killCgroupProcs(c.cgroupRoot); err != nil {
		errs = append(errs, err)
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	if c.nsIno != 0 {
		killNamespace(c.nsIno)
	}
	if err := removeCgroups(c.cgroupRoot); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.cfg.Dir); err != nil {
		errs = append(errs, err)
	}
	if c.state != "" {
		_ = os.Remove(c.state)
	}
	after := snapshotHost(c.cgroupRoot, c.cfg.Dir)
	if d := c.before.diff(after); d != "" {
		errs = append(errs, fmt.Errorf("the host is not as the cluster found it:\n%s", d))
	}
	c.logf("stopped; the host is as it was")
	return errors.Join(errs...)
}

// CleanStale tears down the clusters of StateDir's records whose test
// process is gone.
func CleanStale(stateDir string, logf func(string, ...any)) {
	recs, _ := filepath.Glob(filepath.Join(stateDir, "cluster-*.json"))
	for _, f := range recs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(b, &r) != nil {
			_ = os.Remove(f)
			continue
		}
		if r.Owner != os.Getpid() && syscall.Kill(r.Owner, 0) == nil {
			continue // another test process's, still running
		}
		if logf != nil {
			logf("tearing down the cluster a killed test left behind: %s", f)
		}
		if r.CgroupRoot != "" {
			_ = killCgroupProcs(r.CgroupRoot)
		}
		if r.NSIno != 0 {
			killNamespace(r.NSIno)
		}
		if r.CgroupRoot != "" {
			_ = removeCgroups(r.CgroupRoot)
		}
		if r.Dir != "" && strings.Contains(r.Dir, "k8s") {
			_ = os.RemoveAll(r.Dir)
		}
		_ = os.Remove(f)
	}
}

// cgroupHierarchies lists the mount points of the cgroup hierarchies
// (v1 controllers and named ones, and the v2 one).
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				out = append(out, fields[4])
			}
		}
	}
	return out
}

// cgroupDirs lists root and every cgroup below it in every hierarchy,
// deepest first.
func cgroupDirs(root string) []string {
	var dirs []string
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, root)
		var walk func(string)
		walk = func(d string) {
			ents, err := os.ReadDir(d)
			if err != nil {
				return
			}
			for _, e := range ents {
				if e.IsDir() {
					walk(filepath.Join(d, e.Name()))
				}
			}
			dirs = append(dirs, d)
		}
		if st, err := os.Stat(top); err == nil && st.IsDir() {
			walk(top)
		}
	}
	return dirs
}

// killCgroupProcs kills every process in the cgroups under root until none
// is left (up to 30 s).
func killCgroupProcs(root string) error {
	if root == "" || root == "/" {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, d := range cgroupDirs(root) {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, l := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(l); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					n++
				}
			}
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left in the cgroups under %s", root)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killNamespace kills every process whose mount namespace has inode ino
// (the shims containerd leaves), until none is left (up to 10 s).
func killNamespace(ino uint64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := namespacePids(ino)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func namespacePids(ino uint64) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if i, err := nsInode(pid); err == nil && i == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroups removes root and everything below it in every hierarchy.
func removeCgroups(root string) error {
	if root == "" || root == "/" {
		return nil
	}
	var last error
	deadline := time.Now().Add(10 * time.Second)
	for {
		last = nil
		for _, d := range cgroupDirs(root) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("rmdir %s: %w", d, err)
			}
		}
		if last == nil || time.Now().After(deadline) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}
