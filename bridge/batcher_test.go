package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// recorder is a sink that keeps the shape of every batch.
type recorder struct {
	mu      sync.Mutex
	sizes   []int
	losses  []event.Loss
	seqs    []uint64
	deliver func(*sink.Batch) error
}

func (r *recorder) Deliver(ctx context.Context, b *sink.Batch) error {
	r.mu.Lock()
	r.sizes = append(r.sizes, len(b.Events))
	r.losses = append(r.losses, b.Losses...)
	for _, e := range b.Events {
		r.seqs = append(r.seqs, e.Seq)
	}
	f := r.deliver
	r.mu.Unlock()
	if f != nil {
		return f(b)
	}
	return nil
}

func (r *recorder) Close(context.Context) error { return nil }

func newTestBatcher(t testing.TB, s sink.Sink, queue, maxEvents, maxBytes int, linger time.Duration) (*batcher, *queue, func()) {
	l := newLedger()
	q, err := newQueue(queue, PolicyBlock, l)
	if err != nil {
		t.Fatal(err)
	}
	b := &batcher{q: q, ledger: l, sink: s, maxEvents: maxEvents, maxBytes: maxBytes, linger: linger,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan struct{})
	go func() { b.run(context.Background()); close(done) }()
	return b, q, func() { close(q.ch); <-done }
}

func TestBatcherCutsByCountBytesAndLinger(t *testing.T) {
	rec := &recorder{}
	_, q, stop := newTestBatcher(t, rec, 1000, 10, 1<<20, time.Hour)
	for i := 1; i <= 25; i++ {
		q.push(context.Background(), &event.Event{Seq: uint64(i)})
	}
	stop() // closing flushes the last partial batch
	if len(rec.sizes) != 3 || rec.sizes[0] != 10 || rec.sizes[1] != 10 || rec.sizes[2] != 5 {
		t.Fatalf("batch sizes %v, want [10 10 5]", rec.sizes)
	}
	for i, s := range rec.seqs {
		if s != uint64(i+1) {
			t.Fatalf("order: %v", rec.seqs)
		}
	}

	// Bytes: each event is estimated at >= 320 bytes, so a 1000-byte limit cuts at 4.
	rec = &recorder{}
	_, q, stop = newTestBatcher(t, rec, 1000, 64, 1000, time.Hour)
	for i := 1; i <= 8; i++ {
		q.push(context.Background(), &event.Event{Seq: uint64(i)})
	}
	stop()
	if len(rec.sizes) != 2 || rec.sizes[0] != 4 {
		t.Fatalf("byte-limited sizes %v, want [4 4]", rec.sizes)
	}

	// Linger: a lone event goes out after the linger time, not at the next one.
	rec = &recorder{}
	_, q, stop = newTestBatcher(t, rec, 1000, 64, 1<<20, 20*time.Millisecond)
	defer stop()
	start := time.Now()
	q.push(context.Background(), &event.Event{Seq: 1})
	for {
		rec.mu.Lock()
		n := len(rec.sizes)
		rec.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("lone event never delivered")
		}
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("delivered after %v, before the 20ms linger", d)
	}
}

func TestLossRecordsGoOutWithoutEvents(t *testing.T) {
	rec := &recorder{}
	b, _, stop := newTestBatcher(t, rec, 10, 64, 1<<20, time.Hour)
	defer stop()
	b.ledger.add(event.Loss{Family: "f", Group: "g", Reason: event.ReasonOverrun, Count: 5, FirstSeq: 1, LastSeq: 5}, true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.losses)
		rec.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("loss record not delivered on its own")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLedgerMergesContiguousRanges(t *testing.T) {
	l := newLedger()
	add := func(reason string, first, last uint64) {
		n := uint64(1)
		if first != 0 {
			n = last - first + 1
		}
		l.add(event.Loss{Family: "f", Group: "g", Reason: reason, Count: n, FirstSeq: first, LastSeq: last}, true)
	}
	add(event.ReasonQueueFull, 10, 10)
	add(event.ReasonQueueFull, 11, 11)
	add(event.ReasonQueueFull, 12, 15)
	add(event.ReasonQueueFull, 20, 20) // not contiguous
	add(event.ReasonOverrun, 21, 22)   // other reason
	add(event.ReasonMalformed, 0, 0)
	add(event.ReasonMalformed, 0, 0) // rangeless ones add up
	got := l.take(nil)
	want := []struct {
		reason      string
		count       uint64
		first, last uint64
	}{{event.ReasonQueueFull, 6, 10, 15}, {event.ReasonQueueFull, 1, 20, 20}, {event.ReasonOverrun, 2, 21, 22}, {event.ReasonMalformed, 2, 0, 0}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		if got[i].Reason != w.reason || got[i].Count != w.count || got[i].FirstSeq != w.first || got[i].LastSeq != w.last {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], w)
		}
	}
	if l.count(event.ReasonQueueFull) != 7 || l.count(event.ReasonMalformed) != 2 {
		t.Fatalf("counts %v", l.countsByReason())
	}
	if len(l.take(nil)) != 0 {
		t.Fatal("take did not empty the ledger")
	}
	// Counted but not published.
	l.add(event.Loss{Reason: event.ReasonSenderRejected, Count: 3}, false)
	if len(l.take(nil)) != 0 || l.count(event.ReasonSenderRejected) != 3 {
		t.Fatal("unpublished loss")
	}
}

// A long spool_full: more than 4,096 refused batches whose records come
// back in any order (the newest first, as requeued ones do) keep their
// exact ranges, merged into as few records as touch.
func TestLedgerKeepsRangesOfManyRefusedBatches(t *testing.T) {
	l := newLedger()
	const batches, size = 10000, 16
	// Two subscriptions; batch b holds sequences b*16+1 .. b*16+16. The
	// records arrive newest first, and every tenth batch was delivered.
	for b := batches - 1; b >= 0; b-- {
		if b%10 == 9 {
			continue
		}
		for _, fam := range []string{"f1", "f2"} {
			first := uint64(b*size + 1)
			l.requeue(event.Loss{Family: fam, Group: "g", Reason: event.ReasonSpoolFull, Count: size, FirstSeq: first,
				LastSeq: first + size - 1, Instance: 9, TimeNS: int64(b + 1)})
		}
	}
	got := l.take(nil)
	// A record per run of nine batches, per subscription.
	if want := 2 * batches / 10; len(got) != want {
		t.Fatalf("%d records, want %d (a range per run of refused batches)", len(got), want)
	}
	seen := map[string]map[uint64]int{"f1": {}, "f2": {}}
	var total uint64
	for _, r := range got {
		if r.FirstSeq == 0 || r.LastSeq-r.FirstSeq+1 != r.Count || r.Instance != 9 {
			t.Fatalf("record %+v: want an exact range", r)
		}
		for s := r.FirstSeq; s <= r.LastSeq; s++ {
			seen[r.Family][s]++
		}
		total += r.Count
	}
	for fam, m := range seen {
		for b := 0; b < batches; b++ {
			for s := uint64(b*size + 1); s <= uint64(b*size+size); s++ {
				want := 1
				if b%10 == 9 {
					want = 0
				}
				if m[s] != want {
					t.Fatalf("%s: sequence %d in %d records, want %d", fam, s, m[s], want)
				}
			}
		}
	}
	if want := uint64(2 * batches * 9 / 10 * size); total != want {
		t.Fatalf("%d events in the records, want %d", total, want)
	}
}

// Past the bound, records that touch nothing lose their range, never their
// count.
func TestLedgerBoundsPendingRecords(t *testing.T) {
	l := newLedger()
	for i := uint64(0); i < maxPendingLosses+100; i++ {
		s := 10 + 2*i // never touching
		l.add(event.Loss{Family: "f", Group: "g", Reason: event.ReasonSeqGap, Count: 1, FirstSeq: s, LastSeq: s, Instance: 3}, true)
	}
	// One that joins two pending ranges still merges, with its range.
	l.add(event.Loss{Family: "f", Group: "g", Reason: event.ReasonSeqGap, Count: 1, FirstSeq: 11, LastSeq: 11, Instance: 3}, true)
	got := l.take(nil)
	if len(got) != maxPendingLosses {
		t.Fatalf("%d pending records, want %d ranges and one count-only", len(got), maxPendingLosses-1)
	}
	var n, rangeless uint64
	for _, r := range got {
		n += r.Count
		if r.FirstSeq == 0 {
			rangeless += r.Count
		} else if r.FirstSeq == 10 && (r.LastSeq != 12 || r.Count != 3) {
			t.Fatalf("the touching record did not merge: %+v", r)
		}
	}
	if n != maxPendingLosses+101 || rangeless != 100 {
		t.Fatalf("records count %d (%d without a range), want %d (100)", n, rangeless, maxPendingLosses+101)
	}
}

func TestQueuePolicies(t *testing.T) {
	for _, c := range []struct {
		policy string
		keep   []uint64
	}{{PolicyDropNewest, []uint64{1, 2}}, {PolicyDropOldest, []uint64{4, 5}}} {
		l := newLedger()
		q, _ := newQueue(2, c.policy, l)
		for i := uint64(1); i <= 5; i++ {
			q.push(context.Background(), &event.Event{Seq: i, SeqSource: event.SeqKernel})
		}
		got := []uint64{(<-q.ch).Seq, (<-q.ch).Seq}
		if got[0] != c.keep[0] || got[1] != c.keep[1] || l.count(event.ReasonQueueFull) != 3 {
			t.Fatalf("%s kept %v (want %v), dropped %d", c.policy, got, c.keep, l.count(event.ReasonQueueFull))
		}
	}
	// Block: push waits, and gives up only when its context ends.
	l := newLedger()
	q, _ := newQueue(1, PolicyBlock, l)
	q.push(context.Background(), &event.Event{Seq: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if q.push(ctx, &event.Event{Seq: 2}) {
		t.Fatal("push into a full blocking queue returned true")
	}
	if _, err := newQueue(1, "sometimes", l); err == nil {
		t.Fatal("bad policy accepted")
	}
}

// BenchmarkQueueToSink is the cost per event of the queue, batching and the
// batcher's bookkeeping, with a sink that does nothing.
func BenchmarkQueueToSink(b *testing.B) {
	var mu sync.Mutex
	delivered := 0
	rec := &recorder{deliver: func(bt *sink.Batch) error {
		mu.Lock()
		delivered += len(bt.Events)
		mu.Unlock()
		return nil
	}}
	nop := sinkFunc(func(ctx context.Context, bt *sink.Batch) error { return rec.deliver(bt) })
	_, q, stop := newTestBatcher(b, nop, 16384, 64, 512<<10, time.Millisecond)
	e := event.Event{Host: "h", BootID: "b", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Seq: 1, Msg: "Hello from kernel at jiffies 1"}
	b.ReportAllocs()
	for b.Loop() {
		q.push(context.Background(), &e)
	}
	stop()
	if delivered != b.N {
		b.Fatalf("delivered %d of %d", delivered, b.N)
	}
}

type sinkFunc func(ctx context.Context, b *sink.Batch) error

func (f sinkFunc) Deliver(ctx context.Context, b *sink.Batch) error { return f(ctx, b) }
func (f sinkFunc) Close(context.Context) error                      { return nil }

// A queue_full or publish_failed record carries its event's instance when
// the module numbered the event, and no range when the bridge did; records
// of two instances never merge, even when their sequences are contiguous.
func TestLossRecordsOfDroppedEventsCarryTheirInstance(t *testing.T) {
	l := newLedger()
	q, _ := newQueue(1, PolicyDropNewest, l)
	ev := func(seq, inst uint64, src string) *event.Event {
		return &event.Event{Family: "f", Group: "g", Seq: seq, SeqSource: src, Instance: inst}
	}
	q.push(context.Background(), ev(4, 1, event.SeqKernel))
	q.push(context.Background(), ev(5, 1, event.SeqKernel)) // dropped
	q.push(context.Background(), ev(6, 2, event.SeqKernel)) // dropped: a new registration
	q.push(context.Background(), ev(9, 3, event.SeqBridge)) // dropped: the bridge's own count
	got := l.take(nil)
	if len(got) != 3 {
		t.Fatalf("records %+v: want three (two instances and a rangeless one)", got)
	}
	if got[0].FirstSeq != 5 || got[0].Instance != 1 || got[1].FirstSeq != 6 || got[1].Instance != 2 {
		t.Fatalf("records %+v: want 5 of instance 1, 6 of instance 2", got[:2])
	}
	if got[2].FirstSeq != 0 || got[2].LastSeq != 0 || got[2].Instance != 0 || got[2].Count != 1 {
		t.Fatalf("record %+v: a bridge-sequenced event's loss has no range", got[2])
	}

	// The batcher's publish_failed records, the same way.
	rec := &recorder{deliver: func(b *sink.Batch) error { return sink.AllUndelivered(b, errors.New("down")) }}
	bt, q2, stop := newTestBatcher(t, rec, 4, 2, 1<<20, time.Millisecond)
	defer stop()
	q2.push(context.Background(), ev(7, 4, event.SeqKernel))
	q2.push(context.Background(), ev(8, 5, event.SeqBridge))
	// The records go out (and fail) with the next batch: the sink sees them.
	natstest.WaitFor(t, 10*time.Second, "the records at the sink", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.losses) >= 2 })
	if n := bt.ledger.count(event.ReasonPublishFailed); n != 2 {
		t.Fatalf("publish_failed %d, want 2", n)
	}
	rec.mu.Lock()
	got = append([]event.Loss(nil), rec.losses[:2]...)
	rec.mu.Unlock()
	if got[0].FirstSeq != 7 || got[0].Instance != 4 || got[1].FirstSeq != 0 || got[1].Instance != 0 {
		t.Fatalf("publish_failed records %+v", got)
	}
}
