//go:build linux

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"golang.org/x/sys/unix"
)

// nobody is the unprivileged user the test runs the bridge as (distroless's
// nonroot, as in deploy/examples/no-net-admin).
const nobody = 65532

// openTo makes a directory of the test's that uid can use; it is removed
// at the end of the test.
func openTo(t *testing.T, uid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A group the kernel lets only CAP_NET_ADMIN join (mptcp_pm's events,
// GENL_MCAST_CAP_NET_ADMIN), subscribed by a bridge without it: the kernel
// refuses the join with EPERM. That is no wait for a module: the bridge
// logs an error naming the subscription and the permission, counts it in
// genlbridge_subscription_join_refused_total{reason="permission"}, and
// /readyz fails naming both; the group it may join (netdev/mgmt) is joined.
// The bridge runs as uid 65532 with CAP_SYS_ADMIN alone, to enter the
// test's namespace (k8stest's TestNoNetAdmin runs the same on a kubelet,
// with no capability at all).
func TestJoinRefusedForPermission(t *testing.T) {
	ns := netnstest.Need(t)
	dir := openTo(t, nobody)
	bin := filepath.Join(dir, "genlbridge")
	src, err := os.ReadFile(proctest.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	data, spool := filepath.Join(dir, "data"), filepath.Join(dir, "spool")
	for _, d := range []string{data, spool} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	const refused = "mptcp_pm/mptcp_pm_events"
	attr := &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
		AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN},
	}
	b := proctest.StartAttr(t, bin, attr, "GENLBRIDGE_SINK=stdout", "GENLBRIDGE_NETNS="+ns.Path,
		"GENLBRIDGE_DATA_DIR="+data, "GENLBRIDGE_SPOOL_DIR="+spool, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt,"+refused)

	m := b.WaitMetrics(30*time.Second, "netdev joined and mptcp_pm refused", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_subscription_joined", "subscription=netdev/mgmt") == 1 &&
			m.Get("genlbridge_subscription_join_refused_total", "reason=permission", "subscription="+refused) >= 1
	})
	if got := m.Get("genlbridge_subscription_joined", "subscription="+refused); got != 0 {
		t.Errorf("%s joined without CAP_NET_ADMIN", refused)
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(b.Pid()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "CapEff:") {
			t.Logf("the bridge's %s", l)
		}
	}

	resp, err := http.Get("http://" + b.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("/readyz: %d %q", resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), refused) || !strings.Contains(string(body), "permission") {
		t.Errorf("/readyz %d %q: want 503 naming %s and the permission", resp.StatusCode, body, refused)
	}

	var found bool
	for _, l := range strings.Split(b.Log(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["level"] == "ERROR" && rec["subscription"] == refused && rec["reason"] == "permission" {
			found = true
			t.Logf("the error: %s", l)
		}
	}
	if !found {
		t.Errorf("no ERROR log record naming %s and the permission:\n%s", refused, b.Log())
	}
	b.Stop(30 * time.Second)
}
