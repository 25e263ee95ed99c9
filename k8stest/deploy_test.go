//go:build k8s

package k8stest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/proctest"
)

// capNetAdmin is CAP_NET_ADMIN's bit, as /proc/PID/status prints a set.
const capNetAdmin = "0000000000001000"

// TestDeploy: kubectl apply -k of the base (through the test overlay)
// prints no warning, the DaemonSet rolls out to a Ready pod, and its
// container's process has exactly what the manifest declares, as the
// kernel reports it in /proc/PID/status and /proc/PID/mountinfo: uid and
// gid 0, NET_ADMIN alone in the effective, permitted and bounding sets (none
// inheritable or ambient), no_new_privs, a seccomp filter, a read-only root
// filesystem and a writable spool on the hostPath.
func TestDeploy(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	start := time.Now()
	deploy(t, c, h, o)
	rollout(t, c)
	p := waitReadyPod(t, c, time.Minute)
	t.Logf("rolled out, pod %s Ready %v after kubectl apply", p.Name, time.Since(start).Round(time.Millisecond))

	pid := containerPid(t, c, &p)
	st := procStatus(t, pid)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	t.Logf("the container's process: pid %d, %q; Uid %s, Gid %s, CapEff %s, CapPrm %s, CapBnd %s, CapInh %s, CapAmb %s, NoNewPrivs %s, Seccomp %s (%s filters)",
		pid, strings.ReplaceAll(string(cmdline), "\x00", " "), st["Uid"], st["Gid"], st["CapEff"], st["CapPrm"], st["CapBnd"], st["CapInh"], st["CapAmb"],
		st["NoNewPrivs"], st["Seccomp"], st["Seccomp_filters"])
	if got := strings.ReplaceAll(string(cmdline), "\x00", " "); got != "/genlbridge run " {
		t.Errorf("the container's process runs %q, want /genlbridge run", got)
	}
	want := map[string]string{
		"Uid": "0\t0\t0\t0", "Gid": "0\t0\t0\t0",
		"CapEff": capNetAdmin, "CapPrm": capNetAdmin, "CapBnd": capNetAdmin,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2", // SECCOMP_MODE_FILTER: RuntimeDefault
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("/proc/%d/status %s: %q, want %q", pid, k, st[k], v)
		}
	}

	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if !strings.Contains("\x00"+string(environ), "\x00NODE_NAME="+c.NodeName()+"\x00") {
		t.Errorf("the container's environment has no NODE_NAME=%s (the downward API's spec.nodeName)", c.NodeName())
	}

	// The root filesystem read-only, the spool writable, on the hostPath.
	mounts := mountinfo(t, pid)
	if opts, ok := mounts["/"]; !ok || !hasOpt(opts, "ro") {
		t.Errorf("the container's root is mounted %q, want read-only", opts)
	}
	if opts, ok := mounts["/var/lib/genlbridge/spool"]; !ok || !hasOpt(opts, "rw") {
		t.Errorf("the spool is mounted %q, want read-write", opts)
	}
	if opts, ok := mounts["/etc/genlbridge/nats"]; !ok || !hasOpt(opts, "ro") {
		t.Errorf("the NATS credentials are mounted %q, want read-only", opts)
	}
	ents, err := os.ReadDir(o.spoolDir)
	if err != nil || len(ents) == 0 {
		t.Errorf("the spool's hostPath %s holds nothing (%v): the bridge does not spool there", o.spoolDir, err)
	}

	m := waitMetrics(t, o, 30*time.Second, "3 subscriptions joined and the sink connected", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_subscription_joined") == 3 && m.Get("genlbridge_sink_connected") == 1
	})
	code, body, err := get(o, "/readyz")
	if err != nil || code != 200 {
		t.Errorf("/readyz: %d %q %v", code, body, err)
	}
	t.Logf("joined %v subscriptions, sink connected; /readyz %d %q", m.Sum("genlbridge_subscription_joined"), code, strings.TrimSpace(body))
}

// mountinfo maps the mount points of a process's mount namespace to their
// mount options.
func mountinfo(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 5 {
			m[fields[4]] = fields[5]
		}
	}
	return m
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}
