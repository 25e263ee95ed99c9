package sink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
)

// The acknowledgement paths of the JetStream sink that a healthy stream
// never takes: no acknowledgement at all, replies that are not PubAcks,
// error replies, duplicate replies written with a space, and no responders. The sink is pointed at subjects
// no stream covers, where a plain subscriber plays the stream's part.
func TestJetStreamAcknowledgementPaths(t *testing.T) {
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	// The acknowledgement of each message (no fast batches).
	stream := DefaultStream
	stream.AllowBatchPublish = false
	s, err := NewJetStream(ctx, nc, JetStreamConfig{Stream: stream, Manage: true, MaxInFlight: 8,
		AckTimeout: 200 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	tpl, err := ParseTemplate("fake.{family}.{host}")
	if err != nil {
		t.Fatal(err)
	}
	s.enc = newEncoder(EncoderConfig{Subject: tpl, LossSubject: tpl})

	// reply answers every publish on fake.> with what mode says.
	var mode atomic.Value
	var seen atomic.Int64
	sub, err := nc.Subscribe("fake.>", func(m *nats.Msg) {
		seen.Add(1)
		switch mode.Load().(string) {
		case "silent":
		case "foreign":
			_ = m.Respond([]byte(`{"ok":true}`))
		case "error":
			_ = m.Respond([]byte(`{"error": {"code":503,"err_code":10077,"description":"insufficient resources"}}`))
		case "duplicate":
			_ = m.Respond([]byte(`{"stream":"FAKE","seq":12,"duplicate": true}`))
		case "ack":
			_ = m.Respond([]byte(`{"stream":"FAKE","seq":12}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	batch := func() *Batch {
		b := &Batch{Events: make([]event.Event, 20)}
		for i := range b.Events {
			b.Events[i] = event.Event{Host: "h", BootID: "b", Family: "F", Group: "G", Seq: uint64(i + 1), SeqSource: event.SeqKernel}
		}
		return b
	}
	deliverFails := func(want string) {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		b := batch()
		err := s.Deliver(dctx, b)
		var de *DeliveryError
		if !errors.As(err, &de) || len(de.UndeliveredEvents) != len(b.Events) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Deliver = %v, want all %d events undelivered and %q", err, len(b.Events), want)
		}
	}

	mode.Store("silent")
	before := s.Stats().Retries
	deliverFails(errAckTimeout.Error())
	if s.Stats().Retries == before {
		t.Fatal("no republishing round after the ack timeout")
	}

	// A reply that is not a PubAck proves nothing was stored.
	mode.Store("foreign")
	before = s.Stats().Foreign
	deliverFails(errAckTimeout.Error())
	if s.Stats().Foreign == before {
		t.Fatal("foreign replies not counted")
	}

	mode.Store("error")
	deliverFails("insufficient resources")

	mode.Store("duplicate")
	st0 := s.Stats()
	if err := s.Deliver(ctx, batch()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Acked-st0.Acked != 20 || st.Duplicates-st0.Duplicates != 20 {
		t.Fatalf("stats %+v after 20 duplicate acknowledgements (before %+v)", st, st0)
	}

	mode.Store("ack")
	st0 = s.Stats()
	if err := s.Deliver(ctx, batch()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Acked-st0.Acked != 20 || st.Duplicates != st0.Duplicates {
		t.Fatalf("stats %+v after 20 acknowledgements (before %+v)", st, st0)
	}

	// A message the server can never take does not hold back the others,
	// and is given up on at once: exactly that one is named.
	b := batch()
	b.Events[5].Msg = strings.Repeat("x", int(nc.MaxPayload())+1)
	st0 = s.Stats()
	err = s.Deliver(ctx, b)
	var de *DeliveryError
	if !errors.As(err, &de) || len(de.UndeliveredEvents) != 1 || de.UndeliveredEvents[0] != 5 || !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("Deliver = %v, want only event 5 undelivered, for its size", err)
	}
	if st := s.Stats(); st.Acked-st0.Acked != 19 {
		t.Fatalf("stats %+v: want the other 19 acknowledged (before %+v)", st, st0)
	}

	// Nobody listens: the server answers "no responders" at once.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deliverFails(errNoResponders.Error())
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Fatalf("gave up after %v, before the context ended", took)
	}
	if seen.Load() == 0 {
		t.Fatal("the subscriber saw nothing")
	}
}
