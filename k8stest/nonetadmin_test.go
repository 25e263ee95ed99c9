//go:build k8s

package k8stest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/proctest"
	corev1 "k8s.io/api/core/v1"
)

// TestNoNetAdmin: deploy/examples/no-net-admin (uid 65532, no capability)
// on this kernel. The process has no capability in any set. Of the
// families of README.md's table that this kernel has, it joins every group
// but mptcp_pm's events, whose join the kernel refuses with EPERM
// (GENL_MCAST_CAP_NET_ADMIN; NET_DM's events take CAP_SYS_ADMIN, and this
// kernel may not have NET_DM at all). A refusal for permission is no
// "waiting for the family": the bridge logs it as an error, counts it in
// genlbridge_subscription_join_refused_total{reason="permission"}, and
// /readyz fails naming the subscription, so the pod is not Ready. The
// groups it joined deliver.
func TestNoNetAdmin(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	o.base = "deploy/examples/no-net-admin"
	o.spoolOwner = 65532 // the example's hostPath is of type Directory, made for its user
	joinable := []string{"netdev/mgmt", "ethtool/monitor", "nlctrl/notify", "thermal/event", "acpi_event/acpi_mc_group", injectSub}
	const refused = "mptcp_pm/mptcp_pm_events"
	netDM := "NET_DM/events"
	o.subscribe = strings.Join(append(append([]string{}, joinable...), refused, netDM), ",")
	deploy(t, c, h, o)
	p := waitPod(t, c, 2*time.Minute, "the container running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	pid := containerPid(t, c, &p)
	st := procStatus(t, pid)
	t.Logf("the container's process: Uid %s, CapEff %s, CapPrm %s, CapBnd %s, NoNewPrivs %s, Seccomp %s", st["Uid"], st["CapEff"], st["CapPrm"], st["CapBnd"], st["NoNewPrivs"], st["Seccomp"])
	for k, v := range map[string]string{"Uid": "65532\t65532\t65532\t65532", "Gid": "65532\t65532\t65532\t65532",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2"} {
		if st[k] != v {
			t.Errorf("/proc/%d/status %s: %q, want %q", pid, k, st[k], v)
		}
	}

	// What it joins, what the kernel refuses.
	m := waitMetrics(t, o, time.Minute, "every joinable group joined", func(m proctest.Metrics) bool {
		for _, s := range joinable {
			if m.Get("genlbridge_subscription_joined", "subscription="+s) != 1 {
				return false
			}
		}
		return m.Get("genlbridge_sink_connected") == 1
	})
	var lines []string
	for _, s := range append(append([]string{}, joinable...), refused, netDM) {
		lines = append(lines, fmt.Sprintf("%s: joined %v, refused for permission %v", s, m.Get("genlbridge_subscription_joined", "subscription="+s),
			m.Get("genlbridge_subscription_join_refused_total", "reason=permission", "subscription="+s)))
	}
	sort.Strings(lines)
	t.Logf("without NET_ADMIN, on kernel %s:\n%s", kernelRelease(), strings.Join(lines, "\n"))
	if m.Get("genlbridge_subscription_joined", "subscription="+refused) != 0 {
		t.Errorf("%s joined without CAP_NET_ADMIN", refused)
	}

	// The groups it joined deliver.
	s := newSender(t)
	if err := s.send(100, 1000); err != nil {
		t.Fatal(err)
	}
	waitAccounted(t, h, 100, 30*time.Second)
	if ev, lost := account(t, h, 100); ev != 100 {
		t.Errorf("%d of 100 events in the hub (lost %v)", ev, lost)
	}

	// The refusal: counted, logged as an error, and /readyz says so.
	var err error
	// (Each checked, none fatal: a bridge without the contract fails all.)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m, err = scrape(o); err == nil && m.Get("genlbridge_subscription_join_refused_total", "reason=permission", "subscription="+refused) >= 1 {
			break
		}
	}
	if got := m.Get("genlbridge_subscription_join_refused_total", "reason=permission", "subscription="+refused); got < 1 {
		t.Errorf(`genlbridge_subscription_join_refused_total{subscription=%q,reason="permission"} = %v, want at least 1`, refused, got)
	}
	code, body, err2 := get(o, "/readyz")
	t.Logf("/readyz: %d %q", code, strings.TrimSpace(body))
	if err2 != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, refused) || !strings.Contains(strings.ToLower(body), "permission") {
		t.Errorf("/readyz %d %q (%v): want 503 naming %s and the permission", code, body, err2, refused)
	}
	logs := kubectl(t, c, "-n", namespace, "logs", p.Name)
	var errLine map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["level"] == "ERROR" && strings.Contains(l, refused) && strings.Contains(strings.ToLower(l), "permission") {
			errLine = rec
		}
	}
	if errLine == nil {
		t.Errorf("no ERROR log line naming %s and the permission; the log:\n%s", refused, tail(logs, 30))
	} else {
		t.Logf("logged: %v", errLine)
	}
	notReady := false
	for deadline := time.Now().Add(30 * time.Second); !notReady && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ps := pods(t, c)
		notReady = len(ps) == 1 && !podReady(&ps[0]) && hasEvent(t, c, ps[0].Name, "Unhealthy", "Readiness probe failed")
	}
	if !notReady {
		t.Errorf("the pod is Ready with %s refused: the kubelet's readiness probe must fail", refused)
	}
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
