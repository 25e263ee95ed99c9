//go:build vmtest

package vmtest

// The guest side of the power-loss test (TestVMPowerLoss on the host): the
// bridge spools onto an ext4 file system on the VM's virtio disk while no
// hub is reachable, and reports how many events it counted delivered; the
// host kills qemu (the guest's power goes) while it writes, boots again on
// the same disk with a hub, and this side checks that every event counted
// delivered before the cut reaches the hub. Each test runs only when the
// host asks for it (vmtest_powerloss=write or recover on the kernel command
// line).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/broker"
	gevent "github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/spool"
)

// hubURL is where the power-loss test's hub listens (the recover boot) and
// where the bridge looks for it (both).
const hubURL = "nats://127.0.0.1:4999"

// mountDisk loads the disk's modules (the host put them in /mods, with
// their order) and mounts the virtio disk's ext4 file system.
func mountDisk(t *testing.T) string {
	t.Helper()
	order, err := os.ReadFile(GuestDiskModules + "/order")
	if err != nil {
		t.Fatalf("no disk modules in the VM: %v", err)
	}
	var failed []string
	for _, name := range strings.Fields(string(order)) {
		// A module for hardware the VM lacks (crc32c-intel without
		// SSE4.2 under TCG) fails; what the disk needs is seen below.
		if out, err := exec.Command("insmod", filepath.Join(GuestDiskModules, name+".ko")).CombinedOutput(); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat("/dev/vda"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /dev/vda after loading the disk's modules (failed: %q)", failed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir := "/mnt/disk"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "ext4", "/dev/vda", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount /dev/vda: %v\n%s (modules that failed to load: %q)", err, out, failed)
	}
	return dir
}

// powerLossBridge starts the bridge with its spool on the disk.
func powerLossBridge(t *testing.T, disk string) *proctest.Bridge {
	t.Helper()
	env := []string{"GENLBRIDGE_NATS_URL=" + hubURL, "GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on",
		"GENLBRIDGE_SPOOL_DIR=" + disk + "/spool", "GENLBRIDGE_DATA_DIR=" + t.TempDir(), "GENLBRIDGE_NODE_NAME=powerloss",
		"GENLBRIDGE_FLUSH_TIMEOUT=1s", "GENLBRIDGE_RETRY_MAX=500ms", "HOME=/root", "TMPDIR=/tmp"}
	if s := os.Getenv("vmtest_spool_sync"); s != "" {
		env = append(env, "GENLBRIDGE_SPOOL_SYNC="+s)
	}
	b := proctest.StartBinary(t, bridgeBinary(t), env...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", b.Log())
		}
	})
	return b
}

// TestPowerLossWrite spools events until the host cuts the power: a burst
// of the module's at a time, and after each the count of events the
// bridge has counted delivered (into the spool), which the host reads.
func TestPowerLossWrite(t *testing.T) {
	if os.Getenv("vmtest_powerloss") != "write" {
		t.Skip("the host's power-loss test runs it (vmtest_powerloss=write)")
	}
	disk := mountDisk(t)
	insmod(t, "period_ms=3600000")
	b := powerLossBridge(t, disk)
	b.WaitMetrics(time.Minute, "joined", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_subscription_joined", "subscription="+subscription) == 1
	})
	joined := time.Now()
	for i := 0; i < 400; i++ {
		sendBurst(t, 2000)
		m, err := b.Metrics()
		if err != nil {
			continue
		}
		// The bridge reads once it has waited for the hub's resume point
		// (5 s); a minute with nothing spooled is a fault.
		if time.Since(joined) > time.Minute && m.Get("genlbridge_events_published_total") == 0 {
			t.Fatalf("nothing spooled after %d bursts in %v: %v received", i+1, time.Since(joined).Round(time.Second), m.Sum("genlbridge_events_received_total"))
		}
		// Printed after the scrape: every event counted here was on the
		// disk before the line reached the console.
		metric(t, "powerloss published=%.0f received=%.0f spool_bytes=%.0f", m.Get("genlbridge_events_published_total"),
			m.Sum("genlbridge_events_received_total"), m.Get("genlbridge_spool_bytes"))
	}
	t.Fatal("the host did not cut the power")
}

// sendBurst asks the module for a burst of n events, waiting for the one
// before it to end: a burst runs in the kernel's work queue after the
// command returns, and the module refuses a second (EBUSY) meanwhile.
func sendBurst(t *testing.T, n int) {
	t.Helper()
	for {
		out, err := exec.Command(bridgeBinary(t), "send", "burst", strconv.Itoa(n)).CombinedOutput()
		if err == nil {
			return
		}
		if !strings.Contains(string(out), "a burst is already running") {
			t.Fatalf("send burst: %v\n%s", err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPowerLossRecover boots on the disk the power was cut from, with a
// hub: every event the last boot counted delivered (vmtest_powerloss_acked,
// as the host read it) must reach the hub once, or be inside a loss
// record.
func TestPowerLossRecover(t *testing.T) {
	if os.Getenv("vmtest_powerloss") != "recover" {
		t.Skip("the host's power-loss test runs it (vmtest_powerloss=recover)")
	}
	acked, err := strconv.ParseUint(os.Getenv("vmtest_powerloss_acked"), 10, 64)
	if err != nil || acked == 0 {
		t.Fatalf("vmtest_powerloss_acked=%q: want the events counted delivered before the cut", os.Getenv("vmtest_powerloss_acked"))
	}
	disk := mountDisk(t)
	r, err := spool.Inspect(disk+"/spool", spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the spool after the cut: %d records, %d events, %d segments, state %+v, damage %+v", r.Records, r.Events, len(r.Segments), r.State, r.Damage)
	srv, err := broker.Start(broker.Config{Listen: strings.TrimPrefix(hubURL, "nats://"), StoreDir: t.TempDir(), JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	b := powerLossBridge(t, disk)
	b.WaitMetrics(2*time.Minute, "the spool forwarded", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") == 0 && m.Get("genlbridge_spool_forwarding") == 1
	})
	nc := jstest.Connect(t, srv.URL())
	recs := jstest.ReadStream(t, nc, "GENL")
	seen := map[uint64]int{}
	var maxSeq, lost uint64
	for _, e := range recs.Events {
		seen[e.Seq]++
		maxSeq = max(maxSeq, e.Seq)
	}
	for _, l := range recs.Losses {
		if l.FirstSeq == 0 {
			t.Errorf("a loss record without a range: %+v", l)
			continue
		}
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
		lost += l.Count
	}
	for id, n := range recs.IDs {
		if n != 1 {
			t.Errorf("Nats-Msg-Id %s stored %d times", id, n)
		}
	}
	missing := 0
	report := os.Getenv("vmtest_powerloss_report") == "1"
	for s := uint64(1); s <= acked; s++ {
		if seen[s] != 1 {
			if missing < 10 && (!report || seen[s] > 1) {
				t.Errorf("sequence %d (counted delivered before the cut) is in the hub %d times", s, seen[s])
			}
			missing++
		}
	}
	metric(t, "powerloss acked=%d in_hub=%d max_seq=%d lost_in_records=%d missing=%d sync=%s", acked, len(recs.Events), maxSeq, lost, missing,
		cmpOr(os.Getenv("vmtest_spool_sync"), "always"))
	if missing > 0 && os.Getenv("vmtest_powerloss_report") == "1" {
		t.Logf("with GENLBRIDGE_SPOOL_SYNC=%s the power cut lost %d of the %d events counted delivered", os.Getenv("vmtest_spool_sync"), missing, acked)
		missing = 0
	}
	if missing > 0 {
		t.Fatalf("%d of the %d events counted delivered before the power cut are not in the hub", missing, acked)
	}
	for _, l := range recs.Losses {
		if l.Reason == gevent.ReasonSpoolDamaged {
			t.Errorf("a power cut is no damage: %+v", l)
		}
	}
	fmt.Println("power loss: every event counted delivered is in the hub")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
