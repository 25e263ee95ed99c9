//go:build linux

package bridge

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/sink"
)

// runInternal runs a bridge on netdev/mgmt in a fresh namespace with a
// recording sink, and returns it with a sender into the group.
func runInternal(t *testing.T, cfg Config, rec *recorder) (*Bridge, *inject.Sender) {
	t.Helper()
	ns := netnstest.Need(t)
	if cfg.Subscriptions == nil {
		cfg.Subscriptions = []Subscription{{Family: "netdev", Group: "mgmt", Decoder: DecodeExmpl}}
	}
	cfg.NetNS, cfg.AllowUserspaceSenders = ns.FD(), true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := New(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	natstest.WaitFor(t, 10*time.Second, "joined", func() bool { return b.Subscriptions()[0].State == StateJoined })
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	return b, snd
}

func (r *recorder) lossList() []event.Loss {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Loss(nil), r.losses...)
}

// A malformed message in a sequenced family is one loss: the gap that the
// next event shows is not counted again.
func TestMalformedIsNotCountedTwice(t *testing.T) {
	rec := &recorder{}
	b, snd := runInternal(t, Config{}, rec)
	send := func(msg []byte) {
		if err := snd.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	send(inject.AppendExmpl(nil, snd.FamilyID(), 1, "one"))
	bad := inject.AppendExmpl(nil, snd.FamilyID(), 2, "two")
	binary.NativeEndian.PutUint16(bad[20:22], 400) // first attribute's length past the end
	send(bad)
	send(inject.AppendExmpl(nil, snd.FamilyID(), 3, "three"))
	natstest.WaitFor(t, 10*time.Second, "two events", func() bool { return b.Stats().Delivered == 2 })
	natstest.WaitFor(t, 10*time.Second, "the loss record", func() bool { return len(rec.lossList()) == 1 })
	st := b.Stats()
	if st.Lost[event.ReasonMalformed] != 1 || st.Lost[event.ReasonSeqGap] != 0 || st.Lost[event.ReasonOverrun] != 0 {
		t.Fatalf("lost %v: want exactly one malformed", st.Lost)
	}
}

// After a marker (a re-join), a family without a sequence still gets its
// drops published at once and without an invented range.
func TestMarkerKeepsBridgeSequencedDropsRangeless(t *testing.T) {
	rec := &recorder{}
	g := make(chan struct{})
	rec.deliver = func(*sink.Batch) error { <-g; return nil }
	b, snd := runInternal(t, Config{
		Subscriptions: []Subscription{{Family: "netdev", Group: "mgmt", Decoder: DecodeGeneric}},
		ReceiveBuffer: 64 << 10, QueueSize: 64,
	}, rec)
	if err := b.readers[0].mark(); err != nil {
		t.Fatal(err)
	}
	if err := snd.SendExmpl(1, 5000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(g)
	natstest.WaitFor(t, 10*time.Second, "all accounted", func() bool {
		st := b.Stats()
		return st.Received+st.Lost[event.ReasonOverrun] == 5000 && st.QueueDepth == 0
	})
	natstest.WaitFor(t, 10*time.Second, "loss records delivered", func() bool {
		var n uint64
		for _, l := range rec.lossList() {
			n += l.Count
		}
		return n == b.Stats().Lost[event.ReasonOverrun]
	})
	if b.Stats().Lost[event.ReasonOverrun] == 0 {
		t.Fatal("no overrun")
	}
	for _, l := range rec.lossList() {
		if l.FirstSeq != 0 || l.LastSeq != 0 || l.Reason != event.ReasonOverrun {
			t.Fatalf("loss record %+v: a family without a sequence gets no range", l)
		}
	}
}

// Stopping while the reader is blocked on a full queue, with more events in
// the socket, leaves the group and drains the socket: every event the
// kernel queued is read and, the sink being stuck past the deadline, counted
// as publish_failed. Nothing is freed uncounted with the socket.
func TestStopWhileBlockedCountsTheReadBatch(t *testing.T) {
	g := make(chan struct{})
	defer close(g)
	ns := netnstest.Need(t)
	const queueSize = 16
	b, err := New(Config{
		Subscriptions:         []Subscription{{Family: "netdev", Group: "mgmt", Decoder: DecodeExmpl}},
		NetNS:                 ns.FD(),
		AllowUserspaceSenders: true,
		QueueSize:             queueSize,
		BatchEvents:           1, // the batcher holds one event: the queue must fill
		ShutdownTimeout:       100 * time.Millisecond,
		Logger:                slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, sinkFunc(func(ctx context.Context, bt *sink.Batch) error {
		select {
		case <-g:
			return nil
		case <-ctx.Done():
			return sink.AllUndelivered(bt, ctx.Err())
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	natstest.WaitFor(t, 10*time.Second, "joined", func() bool { return b.Subscriptions()[0].State == StateJoined })
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	const n = 1000 // well within the socket's buffer: no overrun
	if err := snd.SendExmpl(1, n); err != nil {
		t.Fatal(err)
	}
	// One event in the sink, queueSize in the queue, one in the reader's
	// hands: it is blocked, with the rest of its read batch and of the socket.
	natstest.WaitFor(t, 10*time.Second, "the reader blocked", func() bool {
		st := b.Stats()
		return st.QueueDepth == queueSize && st.Received == queueSize+2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Read != n || st.Received != n || st.Delivered != 0 || st.Lost[event.ReasonPublishFailed] != n || st.SocketDrops != 0 {
		t.Fatalf("read %d, received %d, delivered %d, lost %v, socket drops %d: want all %d read and counted publish_failed",
			st.Read, st.Received, st.Delivered, st.Lost, st.SocketDrops, n)
	}
	t.Logf("stopped while blocked: read %d, publish_failed %d", st.Read, st.Lost[event.ReasonPublishFailed])
}
