package audit

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

func ev(seq, inst uint64, src string) *event.Event {
	return &event.Event{Host: "h", BootID: "b", Family: "f", Group: "g", Seq: seq, SeqSource: src, Instance: inst}
}

func loss(first, last, inst uint64, reason string) *event.Loss {
	n := uint64(0)
	if last >= first && first > 0 {
		n = last - first + 1
	}
	return &event.Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: reason, Count: n, FirstSeq: first, LastSeq: last, Instance: inst}
}

func TestComplete(t *testing.T) {
	a := New()
	for s := uint64(5); s <= 100; s++ {
		if s >= 40 && s <= 49 {
			continue
		}
		a.Event(ev(s, 7, event.SeqKernel))
	}
	a.Loss(loss(40, 44, 7, event.ReasonOverrun))
	a.Loss(loss(45, 49, 7, event.ReasonSeqGap))
	r := a.Report()
	if !r.OK() || len(r.Instances) != 1 {
		t.Fatalf("%+v", r)
	}
	in := r.Instances[0]
	// Numbers before the first seen are no hole.
	if in.First != 5 || in.Last != 100 || in.Events != 86 || len(in.Holes) != 0 ||
		!reflect.DeepEqual(in.Covered, map[string]uint64{event.ReasonOverrun: 5, event.ReasonSeqGap: 5}) {
		t.Fatalf("%+v", in)
	}
}

// Any order gives the same report (a consumer after republishes).
func TestAnyOrder(t *testing.T) {
	var recs []func(*Auditor)
	for s := uint64(1); s <= 2000; s++ {
		switch {
		case s%97 == 0: // a hole nothing covers
		case s%89 == 0:
			recs = append(recs, func(a *Auditor) { a.Loss(loss(s, s, 3, event.ReasonQueueFull)) })
		default:
			recs = append(recs, func(a *Auditor) { a.Event(ev(s, 3, event.SeqKernel)) })
		}
	}
	in := New()
	for _, f := range recs {
		f(in)
	}
	want := in.Report()
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		a := New()
		for _, f := range recs {
			f(a)
		}
		if got := a.Report(); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffled:\n%+v\nin order:\n%+v", got, want)
		}
	}
	if want.UncoveredHoles != 20 || want.OK() || len(want.Instances[0].Holes) != 20 || want.Instances[0].Covered[event.ReasonQueueFull] != 22 {
		t.Fatalf("%+v", want)
	}
}

func TestDuplicatesAndDoubleCounts(t *testing.T) {
	a := New()
	for s := uint64(1); s <= 20; s++ {
		a.Event(ev(s, 1, event.SeqKernel))
	}
	a.Event(ev(7, 1, event.SeqKernel))
	a.Event(ev(8, 1, event.SeqKernel))
	a.Loss(loss(15, 25, 1, event.ReasonSpoolFull)) // claims 15..20, which arrived
	a.Loss(loss(24, 30, 1, event.ReasonSeqGap))    // and 24..25 twice
	r := a.Report()
	in := r.Instances[0]
	if r.OK() || !reflect.DeepEqual(in.Duplicates, []Range{{7, 8}}) || len(in.Overlaps) != 1 || in.Overlaps[0].First != 15 ||
		!reflect.DeepEqual(in.OverlappingLosses, []Range{{24, 25}}) || len(in.Holes) != 0 || in.Last != 30 {
		t.Fatalf("%+v", in)
	}
}

// A bridge-numbered instance's holes are paid by count-only records of
// the subscription (queue_full of an event the bridge had numbered).
func TestCountOnlyRecords(t *testing.T) {
	a := New()
	for s := uint64(1); s <= 10; s++ {
		if s != 4 && s != 5 {
			a.Event(ev(s, 9, event.SeqBridge))
		}
	}
	a.Loss(&event.Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonQueueFull, Count: 1})
	r := a.Report()
	if r.OK() || r.UncoveredHoles != 1 || r.Unplaced["h f/g"][event.ReasonQueueFull] != 1 {
		t.Fatalf("one record for two: %+v", r)
	}
	a.Loss(&event.Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonPublishFailed, Count: 1})
	if r = a.Report(); !r.OK() || r.UncoveredHoles != 0 {
		t.Fatalf("two records for two: %+v", r)
	}
	// A record of another subscription pays nothing here.
	b := New()
	b.Event(ev(1, 9, event.SeqBridge))
	b.Event(ev(3, 9, event.SeqBridge))
	b.Loss(&event.Loss{Host: "other", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonQueueFull, Count: 1})
	if r = b.Report(); r.OK() {
		t.Fatalf("%+v", r)
	}
}

func TestInstancesApart(t *testing.T) {
	a := New()
	a.Event(ev(1, 1, event.SeqKernel))
	a.Event(ev(2, 1, event.SeqKernel))
	a.Event(ev(1, 2, event.SeqKernel)) // a new registration starts over: no duplicate
	a.Event(ev(3, 2, event.SeqKernel))
	r := a.Report()
	if len(r.Instances) != 2 || r.Instances[1].Holes[0] != (Range{2, 2}) || len(r.Instances[0].Duplicates) != 0 {
		t.Fatalf("%+v", r)
	}
}

func env(e *event.Event) *event.Envelope { return &event.Envelope{V: 2, Type: "event", Event: *e} }

func lossEnv(l *event.Loss) *event.Envelope {
	return &event.Envelope{V: 2, Type: "loss", Event: event.Event{Host: l.Host, BootID: l.BootID, Family: l.Family, Group: l.Group, Instance: l.Instance},
		Reason: l.Reason, Count: l.Count, FirstSeq: l.FirstSeq, LastSeq: l.LastSeq}
}

func TestLive(t *testing.T) {
	l := NewLive()
	t0 := time.Unix(1000, 0)
	for _, s := range []uint64{1, 2, 5, 6, 10, 3, 11, 20} {
		l.Envelope(env(ev(s, 1, event.SeqKernel)), t0)
	}
	// 3 arrived late; 7..9 get their loss record after the event past them.
	l.Envelope(lossEnv(loss(7, 9, 1, event.ReasonOverrun)), t0)
	// 4 and 12..19: a count-only record pays for 5 of them, the oldest first.
	l.Envelope(lossEnv(&event.Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonQueueFull, Count: 5}), t0)
	if due := l.Due(t0.Add(time.Second)); len(due) != 0 {
		t.Fatalf("due before the grace: %+v", due)
	}
	due := l.Due(t0.Add(3 * time.Second))
	var got []Range
	for _, h := range due {
		got = append(got, h.Range)
	}
	if want := []Range{{16, 19}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("holes %v, want %v", got, want)
	}
	if len(l.Pending()) != 0 {
		t.Fatalf("pending %+v", l.Pending())
	}
}

// TestMalformedLossRecords: a range that runs backwards, reaches the last
// number there is, or whose count is not its length is noted unreadable
// and fails the audit, instead of being counted.
func TestMalformedLossRecords(t *testing.T) {
	for _, l := range []*event.Loss{
		{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonOverrun, Count: 6, FirstSeq: 10, LastSeq: 5, Instance: 7},
		{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonOverrun, Count: 10, FirstSeq: 1<<64 - 10, LastSeq: 1<<64 - 1, Instance: 7},
		{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: event.ReasonOverrun, Count: 3, FirstSeq: 4, LastSeq: 9, Instance: 7},
	} {
		a := New()
		a.Event(ev(1, 7, event.SeqKernel))
		a.Event(ev(12, 7, event.SeqKernel))
		a.Loss(l)
		r := a.Report()
		if r.OK() || len(r.Unreadable) != 1 || r.Lost != 0 {
			t.Errorf("loss %d-%d count %d: ok %v, unreadable %q, lost %d", l.FirstSeq, l.LastSeq, l.Count, r.OK(), r.Unreadable, r.Lost)
		}
		// The hole 2..11 stays a hole: counted once.
		if r.UncoveredHoles != 10 {
			t.Errorf("loss %d-%d: %d uncovered, want 10", l.FirstSeq, l.LastSeq, r.UncoveredHoles)
		}
	}
}
