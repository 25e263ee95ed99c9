//go:build linux

package e2e

// The faults a node's disk and a node's scheduler have, with real
// processes: the spool's disk too small for an outage, a damaged spool
// file, a bridge frozen right after joining, a restart with a spool full
// of events and the hub down. Each ends with every sequence number in the
// hub once: an event, or inside one exactly ranged loss record.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/spool"
)

// tmpfs mounts a tmpfs of size on a temporary directory, for the test.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs a tmpfs mount (root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// joined waits until b has joined its one subscription.
func joined(t *testing.T, b *proctest.Bridge) {
	t.Helper()
	b.WaitMetrics(30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
}

// The spool never fills its own disk: a 20 MiB tmpfs, the default limit
// (capped to the disk), a 22 s outage at 10,000 events/s (220,000 events,
// five times what the disk holds). The spool refuses what it has no room
// for (spool_full, exact ranges) without a single failed write, keeps
// forwarding once the hub is back, and takes events again as soon as it
// has room, without a restart; every loss record reaches the hub and none
// is given up on.
func TestSpoolNeverFillsItsDisk(t *testing.T) {
	ns := netnstest.Need(t)
	dir := tmpfs(t, "20m")
	hub, nc := startHub(t)
	b := spoolBridge(t, ns, hub.URL(), filepath.Join(dir, "spool"))
	joined(t, b)
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	generate(t, snd, 1, 1000, 10000)
	waitHub(t, b, 1000, 30*time.Second)
	hub.Kill()
	const rate, during = 10000, 220000
	generate(t, snd, 1001, during, rate)
	m := b.WaitMetrics(time.Minute, "every event of the outage read", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_events_received_total") == 1000+during && m.Get("genlbridge_queue_depth") == 0
	})
	full := m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull)
	t.Logf("during the outage: spool %.1f MiB of %.1f MiB, %v events spool_full, %v store errors, %v loss records waiting",
		m.Get("genlbridge_spool_bytes")/(1<<20), m.Get("genlbridge_spool_max_bytes")/(1<<20), full,
		m.Get("genlbridge_spool_store_errors_total"), m.Get("genlbridge_loss_records_waiting"))
	if full == 0 || m.Get("genlbridge_spool_store_errors_total") != 0 {
		t.Fatalf("want events refused for the limit and no failed write of the spool's own disk; log:\n%s", b.Log())
	}
	hub.Start()
	const after = 20000
	generate(t, snd, 1001+during, after, rate) // while the backlog drains
	total := uint64(1000 + during + after)
	final := b.WaitMetrics(time.Minute, "the spool drained, every loss record forwarded", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") == 0 && m.Get("genlbridge_loss_records_waiting") == 0 &&
			m.Get("genlbridge_events_published_total")+m.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull) == float64(total)
	})
	waitStream(t, nc, total, time.Minute)
	events, lost := checkHub(t, nc, total, event.ReasonSpoolFull)
	counted := final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolFull)
	if uint64(events)+lost != total || float64(lost) != counted || final.Get("genlbridge_loss_records_failed_total") != 0 ||
		final.Get("genlbridge_spool_store_errors_total") != 0 {
		t.Fatalf("hub: %d events + %d lost; counted spool_full %v; loss records failed %v; store errors %v",
			events, lost, counted, final.Get("genlbridge_loss_records_failed_total"), final.Get("genlbridge_spool_store_errors_total"))
	}
	if !b.Ready() {
		t.Fatal("not ready once drained")
	}
	t.Logf("sent %d: %d events in the hub, %d spool_full in loss records with exact ranges; no failed write, no loss record given up", total, events, lost)
}

// A damaged spool file (16 payload bytes of a record overwritten while the
// bridge is stopped, the hub down) is found: the next bridge publishes a
// spool_damaged loss record with the record's exact range, counts it and
// logs where it is; `genlbridge spool verify` names it first, and exits 1.
func TestSpoolDamagedFile(t *testing.T) {
	ns := netnstest.Need(t)
	hub, nc := startHub(t)
	hub.Kill()
	spoolDir := t.TempDir()
	b := spoolBridge(t, ns, hub.URL(), spoolDir, "GENLBRIDGE_BATCH_EVENTS=100")
	joined(t, b)
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	const n = 5000
	generate(t, snd, 1, n, 5000)
	b.WaitMetrics(30*time.Second, "every event spooled", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_events_published_total") == n
	})
	b.Signal(syscall.SIGTERM)
	b.Wait(30 * time.Second)

	r, err := spool.Inspect(spoolDir, spool.Options{Records: true})
	if err != nil || r.Events != n || r.Damaged() || len(r.RecordList) < 3 {
		t.Fatalf("the stopped spool: %v, %+v", err, r)
	}
	victim := r.RecordList[len(r.RecordList)/2]
	f, err := os.OpenFile(victim.File, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("0123456789abcdef"), victim.PayloadOffset+int64(victim.PayloadBytes)/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, _ = spool.Inspect(spoolDir, spool.Options{})
	if len(r.Damage) != 1 || len(r.Damage[0].Ranges) != 1 {
		t.Fatalf("damage found: %+v", r.Damage)
	}
	want := r.Damage[0].Ranges[0]
	out, err := exec.Command(proctest.Binary(t), "spool", "verify", "--dir", spoolDir).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), fmt.Sprintf("events %d-%d", want.First, want.Last)) {
		t.Fatalf("spool verify: exit %d, output:\n%s", code, out)
	}

	hub.Start()
	b = spoolBridge(t, ns, hub.URL(), spoolDir)
	joined(t, b)
	final := b.WaitMetrics(time.Minute, "the spool forwarded", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") == 0 && m.Get("genlbridge_spool_damaged_total") == 1
	})
	waitStream(t, nc, n, time.Minute)
	events, lost := checkHub(t, nc, n, event.ReasonSpoolDamaged)
	if lost != want.Last-want.First+1 || uint64(events)+lost != n ||
		final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolDamaged) != float64(lost) {
		t.Fatalf("hub: %d events + %d lost (want %d-%d); counted %v", events, lost, want.First, want.Last,
			final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonSpoolDamaged))
	}
	if rec := b.LogRecord("spool: a record's payload is damaged (its checksum fails); its events are published as a spool_damaged loss record, its loss records as they were"); rec == nil || rec["file"] != victim.File {
		t.Fatalf("the damage was not logged with its file; log:\n%s", b.Log())
	}
	t.Logf("record %d damaged: %d events in the hub, %d-%d in a spool_damaged loss record", victim.Seq, events, want.First, want.Last)
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// A bridge frozen (SIGSTOP) right after joining, with a small receive
// buffer, while 50,000 events are multicast: once resumed it reads what
// the socket held, and counts the rest as overrun once, with their range,
// though it read the drop counter before it had seen an event.
func TestOverrunBeforeTheFirstEventCountedOnce(t *testing.T) {
	ns := netnstest.Need(t)
	srv := natstest.StartServer(t, 0, nil)
	col := natstest.Collect(t, srv.URL(), "genl.>", nil)
	b := proctest.Start(t, "GENLBRIDGE_NATS_URL="+srv.URL(), "GENLBRIDGE_SINK=nats", "GENLBRIDGE_SPOOL=off",
		"GENLBRIDGE_NETNS="+ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true",
		"GENLBRIDGE_RECEIVE_BUFFER=1MiB", "GENLBRIDGE_NODE_NAME=frozen", "GENLBRIDGE_DATA_DIR="+t.TempDir(),
		"GENLBRIDGE_SPOOL_DIR="+t.TempDir(), "GENLBRIDGE_SHUTDOWN_SCRAPE_WAIT=30s")
	joined(t, b)
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	b.Signal(syscall.SIGSTOP)
	const n = 50000
	if err := snd.SendExmpl(1, n); err != nil {
		b.Signal(syscall.SIGCONT)
		t.Fatal(err)
	}
	// Longer than the reader's wait on its socket, so that it reads the
	// drop counter first when it runs again.
	time.Sleep(300 * time.Millisecond)
	b.Signal(syscall.SIGCONT)
	b.WaitMetrics(30*time.Second, "the socket read", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_queue_depth") == 0 && m.Sum("genlbridge_events_received_total") > 0 &&
			m.Sum("genlbridge_socket_drops_total") > 0
	})
	if err := snd.SendExmpl(n+1, 10); err != nil {
		t.Fatal(err)
	}
	b.WaitMetrics(30*time.Second, "the last ten read", func(m proctest.Metrics) bool {
		return m.Sum("genlbridge_events_received_total")+m.Sum("genlbridge_socket_drops_total") == n+10
	})
	b.Signal(syscall.SIGTERM)
	final := b.WaitMetrics(30*time.Second, "the final counts", func(m proctest.Metrics) bool { return m.Get("genlbridge_stopped") == 1 })
	b.Wait(30 * time.Second)
	var lost float64
	for _, r := range event.Reasons {
		lost += final.Get("genlbridge_events_dropped_total", "reason="+r)
	}
	delivered := final.Get("genlbridge_events_published_total")
	if delivered+lost != n+10 || lost != final.Sum("genlbridge_socket_drops_total") {
		t.Fatalf("%v delivered + %v lost != %d sent (socket drops %v); log:\n%s", delivered, lost, n+10, final.Sum("genlbridge_socket_drops_total"), b.Log())
	}
	st := b.LogRecord("stopped")
	if st == nil || st["lost_total"].(float64) != lost {
		t.Fatalf("the stop line %v", st)
	}
	// In the stream: every sequence once, the lost ones in overrun records
	// with their range.
	natstest.WaitFor(t, 30*time.Second, "every record collected", func() bool { return col.Accounted() >= n+10 })
	evs, losses := col.Snapshot()
	seen := make([]int, n+11)
	for _, e := range evs {
		seen[e.Seq]++
	}
	for _, l := range losses {
		if l.Reason != event.ReasonOverrun || l.FirstSeq == 0 || l.LastSeq-l.FirstSeq+1 != l.Count {
			t.Fatalf("loss record %+v: want overrun with an exact range", l)
		}
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
	}
	for s := 1; s <= n+10; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence %d accounted %d times", s, seen[s])
		}
	}
	t.Logf("sent %d: %v read, %v overrun in %d records, each once", n+10, delivered, lost, len(losses))
}

// A restart with the hub down and a spool holding 200,000 events joins at
// once: the resume point comes from the spool's memory, not from decoding
// what it holds or waiting for the hub. The generator stops only while no
// bridge runs; nothing is lost, and nothing is counted lost.
func TestRestartWithAFullSpoolJoinsAtOnce(t *testing.T) {
	ns := netnstest.Need(t)
	hub, nc := startHub(t)
	hub.Kill()
	spoolDir, dataDir := t.TempDir(), t.TempDir()
	proctest.Binary(t) // built before the clock starts
	start := func() (*proctest.Bridge, time.Duration) {
		began := time.Now()
		b := spoolBridge(t, ns, hub.URL(), spoolDir, "GENLBRIDGE_DATA_DIR="+dataDir)
		joined(t, b)
		rec := b.LogRecord("joined")
		at, _ := proctest.LogTime(rec)
		return b, at.Sub(began)
	}
	b, first := start()
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	const spooled = 200000
	generate(t, snd, 1, spooled, 20000)
	b.WaitMetrics(time.Minute, "every event spooled", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_events_published_total") == spooled
	})
	m, _ := b.Metrics()
	b.Signal(syscall.SIGTERM)
	b.Wait(30 * time.Second)
	b, again := start()
	t.Logf("start to joined: %v the first time, %v with %v records (%.0f MiB) spooled and the hub down",
		first.Round(time.Millisecond), again.Round(time.Millisecond), m.Get("genlbridge_spool_messages"), m.Get("genlbridge_spool_bytes")/(1<<20))
	if again > 2*time.Second {
		t.Fatalf("joined %v after the start: want at once, not after waiting for the hub or reading the spool", again)
	}
	const after = 20000
	generate(t, snd, spooled+1, after, 10000)
	hub.Start()
	total := uint64(spooled + after)
	b.WaitMetrics(time.Minute, "the spool forwarded", func(m proctest.Metrics) bool { return m.Get("genlbridge_spool_messages") == 0 })
	waitStream(t, nc, total, time.Minute)
	events, lost := checkHub(t, nc, total, "")
	if uint64(events) != total || lost != 0 {
		t.Fatalf("hub: %d events, %d lost of %d", events, lost, total)
	}
}
