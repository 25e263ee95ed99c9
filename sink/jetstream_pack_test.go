package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go/jetstream"
)

// With Pack, a batch of two subscriptions' events and a loss record is
// stored as one pack per subscription, each on its first event's subject,
// holding exactly the messages the sink publishes without Pack.
func TestJetStreamPacksPerSubscription(t *testing.T) {
	_, nc := startJetStream(t)
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, Pack: true})
	a := testEvents("h", 1, 3)
	b := testEvents("h", 1, 2)
	for i := range b {
		b[i].Family, b[i].Group = "netdev", "mgmt"
	}
	batch := &sink.Batch{Events: []event.Event{a[0], b[0], a[1], a[2], b[1]},
		Losses: []event.Loss{{Host: "h", Family: "netdev", Group: "mgmt", Reason: event.ReasonOverrun, Count: 2, FirstSeq: 3, LastSeq: 4, BootID: "boot-1", Instance: 7}}}
	if err := s.Deliver(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), sink.DefaultStream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("%d stream messages, want 2 packs", n)
	}
	type got struct{ subject, id string }
	var packs [][]got
	var seqs []uint64
	for q := uint64(1); q <= 2; q++ {
		m, err := st.GetMsg(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []got
		n, err := sink.Unpack(m.Data, func(_ int, subject, id, data []byte) bool {
			msgs = append(msgs, got{string(subject), string(id)})
			var env event.Envelope
			if err := json.Unmarshal(data, &env); err != nil {
				t.Fatalf("a packed payload is not a record: %q", data)
			}
			if env.Type == "event" {
				seqs = append(seqs, env.Event.Seq)
			}
			return true
		})
		if err != nil || n != len(msgs) {
			t.Fatal(n, err)
		}
		if want := msgs[0].id + "+" + fmt.Sprint(n); m.Header.Get("Nats-Msg-Id") != want {
			t.Fatalf("pack id %q, want %q", m.Header.Get("Nats-Msg-Id"), want)
		}
		// On its first event's subject, not its loss record's.
		if want := msgs[len(msgs)-1].subject; m.Subject != want {
			t.Fatalf("pack on %q, want %q", m.Subject, want)
		}
		packs = append(packs, msgs)
	}
	// The loss record comes first (the encoder's order), so netdev's pack
	// does: its loss record and two events; then CONTROL_EXMPL's three.
	if len(packs[0]) != 3 || len(packs[1]) != 3 {
		t.Fatalf("packs %v", packs)
	}
	if !strings.Contains(packs[0][0].subject, "loss") || !strings.Contains(packs[0][1].subject, "netdev") ||
		!strings.Contains(packs[1][0].subject, "CONTROL_EXMPL") {
		t.Fatalf("packs: %v", packs)
	}
	if fmt.Sprint(seqs) != "[1 2 1 2 3]" {
		t.Fatalf("events in the packs by seq: %v", seqs)
	}
}

// A pack the stream refuses for good names every record it holds.
func TestJetStreamRefusedPackNamesItsRecords(t *testing.T) {
	_, nc := startJetStream(t)
	refuse := errors.New("refused")
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"genl.>"},
		MaxBytes: 64, Discard: jetstream.DiscardNew, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cfg := sink.JetStreamConfig{Stream: sink.StreamConfig{Name: "SMALL", Subjects: []string{"genl.>"}, DuplicateWindow: time.Minute}, Pack: true,
		Classify: func([]byte) error { return refuse }, AckTimeout: time.Second}
	s := newJS(t, nc, cfg)
	a := testEvents("h", 1, 3)
	b := testEvents("h", 1, 2)
	for i := range b {
		b[i].Family = "netdev"
	}
	batch := &sink.Batch{Events: []event.Event{a[0], b[0], a[1], b[1], a[2]}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Deliver(ctx, batch)
	var de *sink.DeliveryError
	if !errors.As(err, &de) || !errors.Is(err, refuse) || fmt.Sprint(de.UndeliveredEvents) != "[0 2 4 1 3]" {
		// CONTROL_EXMPL's pack (events 0, 2, 4), then netdev's (1, 3).
		t.Fatalf("%v: want every record named, by pack", err)
	}
}

// A subscription's messages that pass the server's payload limit go in
// several packs, each below it, in order.
func TestJetStreamPackSplitsBelowMaxPayload(t *testing.T) {
	_, nc := startJetStream(t)
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, Pack: true})
	evs := testEvents("h", 1, 4000)
	for i := range evs {
		evs[i].Msg = strings.Repeat("x", 200)
	}
	if err := s.Deliver(context.Background(), &sink.Batch{Events: evs}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(context.Background(), sink.DefaultStream.Name)
	packs := st.CachedInfo().State.Msgs
	if packs < 2 {
		t.Fatalf("%d packs for %d events of ~400 bytes with a payload limit of %d", packs, len(evs), nc.MaxPayload())
	}
	next := uint64(1)
	for q := uint64(1); q <= packs; q++ {
		m, err := st.GetMsg(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(m.Data)) > nc.MaxPayload() {
			t.Fatalf("pack %d: %d bytes, over the limit %d", q, len(m.Data), nc.MaxPayload())
		}
		if _, err := sink.Unpack(m.Data, func(_ int, _, _, data []byte) bool {
			var env event.Envelope
			if json.Unmarshal(data, &env) != nil || env.Event.Seq != next {
				t.Fatalf("pack %d: event %d where %d was due", q, env.Event.Seq, next)
			}
			next++
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	if next != uint64(len(evs))+1 {
		t.Fatalf("%d events in %d packs, want %d", next-1, packs, len(evs))
	}
}
