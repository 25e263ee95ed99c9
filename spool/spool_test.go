package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
)

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		in  string
		inc string
		seq uint64
		idx int
		ok  bool
	}{
		{"0a1b:12:3", "0a1b", 12, 3, true},
		{"x:1:0", "x", 1, 0, true},
		{"x:1", "", 0, 0, false},
		{"x:1:-1", "", 0, 0, false},
		{"x:one:2", "", 0, 0, false},
		{"", "", 0, 0, false},
	} {
		inc, seq, idx, ok := parseTag(tc.in)
		if inc != tc.inc || seq != tc.seq || idx != tc.idx || ok != tc.ok {
			t.Errorf("parseTag(%q) = %q %d %d %v", tc.in, inc, seq, idx, ok)
		}
	}
}

// testEvents makes n module-shaped events of host from seq first.
func testEvents(host string, first uint64, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Host: host, BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Cmd: 1, Version: 1,
			Seq: first + uint64(i), SeqSource: event.SeqKernel, Instance: 5, Format: event.FormatExmpl, Msg: fmt.Sprintf("event %d", first+uint64(i))}
	}
	return evs
}

type harness struct {
	t     *testing.T
	dir   string
	hubNC *nats.Conn
	hub   *sink.JetStream
	sp    *Spool
}

func newHarness(t *testing.T) *harness {
	return newHarnessWindow(t, sink.DefaultStream.DuplicateWindow)
}

// newHarnessWindow has a hub stream with the duplicate window dup.
func newHarnessWindow(t *testing.T, dup time.Duration) *harness {
	_, nc := jstest.Start(t)
	h := &harness{t: t, dir: t.TempDir(), hubNC: nc}
	ctx := context.Background()
	stream := sink.DefaultStream
	stream.DuplicateWindow = dup
	var err error
	if h.hub, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: stream, Manage: true, Logger: jstest.Logger(),
		AckTimeout: 100 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.hub.Close(ctx) })
	return h
}

// open opens the spool on the harness's directory, forwarding to its hub.
func (h *harness) open() {
	h.t.Helper()
	h.openAlone()
	if err := h.sp.Forward(context.Background(), h.hub, h.hub.Stream()); err != nil {
		h.t.Fatal(err)
	}
}

// openAlone opens the spool without a hub.
func (h *harness) openAlone() {
	h.t.Helper()
	subject, _ := sink.ParseTemplate(sink.DefaultSubject)
	losses, _ := sink.ParseTemplate(sink.DefaultLossSubject)
	var err error
	h.sp, err = Open(context.Background(), Config{Dir: h.dir, MaxBytes: 64 << 20, Subjects: []string{"genl.>"},
		Sink:          sink.JetStreamConfig{Subject: subject, LossSubject: losses, Logger: jstest.Logger()},
		ResumeFilters: []string{subject.Filter("", "", "h", ""), losses.Filter("", "", "h", "")}, Logger: jstest.Logger()})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	h.t.Helper()
	if err := h.sp.Close(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// waitEmpty waits until the spool has forwarded everything.
func (h *harness) waitEmpty() {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for h.sp.Stats().Messages != 0 {
		if time.Now().After(deadline) {
			h.t.Fatalf("the spool still holds %d messages", h.sp.Stats().Messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The writer stores batches, the forwarder moves them to the hub, once,
// in order; a new spool on the same directory forwards nothing again (the
// hub has it all), and its Resume knows where the previous run stopped
// only while it holds events.
func TestSpoolForwardsOnceAcrossRestarts(t *testing.T) {
	h := newHarness(t)
	h.open()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := h.sp.Sink().Deliver(ctx, &sink.Batch{Events: testEvents("h", uint64(1+100*i), 100)}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitEmpty()
	if st := h.sp.Stats(); st.Forwarded != 1000 || !st.Forwarding {
		t.Fatalf("stats %+v: want 1000 forwarded", st)
	}
	h.close()

	h.open()
	defer h.close()
	if _, _, _, ok := h.sp.Resume("h", "CONTROL_EXMPL", "EXMPL_GRP"); ok {
		t.Fatal("an empty spool has a resume point")
	}
	if err := h.sp.Sink().Deliver(ctx, &sink.Batch{Events: testEvents("h", 1001, 5)}); err != nil {
		t.Fatal(err)
	}
	h.waitEmpty()
	recs := jstest.ReadStream(t, h.hubNC, sink.DefaultStream.Name)
	if len(recs.Events) != 1005 || len(recs.IDs) != recs.Msgs {
		t.Fatalf("the hub holds %d events in %d messages (%d ids): want 1005, once each", len(recs.Events), recs.Msgs, len(recs.IDs))
	}
	for i, e := range recs.Events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

// handForward gives the hub the messages idxs of pack 1, tagged as the
// forwarder tags them: what a forwarder stopped midway leaves behind.
func (h *harness) handForward(idxs ...int) {
	h.t.Helper()
	ctx := context.Background()
	m, err := h.sp.current().stream.GetMsg(ctx, 1)
	if err != nil {
		h.t.Fatal(err)
	}
	want := map[int]bool{}
	for _, i := range idxs {
		want[i] = true
	}
	var msgs []sink.Msg
	if _, err := sink.Unpack(m.Data, func(i int, subject, id, data []byte) bool {
		if want[i] {
			msgs = append(msgs, sink.Msg{Subject: string(subject), ID: string(id), Data: data, Tag: fmt.Sprintf("%s:1:%d", h.sp.incarnation, i)})
		}
		return true
	}); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	h.hub.Forward(ctx, msgs, func(refused, unsent []int, err error) { done <- err })
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
}

// What the hub already has of the spool is not stored twice: within its
// duplicate window the forwarder sends it again and the hub drops it;
// past the window the forwarder skips the run of the spool the hub is seen
// to hold, and sends the rest, a message the hub lacks before the last one
// it has included. A pack the hub got part of before its window and the
// rest just now (an outage split it) is skipped too, though the hub's last
// message is recent.
func TestSpoolSkipsWhatTheHubHas(t *testing.T) {
	skew, span := clockSkew, minSpan
	clockSkew, minSpan = 500*time.Millisecond, 500*time.Millisecond
	t.Cleanup(func() { clockSkew, minSpan = skew, span })
	for _, tc := range []struct {
		name        string
		dup         time.Duration
		have, later []int  // later: handed to the hub once it forgot have's ids
		forwarded   uint64 // by the forwarder
	}{
		{"within the duplicate window", 2 * time.Minute, []int{0, 1, 2, 3}, nil, 10},
		{"past it", time.Second, []int{0, 1, 2, 3}, nil, 6},
		{"past it, a gap", time.Second, []int{0, 1, 3}, nil, 7},
		{"a pack split across the window", 3 * time.Second, []int{0, 1}, []int{2, 3}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessWindow(t, tc.dup)
			h.openAlone() // no hub yet: the pack stays
			defer h.close()
			ctx := context.Background()
			if err := h.sp.Sink().Deliver(ctx, &sink.Batch{Events: testEvents("h", 1, 10)}); err != nil {
				t.Fatal(err)
			}
			h.handForward(tc.have...)
			if tc.dup < time.Minute {
				time.Sleep(tc.dup + 100*time.Millisecond) // the hub forgets the ids
			}
			if tc.later != nil {
				h.handForward(tc.later...)
			}
			if err := h.sp.Forward(ctx, h.hub, h.hub.Stream()); err != nil {
				t.Fatal(err)
			}
			h.waitEmpty()
			recs := jstest.ReadStream(t, h.hubNC, sink.DefaultStream.Name)
			seen := map[uint64]int{}
			for _, e := range recs.Events {
				seen[e.Seq]++
			}
			for q := uint64(1); q <= 10; q++ {
				if seen[q] != 1 {
					t.Fatalf("event %d stored %d times (%d events in the hub)", q, seen[q], len(recs.Events))
				}
			}
			if fwd := h.sp.Stats().Forwarded; fwd != tc.forwarded {
				t.Fatalf("forwarded %d, want %d", fwd, tc.forwarded)
			}
		})
	}
}

// A failed store refuses every batch at once, as spool_full, and what a
// failure leaves in flight comes back with that error too.
func TestWriterRefusesWhileTheStoreFailed(t *testing.T) {
	h := newHarness(t)
	h.open()
	defer h.close()
	h.sp.broken.Store(true)
	err := h.sp.Sink().Deliver(context.Background(), &sink.Batch{Events: testEvents("h", 1, 3)})
	var de *sink.DeliveryError
	if !errors.Is(err, sink.ErrSpoolFull) || !errors.As(err, &de) || len(de.UndeliveredEvents) != 3 {
		t.Fatalf("%v: want all three refused as spool_full", err)
	}
	done := make(chan error, 1)
	h.sp.Sink().Submit(context.Background(), &sink.Batch{Events: testEvents("h", 4, 2)}, func(_ *sink.Batch, err error) { done <- err })
	if err := <-done; !errors.Is(err, sink.ErrSpoolFull) {
		t.Fatalf("Submit: %v", err)
	}
	if err := h.sp.storeErr(&sink.DeliveryError{Err: sink.ErrClosed, UndeliveredEvents: []int{0}}); !errors.Is(err, sink.ErrSpoolFull) {
		t.Fatalf("storeErr of a closed sink's error while failed: %v", err)
	}
	if err := h.sp.Ready(); err == nil {
		t.Fatal("ready with a failed store")
	}
	h.sp.broken.Store(false)
	if err := h.sp.Sink().Deliver(context.Background(), &sink.Batch{Events: testEvents("h", 6, 1)}); err != nil {
		t.Fatal(err)
	}
}

// A message the hub refuses for good (larger than its max_payload) is
// dropped from the spool with its pack and counted once; the others of the
// pack reach the hub.
func TestSpoolDropsWhatTheHubRefuses(t *testing.T) {
	h := newHarness(t)
	h.openAlone()
	defer h.close()
	ctx := context.Background()
	evs := testEvents("h", 1, 5)
	evs[2].Msg = strings.Repeat("x", int(h.hubNC.MaxPayload())+1)
	if err := h.sp.Sink().Deliver(ctx, &sink.Batch{Events: evs}); err != nil {
		t.Fatal(err)
	}
	if err := h.sp.Forward(ctx, h.hub, h.hub.Stream()); err != nil {
		t.Fatal(err)
	}
	h.waitEmpty()
	recs := jstest.ReadStream(t, h.hubNC, sink.DefaultStream.Name)
	var got []uint64
	for _, e := range recs.Events {
		got = append(got, e.Seq)
	}
	if !slices.Equal(got, []uint64{1, 2, 4, 5}) {
		t.Fatalf("the hub stores %v, want 1 2 4 5", got)
	}
	if st := h.sp.Stats(); st.Refused != 1 || st.Forwarded != 4 || st.Damaged != 0 {
		t.Fatalf("refused %d, forwarded %d, damaged %d: want 1, 4, 0", st.Refused, st.Forwarded, st.Damaged)
	}
}
