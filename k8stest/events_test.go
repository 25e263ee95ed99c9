//go:build k8s

package k8stest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/proctest"
)

// TestKernelEvents: the kernel's own events on the node reach the hub's
// stream through the pod, stamped with the node's name from the downward
// API (not the machine's hostname): netdev's dev-add-ntf and dev-del-ntf of
// a veth pair made with `ip link` in the host's network namespace, and
// mptcp_pm's created, established and closed of an MPTCP connection over
// loopback (a group that takes CAP_NET_ADMIN to join).
func TestKernelEvents(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	deploy(t, c, h, o)
	rollout(t, c)
	waitReadyPod(t, c, time.Minute)
	waitMetrics(t, o, 30*time.Second, "3 subscriptions joined", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_subscription_joined") == 3
	})
	host, _ := os.Hostname()

	// A veth pair in the host's network namespace, made and deleted.
	idx := vethPair(t, "k8t")

	// An MPTCP connection over loopback.
	mptcp := false
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err == nil && strings.TrimSpace(string(b)) == "1" {
		mptcp = true
	} else {
		t.Errorf("MPTCP is not enabled on this kernel (net.mptcp.enabled): %v %q", err, b)
	}
	var lport, cport int
	if mptcp {
		lport, cport = mptcpConnection(t)
	}

	var evs []event.Event
	complete := func() bool {
		evs = h.records().Events
		got := kernelEvents(evs, idx, lport)
		// Both ends of the connection: the client's and the server's sides.
		return got["dev-add-ntf"] == 2 && got["dev-del-ntf"] == 2 && (!mptcp || got["created"] == 2 && got["established"] == 2 && got["closed"] == 2)
	}
	for deadline := time.Now().Add(time.Minute); !complete() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	defer func() {
		if !complete() {
			t.Errorf("not every event of the veth pair and the MPTCP connection in the hub: %v", kernelEvents(evs, idx, lport))
		}
	}()
	for _, e := range evs {
		if e.Family == injectFamily {
			continue
		}
		if e.Host != c.NodeName() {
			t.Errorf("%s/%s %s: host %q, want the node's name %q (NODE_NAME)", e.Family, e.Group, e.Op, e.Host, c.NodeName())
		}
	}
	var lines []string
	for _, e := range evs {
		if e.Family == "netdev" || e.Family == "mptcp_pm" && !strings.HasPrefix(e.Op, "listener-") {
			lines = append(lines, fmt.Sprintf("%s %s/%s %s %s", e.Host, e.Family, e.Group, e.Op, e.Fields))
		}
	}
	t.Logf("in the hub (the machine's hostname is %q, the node's name %q; veth %v, MPTCP 127.0.0.1:%d -> :%d):\n%s",
		host, c.NodeName(), idx, cport, lport, strings.Join(lines, "\n"))
}

// kernelEvents counts the netdev events of the interfaces idx and the
// mptcp_pm events of the connections to port lport (both ends: their
// tokens, which "closed" carries alone), by op.
func kernelEvents(evs []event.Event, idx map[int]string, lport int) map[string]int {
	got := map[string]int{}
	tokens := map[float64]bool{}
	attrs := make([]map[string]any, len(evs))
	for i, e := range evs {
		_ = json.Unmarshal(e.Fields, &attrs[i])
		sport, _ := attrs[i]["sport"].(float64)
		dport, _ := attrs[i]["dport"].(float64)
		if e.Family == "mptcp_pm" && lport != 0 && (int(sport) == lport || int(dport) == lport) {
			if tok, ok := attrs[i]["token"].(float64); ok {
				tokens[tok] = true
			}
		}
	}
	for i, e := range evs {
		switch e.Family {
		case "netdev":
			if ifi, ok := attrs[i]["ifindex"].(float64); ok && idx[int(ifi)] != "" {
				got[e.Op]++
			}
		case "mptcp_pm":
			if tok, ok := attrs[i]["token"].(float64); ok && tokens[tok] {
				got[e.Op]++
			}
		}
	}
	return got
}

// mptcpConnection opens an MPTCP connection over loopback, sends a few
// bytes each way and closes it; it returns the listener's and the client's
// ports.
func mptcpConnection(t *testing.T) (lport, cport int) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lport = l.Addr().(*net.TCPAddr).Port
	done := make(chan error, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil {
			done <- err
			return
		}
		_, err = s.Write(buf)
		done <- err
	}()
	var d net.Dialer
	d.SetMultipathTCP(true)
	conn, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := conn.(*net.TCPConn)
	if ok, err := tc.MultipathTCP(); err != nil || !ok {
		t.Errorf("the connection is not MPTCP (%v): the kernel fell back to TCP", err)
	}
	cport = conn.LocalAddr().(*net.TCPAddr).Port
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return lport, cport
}

// vethPair makes a veth pair in the host's network namespace, named from
// prefix and the test's pid, then deletes it (netdev's dev-add-ntf and
// dev-del-ntf for both ends), and returns the ends' names by ifindex. A
// failure midway deletes the pair at the end of the test.
func vethPair(t *testing.T, prefix string) map[int]string {
	t.Helper()
	a, b := fmt.Sprintf("%s%da", prefix, os.Getpid()%100000), fmt.Sprintf("%s%db", prefix, os.Getpid()%100000)
	if out, err := exec.Command("ip", "link", "add", a, "type", "veth", "peer", "name", b).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = exec.Command("ip", "link", "del", a).Run()
		}
	})
	idx := map[int]string{}
	for _, n := range []string{a, b} {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			t.Fatal(err)
		}
		idx[ifi.Index] = n
	}
	if out, err := exec.Command("ip", "link", "del", a).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	deleted = true
	return idx
}
