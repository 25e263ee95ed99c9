package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
)

// harness is a spool in a temporary directory and a hub: an embedded
// JetStream server with the default stream.
type harness struct {
	t     *testing.T
	dir   string
	hubNC *nats.Conn
	hub   *sink.JetStream
	sp    *Spool
	log   *logBuffer
}

// logBuffer keeps what the spool logs, for the tests that look at it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newHarness(t *testing.T) *harness {
	_, nc := jstest.Start(t)
	h := &harness{t: t, dir: t.TempDir(), hubNC: nc, log: &logBuffer{}}
	ctx := context.Background()
	var err error
	if h.hub, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, Logger: jstest.Logger(),
		AckTimeout: 500 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.hub.Close(ctx) })
	return h
}

func (h *harness) config() Config {
	e, l := templates()
	return Config{Dir: h.dir, MaxBytes: 64 << 20, Subject: e, LossSubject: l, BootID: "this-boot",
		Logger: slogTo(h.log)}
}

// openAlone opens the spool without a hub; change adjusts the config.
func (h *harness) openAlone(change ...func(*Config)) {
	h.t.Helper()
	cfg := h.config()
	for _, c := range change {
		c(&cfg)
	}
	var err error
	if h.sp, err = Open(cfg); err != nil {
		h.t.Fatal(err)
	}
	sp := h.sp
	h.t.Cleanup(func() { sp.Close(context.Background()) })
}

// open opens the spool forwarding to the hub.
func (h *harness) open(change ...func(*Config)) {
	h.t.Helper()
	h.openAlone(change...)
	h.forward()
}

func (h *harness) forward() {
	h.t.Helper()
	if err := h.sp.Forward(h.hub); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	h.t.Helper()
	if err := h.sp.Close(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deliver(b *sink.Batch) error {
	return h.sp.Sink().Deliver(context.Background(), b)
}

func (h *harness) mustDeliver(b *sink.Batch) {
	h.t.Helper()
	if err := h.deliver(b); err != nil {
		h.t.Fatal(err)
	}
}

// waitForwarded waits until the spool has forwarded everything it holds,
// failing when nothing moves for a while (not after a fixed time).
func (h *harness) waitForwarded() {
	h.t.Helper()
	last, still := h.sp.Stats(), time.Now()
	for {
		st := h.sp.Stats()
		if st.Messages == 0 {
			return
		}
		if st.Forwarded != last.Forwarded || st.Messages != last.Messages {
			last, still = st, time.Now()
		}
		if time.Since(still) > 30*time.Second {
			h.t.Fatalf("the spool holds %d records and forwards nothing: %+v", st.Messages, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hubRecords reads the hub's stream once it holds want messages, waiting
// while their number grows.
func (h *harness) hubRecords(want int) jstest.Records {
	h.t.Helper()
	still, last := time.Now(), uint64(0)
	for {
		n := jstest.StreamMsgs(h.t, h.hubNC, sink.DefaultStream.Name)
		if n >= uint64(want) {
			return jstest.ReadStream(h.t, h.hubNC, sink.DefaultStream.Name)
		}
		if n != last {
			last, still = n, time.Now()
		}
		if time.Since(still) > 30*time.Second {
			h.t.Fatalf("the hub holds %d messages, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkCoverage checks that every sequence 1..n of the hub's events and
// loss records appears exactly once, and returns the loss records.
func checkCoverage(t *testing.T, recs jstest.Records, n uint64) []event.Loss {
	t.Helper()
	seen := make([]int, n+1)
	for _, e := range recs.Events {
		if e.Seq < 1 || e.Seq > n {
			t.Fatalf("event seq %d outside 1..%d", e.Seq, n)
		}
		seen[e.Seq]++
	}
	for _, l := range recs.Losses {
		if l.FirstSeq == 0 || l.LastSeq-l.FirstSeq+1 != l.Count {
			t.Fatalf("loss record %+v without an exact range", l)
		}
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
	}
	for s := uint64(1); s <= n; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence %d accounted %d times (%d events, losses %+v)", s, seen[s], len(recs.Events), recs.Losses)
		}
	}
	for id, c := range recs.IDs {
		if c != 1 {
			t.Fatalf("Nats-Msg-Id %s stored %d times", id, c)
		}
	}
	return recs.Losses
}

// The writer stores batches, the forwarder moves them to the hub, once,
// in order; a new spool on the same directory sends nothing again (its
// cursor says where forwarding stopped) and knows where each subscription
// stopped.
func TestSpoolForwardsOnceAcrossRestarts(t *testing.T) {
	for _, sync := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(syncName(sync), func(t *testing.T) {
			h := newHarness(t)
			h.open(func(c *Config) { c.Sync = sync })
			for i := range 10 {
				h.mustDeliver(&sink.Batch{Events: testEvents("h", uint64(1+100*i), 100)})
			}
			h.waitForwarded()
			if st := h.sp.Stats(); st.Forwarded != 1000 || !st.Forwarding || st.Messages != 0 {
				t.Fatalf("stats %+v: want 1000 forwarded", st)
			}
			h.close()

			h.open(func(c *Config) { c.Sync = sync })
			boot, inst, seq, ok := h.sp.Resume("h", "CONTROL_EXMPL", "EXMPL_GRP")
			if !ok || boot != "boot" || inst != 5 || seq != 1000 {
				t.Fatalf("resume %q %d %d %v: want boot 5 1000", boot, inst, seq, ok)
			}
			h.mustDeliver(&sink.Batch{Events: testEvents("h", 1001, 5)})
			h.waitForwarded()
			recs := h.hubRecords(1005)
			checkCoverage(t, recs, 1005)
			for i, e := range recs.Events {
				if e.Seq != uint64(i+1) {
					t.Fatalf("event %d has seq %d: out of order", i, e.Seq)
				}
			}
			if st := h.sp.Stats(); st.Forwarded != 5 {
				t.Fatalf("the second spool forwarded %d, want only the 5 new", st.Forwarded)
			}
			if d := h.hub.Stats().Duplicates; d != 0 {
				t.Fatalf("%d messages sent twice", d)
			}
		})
	}
}

// Segments are deleted once forwarded: the spool's bytes are its files'.
func TestSpoolDeletesForwardedSegments(t *testing.T) {
	h := newHarness(t)
	h.openAlone(func(c *Config) { c.SegmentBytes = 64 << 10 })
	for i := range 50 {
		h.mustDeliver(&sink.Batch{Events: testEvents("h", uint64(1+100*i), 100)})
	}
	st := h.sp.Stats()
	segs, _ := listSegments(h.dir)
	var onDisk int64
	for _, s := range segs {
		onDisk += s.size
	}
	if len(segs) < 10 || int64(st.Bytes) != onDisk || st.Messages != 50 {
		t.Fatalf("%d segments, %d bytes on the disk, stats %+v", len(segs), onDisk, st)
	}
	h.forward()
	h.waitForwarded()
	// The forwarded segments go right after the cursor passes them.
	for i := 0; ; i++ {
		segs, _ = listSegments(h.dir)
		if len(segs) == 1 && h.sp.Stats().Bytes == uint64(segs[0].size) {
			break
		}
		if i == 1000 {
			t.Fatalf("after forwarding: %d segments, stats %+v", len(segs), h.sp.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkCoverage(t, h.hubRecords(5000), 5000)
}

// The limit covers the spool's files: past it, batches are refused whole
// with ErrSpoolFull, exactly (nothing half-stored); loss records alone
// still fit in the reserve; once forwarding frees room, batches go in
// again.
func TestSpoolLimit(t *testing.T) {
	h := newHarness(t)
	h.openAlone(func(c *Config) { c.MaxBytes = 1 << 20; c.SegmentBytes = 128 << 10 })
	var stored, refused uint64
	next := uint64(1)
	for refused == 0 {
		err := h.deliver(&sink.Batch{Events: testEvents("h", next, 100)})
		var de *sink.DeliveryError
		switch {
		case err == nil:
			stored += 100
		case errors.Is(err, sink.ErrSpoolFull) && errors.As(err, &de) && len(de.UndeliveredEvents) == 100:
			refused += 100
		default:
			t.Fatalf("batch at %d: %v", next, err)
		}
		next += 100
	}
	if st := h.sp.Stats(); st.Bytes > 1<<20 {
		t.Fatalf("the spool takes %d bytes, over its limit", st.Bytes)
	}
	// A loss record for the refused events goes into the reserve.
	loss := event.Loss{Host: "h", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonSpoolFull,
		Count: 100, FirstSeq: stored + 1, LastSeq: stored + 100, Instance: 5, TimeNS: 1}
	h.mustDeliver(&sink.Batch{Losses: []event.Loss{loss}})
	h.forward()
	h.waitForwarded()
	h.mustDeliver(&sink.Batch{Events: testEvents("h", next, 100)}) // room again
	h.waitForwarded()
	total := next + 99
	recs := h.hubRecords(int(total - refused + 1)) // events and the loss record
	losses := checkCoverage(t, recs, total)
	if len(losses) != 1 || losses[0].Reason != event.ReasonSpoolFull {
		t.Fatalf("loss records %+v", losses)
	}
}

// A record whose payload is damaged (16 bytes overwritten, the bridge
// stopped) becomes a spool_damaged loss record with its events' exact
// range, its own loss records published as they were; counted, logged with
// where it is.
func TestSpoolPayloadDamage(t *testing.T) {
	h := newHarness(t)
	h.openAlone()
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 1, 10)})
	overrun := event.Loss{Host: "h", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonOverrun,
		Count: 3, FirstSeq: 11, LastSeq: 13, Instance: 5, TimeNS: 77}
	h.mustDeliver(&sink.Batch{Losses: []event.Loss{overrun}, Events: testEvents("h", 14, 7)})
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 21, 10)})
	h.close()
	segs, _ := listSegments(h.dir)
	recs := readRecords(t, segs[len(segs)-1].path)
	r2 := recs[1]
	damage(t, segs[len(segs)-1].path, r2.off+int64(headerSize+r2.metaLen+r2.payloadLen/2), 16)

	h.open()
	h.waitForwarded()
	got := h.hubRecords(20 + 2)
	losses := checkCoverage(t, got, 30)
	slices.SortFunc(losses, func(a, b event.Loss) int { return int(a.FirstSeq) - int(b.FirstSeq) })
	if len(losses) != 2 || losses[0] != overrun || losses[1].Reason != event.ReasonSpoolDamaged || losses[1].FirstSeq != 14 || losses[1].LastSeq != 20 {
		t.Fatalf("loss records %+v: want the overrun as it was and spool_damaged 14-20", losses)
	}
	st := h.sp.Stats()
	if st.Damaged != 1 || st.Lost[event.ReasonSpoolDamaged] != 7 || st.Messages != 0 {
		t.Fatalf("stats %+v: want one damaged record, 7 events spool_damaged, nothing left", st)
	}
	if !strings.Contains(h.log.String(), "payload is damaged") || !strings.Contains(h.log.String(), filepath.Base(segs[len(segs)-1].path)) {
		t.Fatalf("the damage was not logged with its place:\n%s", h.log)
	}
}

// Damage the meta does not survive (a header's length overwritten, a
// segment cut short or deleted) is found from the records after it, or
// the end of the log: every sequence number once, in an event or a
// spool_damaged record.
func TestSpoolLostRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		// small: a record a segment.
		small  bool
		damage func(t *testing.T, segs []*segment)
		lost   string
	}{
		{"a header's length field", false, func(t *testing.T, segs []*segment) {
			r := readRecords(t, segs[0].path)[1]
			damage(t, segs[0].path, r.off+28, 4)
		}, "11-20"},
		{"two records' headers", false, func(t *testing.T, segs []*segment) {
			rs := readRecords(t, segs[0].path)
			damage(t, segs[0].path, rs[1].off, 8)
			damage(t, segs[0].path, rs[2].off+4, 4)
		}, "11-30"},
		{"the log cut short within its last record", false, func(t *testing.T, segs []*segment) {
			rs := readRecords(t, segs[0].path)
			last := rs[len(rs)-1]
			if err := os.Truncate(segs[0].path, last.off+int64(last.size())/2); err != nil {
				t.Fatal(err)
			}
		}, "41-50"},
		{"the log's last record cut off whole", false, func(t *testing.T, segs []*segment) {
			rs := readRecords(t, segs[0].path)
			if err := os.Truncate(segs[0].path, rs[len(rs)-1].off); err != nil {
				t.Fatal(err)
			}
		}, "41-50"},
		{"a segment deleted", true, func(t *testing.T, segs []*segment) {
			if err := os.Remove(segs[2].path); err != nil {
				t.Fatal(err)
			}
		}, "21-30"},
		{"a segment cut short", true, func(t *testing.T, segs []*segment) {
			if err := os.Truncate(segs[1].path, 100); err != nil {
				t.Fatal(err)
			}
		}, "11-20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			seg := func(c *Config) {
				if tc.small {
					c.SegmentBytes = 1
				}
			}
			h.openAlone(seg)
			for i := range 5 {
				h.mustDeliver(&sink.Batch{Events: testEvents("h", uint64(1+10*i), 10)})
			}
			h.close()
			segs, _ := listSegments(h.dir)
			tc.damage(t, segs)
			h.open(seg)
			h.waitForwarded()
			// Forwarded means acknowledged: the hub has it all.
			recs := jstest.ReadStream(t, h.hubNC, sink.DefaultStream.Name)
			losses := checkCoverage(t, recs, 50)
			var got []string
			for _, l := range losses {
				if l.Reason != event.ReasonSpoolDamaged {
					t.Fatalf("loss record %+v", l)
				}
				got = append(got, fmt.Sprintf("%d-%d", l.FirstSeq, l.LastSeq))
			}
			slices.Sort(got)
			if want := tc.lost; strings.Join(got, ",") != want && !(want == "11-30" && strings.Join(got, ",") == "11-20,21-30") {
				t.Fatalf("spool_damaged %v, want %s", got, want)
			}
			if st := h.sp.Stats(); st.Lost[event.ReasonSpoolDamaged] == 0 || st.Damaged == 0 && !strings.Contains(tc.name, "cut") {
				t.Fatalf("stats %+v", st)
			}
			if !strings.Contains(h.log.String(), "spool_damaged") {
				t.Fatalf("not logged:\n%s", h.log)
			}
		})
	}
}

// A record whose write was interrupted (a crash mid-write) is cut off at
// the next start, without a loss record: it was never counted delivered.
func TestSpoolTornWrite(t *testing.T) {
	h := newHarness(t)
	h.openAlone()
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 1, 10)})
	h.close()
	segs, _ := listSegments(h.dir)
	torn := buildRecord(&sink.Batch{Events: testEvents("h", 11, 10)}, 2, false, nil)
	f, err := os.OpenFile(segs[0].path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn[:len(torn)/2])
	f.Close()
	h.open()
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 11, 10)})
	h.waitForwarded()
	recs := h.hubRecords(20)
	if losses := checkCoverage(t, recs, 20); len(losses) != 0 {
		t.Fatalf("loss records %+v for a write that was never counted", losses)
	}
	if !strings.Contains(h.log.String(), "interrupted write") {
		t.Fatalf("not logged:\n%s", h.log)
	}
}

// A message the hub refuses for good (larger than its max_payload) is
// dropped, counted, and its event published as a publish_failed loss
// record; the others reach the hub.
func TestSpoolDropsWhatTheHubRefuses(t *testing.T) {
	h := newHarness(t)
	h.openAlone()
	evs := testEvents("h", 1, 5)
	evs[2].Msg = strings.Repeat("x", int(h.hubNC.MaxPayload())+1)
	h.mustDeliver(&sink.Batch{Events: evs})
	h.forward()
	h.waitForwarded()
	recs := h.hubRecords(5)
	losses := checkCoverage(t, recs, 5)
	if len(losses) != 1 || losses[0].Reason != event.ReasonPublishFailed || losses[0].FirstSeq != 3 {
		t.Fatalf("loss records %+v: want publish_failed 3", losses)
	}
	if st := h.sp.Stats(); st.Refused != 1 || st.Lost[event.ReasonPublishFailed] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// readRecords reads a segment's records (their headers and offsets).
func readRecords(t *testing.T, path string) []record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for off := 0; off < len(b); {
		h, err := parseFixed(b[off:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		out = append(out, record{header: h, off: int64(off)})
		off += h.size()
	}
	return out
}

// damage overwrites n bytes of path at off.
func damage(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("\xa5", n)), off); err != nil {
		t.Fatal(err)
	}
}

// Inspect says what a stopped spool holds, per subscription, and finds
// its damage, naming what it held: exact for a damaged payload, from the
// records after it for unreadable bytes.
func TestInspect(t *testing.T) {
	h := newHarness(t)
	h.openAlone()
	for i := range 5 {
		h.mustDeliver(&sink.Batch{Events: testEvents("h", uint64(1+10*i), 10)})
	}
	r, err := Inspect(h.dir, Options{Records: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Running || r.Records != 5 || r.Events != 50 || r.PendingEvents != 50 || len(r.Subscriptions) != 1 ||
		fmt.Sprint(r.Subscriptions[0].Ranges) != "[[1 50]]" || r.Damaged() {
		t.Fatalf("a running spool: %+v", r)
	}
	h.close()
	recs := r.RecordList
	damage(t, recs[1].File, recs[1].PayloadOffset+10, 16)
	damage(t, recs[3].File, recs[3].Offset, 4)
	r, err = Inspect(h.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Running || len(r.Damage) != 2 {
		t.Fatalf("damage %+v", r.Damage)
	}
	d0, d1 := r.Damage[0], r.Damage[1]
	if d0.What != "payload" || d0.FirstRecord != 2 || len(d0.Ranges) != 1 || d0.Ranges[0].First != 11 || d0.Ranges[0].Last != 20 {
		t.Fatalf("payload damage %+v", d0)
	}
	if d1.What != "unreadable" || d1.FirstRecord != 4 || d1.LastRecord != 4 || len(d1.Ranges) != 1 || d1.Ranges[0].First != 31 || d1.Ranges[0].Last != 40 {
		t.Fatalf("unreadable bytes %+v", d1)
	}
	if r.State == nil || !r.State.Clean || r.State.Synced != 5 {
		t.Fatalf("state %+v", r.State)
	}
}

// A disk another writer filled: batches are refused before any write
// fails; loss records the log cannot take go straight to the hub while it
// takes messages; once the disk has room the spool takes events again.
func TestSpoolDiskFullLossRecordsGoStraightToTheHub(t *testing.T) {
	h := newHarness(t)
	h.open()
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 1, 10)})
	h.waitForwarded()
	var full atomic.Bool
	full.Store(true)
	fb := func(string) (uint64, bool) {
		if full.Load() {
			return 4096, true
		}
		return 1 << 40, true
	}
	h.sp.freeBytes.Store(&fb)
	h.sp.diskFreeAt.Store(0) // read the disk again at the next write
	err := h.deliver(&sink.Batch{Events: testEvents("h", 11, 10)})
	if !errors.Is(err, sink.ErrSpoolFull) || h.sp.Ready() == nil || h.sp.Stats().StoreErrors != 1 {
		t.Fatalf("a full disk: %v; ready %v; stats %+v", err, h.sp.Ready(), h.sp.Stats())
	}
	loss := event.Loss{Host: "h", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonSpoolFull,
		Count: 10, FirstSeq: 11, LastSeq: 20, Instance: 5, TimeNS: 3}
	h.mustDeliver(&sink.Batch{Losses: []event.Loss{loss}})
	recs := h.hubRecords(11)
	if losses := checkCoverage(t, recs, 20); len(losses) != 1 || losses[0] != loss {
		t.Fatalf("loss records in the hub %+v, want %+v", losses, loss)
	}
	if segs, _ := listSegments(h.dir); h.sp.Stats().Messages != 0 || len(segs) != 1 {
		t.Fatalf("the loss record went into the log: %+v", h.sp.Stats())
	}
	full.Store(false)
	h.sp.diskFreeAt.Store(0)
	h.mustDeliver(&sink.Batch{Events: testEvents("h", 21, 10)})
	h.waitForwarded()
	checkCoverage(t, h.hubRecords(21), 30)
	if h.sp.Ready() != nil {
		t.Fatalf("not ready once the disk has room: %v", h.sp.Ready())
	}
}
