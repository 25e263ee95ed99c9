//go:build linux

package e2e

// The node's spool through outages of the fleet's server: the hub is a
// nats-server process (JetStream, file store) killed and restarted, the
// bridge a genlbridge process in a fresh network namespace fed by a
// userspace generator at a steady rate, and the hub's stream is read back
// at the end: every event exactly once, in order per subscription, and
// every event the spool could not hold counted, with its range.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/nats-io/nats.go"
)

// spoolBridge starts a bridge on netdev/mgmt (module-shaped events from
// userspace) in ns, with its spool in front of hub.
func spoolBridge(t *testing.T, ns *netnstest.NS, hubURL, spoolDir string, extra ...string) *proctest.Bridge {
	t.Helper()
	env := append([]string{"GENLBRIDGE_NATS_URL=" + hubURL, "GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on",
		"GENLBRIDGE_SPOOL_DIR=" + spoolDir, "GENLBRIDGE_NETNS=" + ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl",
		"GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true", "GENLBRIDGE_NODE_NAME=spool-node", "GENLBRIDGE_DATA_DIR=" + t.TempDir(),
		"GENLBRIDGE_FLUSH_TIMEOUT=1s", "GENLBRIDGE_RETRY_MAX=500ms"}, extra...)
	return proctest.Start(t, env...)
}

// generate sends module-shaped events first..first+n-1 at rate per second.
func generate(t *testing.T, snd *inject.Sender, first uint64, n, rate int) {
	t.Helper()
	if err := sendPaced(snd, first, n, rate, nil); err != nil {
		t.Fatal(err)
	}
}

// sendPaced is generate for any goroutine: it returns the error, and
// stores in progress (if not nil) how many it has sent.
func sendPaced(snd *inject.Sender, first uint64, n, rate int, progress *atomic.Uint64) error {
	const chunk = 50
	start := time.Now()
	for sent := 0; sent < n; {
		want := min(n, int(time.Since(start).Seconds()*float64(rate))+1)
		if want <= sent {
			time.Sleep(time.Millisecond)
			continue
		}
		k := min(want-sent, chunk)
		if err := snd.SendExmpl(first+uint64(sent), k); err != nil {
			return fmt.Errorf("send %d..%d: %w", first+uint64(sent), first+uint64(sent+k-1), err)
		}
		sent += k
		if progress != nil {
			progress.Store(uint64(sent))
		}
	}
	return nil
}

// checkHub reads the hub's stream and checks that every sequence 1..sent
// is one event or inside one loss record of reason, exactly once, that the
// events come in sequence order, and that no message is stored twice.
// It returns the events and the lost count.
func checkHub(t *testing.T, nc *nats.Conn, sent uint64, lossReason string) (events int, lost uint64) {
	t.Helper()
	recs := jstest.ReadStream(t, nc, "GENL")
	for id, n := range recs.IDs {
		if n != 1 {
			t.Fatalf("Nats-Msg-Id %s stored %d times", id, n)
		}
	}
	seen := make([]uint8, sent+1)
	var last uint64
	for i, e := range recs.Events {
		if e.Seq < 1 || e.Seq > sent || e.SeqSource != event.SeqKernel {
			t.Fatalf("event %d: seq %d (%s) outside 1..%d", i, e.Seq, e.SeqSource, sent)
		}
		if e.Seq <= last {
			t.Fatalf("event %d: seq %d after %d: out of order", i, e.Seq, last)
		}
		last = e.Seq
		seen[e.Seq]++
	}
	for _, l := range recs.Losses {
		if l.Reason != lossReason || l.FirstSeq == 0 || l.LastSeq-l.FirstSeq+1 != l.Count {
			t.Fatalf("loss record %+v: want %q with an exact range", l, lossReason)
		}
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
		lost += l.Count
	}
	for s := uint64(1); s <= sent; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence %d accounted %d times (%d events, %d lost in %d loss records)", s, seen[s], len(recs.Events), lost, len(recs.Losses))
		}
	}
	return len(recs.Events), lost
}

// waitHub waits until the hub's stream accounts for n sequences (events
// plus lost) or fails.
func waitHub(t *testing.T, b *proctest.Bridge, n uint64, timeout time.Duration) {
	t.Helper()
	b.WaitMetrics(timeout, fmt.Sprintf("%d events forwarded or counted", n), func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") == 0 && m.Get("genlbridge_events_published_total")+m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull) >= float64(n)
	})
}

// waitStream waits until the hub's stream accounts for n sequences (events
// and loss records' counts); it fails when the stream has not grown for
// stall.
func waitStream(t *testing.T, nc *nats.Conn, n uint64, stall time.Duration) {
	t.Helper()
	last, moved := uint64(0), time.Now()
	for {
		if msgs := jstest.StreamMsgs(t, nc, "GENL"); msgs != last {
			last, moved = msgs, time.Now()
		} else if time.Since(moved) <= stall {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		recs := jstest.ReadStream(t, nc, "GENL")
		got := uint64(len(recs.Events))
		for _, l := range recs.Losses {
			got += l.Count
		}
		if got >= n {
			return
		}
		if time.Since(moved) > stall {
			t.Fatalf("the hub's stream accounts for %d of %d sequences and has not grown for %s", got, n, stall)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startHub(t *testing.T) (*jstest.Process, *nats.Conn) {
	t.Helper()
	hub := jstest.StartProcess(t)
	nc, err := nats.Connect(hub.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return hub, nc
}

// TestSpoolFull: a spool of 2 MiB through an outage far longer than it
// holds: the spool keeps what it holds, the rest is counted as spool_full
// with exact ranges, and the loss records reach the hub once it is back.
func TestSpoolFull(t *testing.T) {
	ns := netnstest.Need(t)
	hub, nc := startHub(t)
	b := spoolBridge(t, ns, hub.URL(), t.TempDir(), "GENLBRIDGE_SPOOL_MAX_BYTES=2MiB")
	b.WaitMetrics(30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	generate(t, snd, 1, 1000, 5000) // before the outage
	hub.Kill()
	const during = 20000
	generate(t, snd, 1001, during, 5000)
	m := b.WaitMetrics(30*time.Second, "the spool full and every event read", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_events_received_total") == 1000+during && m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull) > 0
	})
	t.Logf("during the outage: spool %v messages, %v bytes of %v; spool_full %v", m.Get("genlbridge_spool_messages"),
		m.Get("genlbridge_spool_bytes"), m.Get("genlbridge_spool_max_bytes"), m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull))
	hub.Start()
	const after = 1000
	generate(t, snd, 1001+during, after, 5000)
	total := uint64(1000 + during + after)
	waitHub(t, b, total, 2*time.Minute)
	final := b.WaitMetrics(time.Minute, "every loss record forwarded", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_loss_records_published_total") > 0 && m.Get("genlbridge_loss_records_waiting") == 0 &&
			m.Get("genlbridge_spool_messages") == 0
	})
	// The last loss records may be on their way from the spool still.
	waitStream(t, nc, total, time.Minute)
	events, lost := checkHub(t, nc, total, event.ReasonSpoolFull)
	counted := final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull)
	var other float64
	for _, r := range event.Reasons {
		if r != event.ReasonSpoolFull {
			other += final.Get("genlbridge_events_dropped_total", "reason="+r)
		}
	}
	if uint64(events)+lost != total || float64(lost) != counted || other != 0 {
		t.Fatalf("hub: %d events + %d lost (spool_full counted %v, other reasons %v) != %d sent", events, lost, counted, other, total)
	}
	t.Logf("sent %d: %d events in the hub, %d counted spool_full in loss records with exact ranges", total, events, lost)
}

// outage runs the hub outage test: the hub killed for 60 s while the
// bridge takes 10,000 events/s (600,000: four times what its socket holds),
// then restarted. With killBridge the bridge is killed with SIGKILL in the
// middle of the outage (once it has spooled what it read) and started again
// on the same spool.
func outage(t *testing.T, killBridge bool) {
	ns := netnstest.Need(t)
	hub, nc := startHub(t)
	spoolDir, dataDir := t.TempDir(), t.TempDir()
	start := func() *proctest.Bridge {
		b := spoolBridge(t, ns, hub.URL(), spoolDir, "GENLBRIDGE_DATA_DIR="+dataDir)
		b.WaitMetrics(30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
		return b
	}
	b := start()
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	const rate, before, during, after = 10000, 10000, 600000, 10000
	generate(t, snd, 1, before, rate)
	waitHub(t, b, before, 30*time.Second)
	hub.Kill()
	down := time.Now()
	next := uint64(before + 1)
	var earlier uint64 // events the running bridge did not publish itself (a killed one's)
	if killBridge {
		generate(t, snd, next, during/2, rate)
		next += during / 2
		// Everything read is spooled: then SIGKILL, and a new bridge.
		b.WaitMetrics(30*time.Second, "the first half spooled", func(m proctest.Metrics) bool {
			return m.Get("genlbridge_events_published_total") == float64(next-1) && m.Get("genlbridge_queue_depth") == 0
		})
		m, _ := b.Metrics()
		t.Logf("SIGKILL with %v messages (%v bytes) in the spool", m.Get("genlbridge_spool_messages"), m.Get("genlbridge_spool_bytes"))
		b.Signal(syscall.SIGKILL)
		b.Wait(10 * time.Second)
		b = start()
		earlier = next - 1
		generate(t, snd, next, during/2, rate)
		next += during / 2
	} else {
		generate(t, snd, next, during, rate)
		next += during
	}
	m := b.WaitMetrics(60*time.Second, "every event of the outage spooled", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_queue_depth") == 0 && m.Get("genlbridge_events_published_total") == float64(next-1-earlier)
	})
	// The events spooled and not forwarded (with a killed bridge, in the
	// spool the second one took over, too).
	backlog := float64(next-1) - float64(before)
	t.Logf("after %v down: spool %v messages (packs), %.0f MiB (%.0f bytes an event), oldest %.0fs; forwarding %v", time.Since(down).Round(time.Second),
		m.Get("genlbridge_spool_messages"), m.Get("genlbridge_spool_bytes")/(1<<20), m.Get("genlbridge_spool_bytes")/backlog,
		m.Get("genlbridge_spool_oldest_age_seconds"), m.Get("genlbridge_spool_forwarding"))
	if m.Get("genlbridge_spool_forwarding") != 0 || b.Ready() {
		t.Errorf("forwarding %v, ready %v while the hub is down: want 0 and not ready", m.Get("genlbridge_spool_forwarding"), b.Ready())
	}
	hub.Start()
	up := time.Now()
	// Live events go on while the backlog drains.
	generate(t, snd, next, after, rate)
	total := next - 1 + after
	b.WaitMetrics(5*time.Minute, "the spool drained", func(m proctest.Metrics) bool { return m.Get("genlbridge_spool_messages") == 0 })
	drained := time.Since(up)
	events, lost := checkHub(t, nc, total, "")
	final, _ := b.Metrics()
	var counted float64
	for _, r := range event.Reasons {
		counted += final.Get("genlbridge_events_dropped_total", "reason="+r)
	}
	if uint64(events) != total || lost != 0 || counted != 0 {
		t.Fatalf("hub: %d events, %d lost (the bridge counted %v) of %d sent: want every event exactly once and no loss", events, lost, counted, total)
	}
	t.Logf("sent %d: all in the hub once, in order, no loss record; backlog of %.0f drained in %v (%.0f events/s with live events at %d/s)",
		total, backlog, drained.Round(time.Millisecond), backlog/drained.Seconds(), rate)
}

// TestSpoolHubOutage: a 60 s outage of the hub: nothing lost, nothing twice.
func TestSpoolHubOutage(t *testing.T) { outage(t, false) }

// TestSpoolHubOutageBridgeKilled: the same, the bridge killed with SIGKILL
// in the middle and started again on its spool.
func TestSpoolHubOutageBridgeKilled(t *testing.T) { outage(t, true) }

// TestSpoolDiskFull: another writer fills the spool's disk (a 64 MiB
// tmpfs) during an outage, long before the spool's limit: the store's
// failure is logged and counted, new events are counted as spool_full, the
// daemon keeps running; once the disk has room again and the hub is back,
// a new store forwards what is spooled and takes events again. Every
// sequence is an event in the hub or in a loss record, exactly once.
func TestSpoolDiskFull(t *testing.T) {
	ns := netnstest.Need(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs a tmpfs mount (root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	spoolDir := filepath.Join(dir, "spool")
	hub, nc := startHub(t)
	// More than the disk: the bridge caps it, and says so.
	b := spoolBridge(t, ns, hub.URL(), spoolDir, "GENLBRIDGE_SPOOL_MAX_BYTES=256MiB")
	b.WaitMetrics(30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
	if m, _ := b.Metrics(); m.Get("genlbridge_spool_max_bytes") >= 64<<20 || b.LogRecord("GENLBRIDGE_SPOOL_MAX_BYTES is more than the spool's disk holds: the spool's limit is what it holds") == nil {
		t.Fatalf("a limit of 256 MiB on a 64 MiB disk: the spool's limit is %v; want it below the disk, and a warning", m.Get("genlbridge_spool_max_bytes"))
	}
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	generate(t, snd, 1, 1000, 5000)
	waitHub(t, b, 1000, 30*time.Second)
	hub.Kill()

	// Another writer takes all but 2 MiB of the disk.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(fs.Bavail)*fs.Bsize-2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	const during = 30000 // about 12 MiB in the spool: more than the disk has left
	generate(t, snd, 1001, during, 10000)
	m := b.WaitMetrics(time.Minute, "every event read, the disk full", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_events_received_total") == 1000+during && m.Get("genlbridge_queue_depth") == 0 &&
			m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull) > 0
	})
	t.Logf("disk full: %v store errors, %v events spooled, %v counted spool_full; ready %v", m.Get("genlbridge_spool_store_errors_total"),
		m.Get("genlbridge_events_published_total")-1000, m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull), b.Ready())
	if m.Get("genlbridge_spool_store_errors_total") == 0 || b.Ready() || b.LogRecord("spool: its disk is full or failing: new events are counted as spool_full until it has room; what it holds is kept and forwarded") == nil {
		t.Fatalf("a full disk: want store errors counted, /readyz failing and the failure logged; log:\n%s", b.Log())
	}

	// Room again, and the hub back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	hub.Start()
	b.WaitMetrics(2*time.Minute, "the store back and the spool drained", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") == 0 && b.LogRecord("spool: its disk has room again: new events are spooled") != nil
	})
	const after = 1000
	generate(t, snd, 1001+during, after, 5000)
	total := uint64(1000 + during + after)
	waitHub(t, b, total, 2*time.Minute)
	final := b.WaitMetrics(time.Minute, "every loss record forwarded", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_loss_records_waiting") == 0 && m.Get("genlbridge_spool_messages") == 0
	})
	waitStream(t, nc, total, time.Minute)
	events, lost := checkHub(t, nc, total, event.ReasonSpoolFull)
	if counted := final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull); float64(lost) != counted || uint64(events)+lost != total {
		t.Fatalf("hub: %d events + %d lost, the bridge counted %v spool_full, of %d sent", events, lost, counted, total)
	}
	if !b.Running() {
		t.Fatal("the bridge exited")
	}
	t.Logf("sent %d: %d events in the hub, %d counted spool_full with exact ranges; the store failed and came back without a restart (%d lines of log)",
		total, events, lost, strings.Count(b.Log(), "\n"))
}
