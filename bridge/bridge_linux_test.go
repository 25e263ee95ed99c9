//go:build linux

package bridge_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
)

func testLogger(*testing.T) *slog.Logger { return natstest.Logger() }

// startNATS runs a real nats-server in the test process.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	srv := natstest.StartServer(t, 0, nil)
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: srv.URL(), Name: t.Name(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runBridge runs b until the test ends, checking that Run returns nil.
func runBridge(t *testing.T, b *bridge.Bridge) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return 20s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	natstest.WaitFor(t, 5*time.Second, "every subscription joined", func() bool {
		for _, s := range b.Subscriptions() {
			if s.State != bridge.StateJoined {
				return false
			}
		}
		return true
	})
	return stop
}

// gate is a sink that holds every delivery while it is closed. It starts closed.
type gate struct {
	sink.Sink
	mu   sync.Mutex
	open chan struct{}
}

func newGate(s sink.Sink) *gate { return &gate{Sink: s, open: make(chan struct{})} }

func (g *gate) hold() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gate) Deliver(ctx context.Context, b *sink.Batch) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return sink.AllUndelivered(b, ctx.Err())
	}
	return g.Sink.Deliver(ctx, b)
}

func TestNetdevVethEventsReachNATS(t *testing.T) {
	ns := netnstest.Need(t)
	nc := startNATS(t)
	col := natstest.Collect(t, nc.ConnectedUrl(), "genl.>", nil)
	out := sink.NewNATS(nc, sink.NATSConfig{Logger: testLogger(t)})
	b, err := bridge.New(bridge.Config{
		Subscriptions: []bridge.Subscription{{Family: "netdev", Group: "mgmt"}},
		NetNS:         ns.FD(),
		Host:          "node-7.rack.example",
		Logger:        testLogger(t),
	}, out)
	if err != nil {
		t.Fatal(err)
	}
	stop := runBridge(t, b)

	const pairs = 5
	for i := 0; i < pairs; i++ {
		if err := ns.IP("link", "add", fmt.Sprintf("va%d", i), "type", "veth", "peer", "name", fmt.Sprintf("vb%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// NETDEV_CMD_DEV_ADD_NTF (2) for both ends of every pair, each with its ifindex (attribute 1).
	const devAddNtf = 2
	ifindexes := func() map[uint32]bool {
		evs, _ := col.Snapshot()
		m := map[uint32]bool{}
		for _, e := range evs {
			if e.Cmd != devAddNtf {
				continue
			}
			for _, a := range e.Attrs {
				if a.Type == 1 && len(a.Data) == 4 {
					m[binary.NativeEndian.Uint32(a.Data)] = true
				}
			}
		}
		return m
	}
	natstest.WaitFor(t, 10*time.Second, fmt.Sprintf("dev-add notifications for %d devices", 2*pairs), func() bool { return len(ifindexes()) >= 2*pairs })
	// More notifications (e.g. DEV_CHANGE) may still be on their way: stop
	// the bridge so its counters are final, then wait for the collector.
	stop()
	st := b.Stats()
	if st.Received != st.Delivered {
		t.Fatalf("stats after stop %+v: received != delivered", st)
	}
	natstest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d delivered events at the collector", st.Delivered), func() bool {
		evs, _ := col.Snapshot()
		return uint64(len(evs)) >= st.Delivered
	})

	evs, _ := col.Snapshot()
	bootID := bridge.BootID()
	if bootID == "" {
		t.Fatal("no boot id on this machine")
	}
	seqs := map[uint64]bool{}
	for _, e := range evs {
		if e.Host != "node-7.rack.example" || e.BootID != bootID || e.Family != "netdev" || e.Group != "mgmt" ||
			e.Format != event.FormatGeneric || e.SeqSource != event.SeqBridge || e.Instance == 0 {
			t.Fatalf("event metadata: %+v", e)
		}
		if age := time.Since(time.Unix(0, e.RecvNS)); age < 0 || age > time.Minute {
			t.Fatalf("receive time %v is off (age %v)", time.Unix(0, e.RecvNS), age)
		}
		if seqs[e.Seq] {
			t.Fatalf("bridge sequence %d repeated", e.Seq)
		}
		seqs[e.Seq] = true
	}
	// The host's dots must not add subject levels.
	if subjects := col.Subjects(); subjects["genl.netdev.mgmt.node-7_rack_example"] != len(evs) {
		t.Fatalf("subjects %v, want all %d events on genl.netdev.mgmt.node-7_rack_example", subjects, len(evs))
	}
	for id, n := range col.MsgIDs() {
		if id == "" || n != 1 {
			t.Fatalf("Nats-Msg-Id %q seen %d times", id, n)
		}
	}
	if st.Delivered != uint64(len(evs)) {
		t.Fatalf("stats %+v, collector saw %d", st, len(evs))
	}
}

// injectBridge runs a bridge on netdev/mgmt in a fresh namespace, decoding
// what a userspace sender multicasts there with the module's schema.
func injectBridge(t *testing.T, cfg bridge.Config, wrap func(sink.Sink) sink.Sink) (*bridge.Bridge, *inject.Sender, *natstest.Collector, func()) {
	t.Helper()
	ns := netnstest.Need(t)
	nc := startNATS(t)
	col := natstest.Collect(t, nc.ConnectedUrl(), "genl.>", nil)
	var out sink.Sink = sink.NewNATS(nc, sink.NATSConfig{Logger: testLogger(t)})
	if wrap != nil {
		out = wrap(out)
	}
	cfg.Subscriptions = []bridge.Subscription{{Family: "netdev", Group: "mgmt", Decoder: bridge.DecodeExmpl}}
	cfg.NetNS = ns.FD()
	cfg.Logger = testLogger(t)
	b, err := bridge.New(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	stop := runBridge(t, b)
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	return b, snd, col, stop
}

// checkAccounting verifies that every sequence number 1..sent is either an
// event the subscriber received or inside exactly one loss record.
func checkAccounting(t *testing.T, col *natstest.Collector, sent uint64) (received, lost uint64) {
	t.Helper()
	evs, losses := col.Snapshot()
	seen := make([]int, sent+1)
	for _, e := range evs {
		if e.Seq < 1 || e.Seq > sent {
			t.Fatalf("event seq %d outside 1..%d", e.Seq, sent)
		}
		seen[e.Seq]++
		received++
	}
	for _, l := range losses {
		if l.FirstSeq == 0 || l.LastSeq < l.FirstSeq || l.LastSeq-l.FirstSeq+1 != l.Count {
			t.Fatalf("loss record without an exact range: %+v", l)
		}
		for s := l.FirstSeq; s <= l.LastSeq; s++ {
			seen[s]++
		}
		lost += l.Count
	}
	for s := uint64(1); s <= sent; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence %d accounted %d times (received %d, lost %d)", s, seen[s], received, lost)
		}
	}
	return received, lost
}

func TestOverrunCountedExactlyAndReadingGoesOn(t *testing.T) {
	var g *gate
	b, snd, col, _ := injectBridge(t, bridge.Config{
		AllowUserspaceSenders: true,
		ReceiveBuffer:         64 << 10, // about 80 events
		QueueSize:             64,
	}, func(s sink.Sink) sink.Sink { g = newGate(s); return g })

	// The sink holds everything, the queue fills, the reader blocks, the
	// socket buffer overflows: the kernel drops and counts.
	const burst = 20000
	if err := snd.SendExmpl(1, burst); err != nil {
		t.Fatal(err)
	}
	// Held long enough that the reader reads the drop counter while events
	// still wait in the socket: the lost ones are the newest, not those.
	time.Sleep(300 * time.Millisecond)
	g.release()
	natstest.WaitFor(t, 20*time.Second, "every injected event accounted for", func() bool {
		st := b.Stats()
		return st.Received+st.Lost[event.ReasonOverrun]+st.Lost[event.ReasonSeqGap] == burst && st.QueueDepth == 0
	})
	st := b.Stats()
	if st.Lost[event.ReasonOverrun] == 0 {
		t.Fatalf("no overrun with a 64 KiB buffer and a held sink: %+v", st)
	}
	if st.Lost[event.ReasonSeqGap] != 0 || st.SocketDrops != st.Lost[event.ReasonOverrun] {
		t.Fatalf("drops must all be overruns, counted from the kernel: %+v", st)
	}
	natstest.WaitFor(t, 10*time.Second, "the subscriber received all records", func() bool {
		return col.Accounted() == burst
	})
	received, lost := checkAccounting(t, col, burst)
	t.Logf("burst %d: received %d, overrun %d (kernel drop counter %d)", burst, received, lost, st.SocketDrops)

	// Never deaf: after several more overruns, the socket still delivers.
	next := uint64(burst + 1)
	for round := 0; round < 5; round++ {
		g.hold()
		if err := snd.SendExmpl(next, 5000); err != nil {
			t.Fatal(err)
		}
		next += 5000
		g.release()
		time.Sleep(50 * time.Millisecond)
		// A trickle after the overrun must arrive.
		if err := snd.SendExmpl(next, 10); err != nil {
			t.Fatal(err)
		}
		next += 10
		want := next - 1
		natstest.WaitFor(t, 10*time.Second, fmt.Sprintf("round %d accounted", round), func() bool {
			st := b.Stats()
			return st.Received+st.Lost[event.ReasonOverrun]+st.Lost[event.ReasonSeqGap] == want
		})
		evs, _ := col.Snapshot()
		natstest.WaitFor(t, 10*time.Second, "the trickle after the overrun delivered", func() bool {
			evs, _ = col.Snapshot()
			for _, e := range evs {
				if e.Seq == want {
					return true
				}
			}
			return false
		})
	}
	natstest.WaitFor(t, 10*time.Second, "all loss records published", func() bool {
		return col.Accounted() == next-1
	})
	checkAccounting(t, col, next-1)
}

func TestSequenceGapsAndResets(t *testing.T) {
	b, snd, col, _ := injectBridge(t, bridge.Config{AllowUserspaceSenders: true}, nil)
	send := func(seqs ...uint64) {
		for _, s := range seqs {
			if err := snd.Send(inject.AppendExmpl(nil, snd.FamilyID(), s, "x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 1..3, then 4..6 missing (the module lost them), 7; then the
	// sequence restarts (module reloaded) and 1..2 of the new one are missed.
	send(1, 2, 3, 7, 3, 4)
	natstest.WaitFor(t, 5*time.Second, "6 events", func() bool { evs, _ := col.Snapshot(); return len(evs) == 6 })
	natstest.WaitFor(t, 5*time.Second, "2 loss records", func() bool { _, l := col.Snapshot(); return len(l) == 2 })
	evs, losses := col.Snapshot()
	if losses[0].Reason != event.ReasonSeqGap || losses[0].FirstSeq != 4 || losses[0].LastSeq != 6 || losses[0].Count != 3 {
		t.Fatalf("first loss %+v, want seq_gap 4-6", losses[0])
	}
	if losses[1].Reason != event.ReasonSeqGap || losses[1].FirstSeq != 1 || losses[1].LastSeq != 2 || losses[1].Count != 2 {
		t.Fatalf("second loss %+v, want seq_gap 1-2 of the new instance", losses[1])
	}
	if evs[3].Instance != evs[0].Instance || evs[4].Instance == evs[0].Instance || evs[5].Instance != evs[4].Instance {
		t.Fatalf("instances %d %d %d %d: want a new one at the reset", evs[0].Instance, evs[3].Instance, evs[4].Instance, evs[5].Instance)
	}
	if st := b.Stats(); st.Lost[event.ReasonSeqGap] != 5 || st.Lost[event.ReasonOverrun] != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUserspaceSendersRejectedAndCounted(t *testing.T) {
	b, snd, col, _ := injectBridge(t, bridge.Config{}, nil)
	if err := snd.SendExmpl(1, 100); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, "100 rejected", func() bool { return b.Stats().Lost[event.ReasonSenderRejected] == 100 })
	time.Sleep(50 * time.Millisecond)
	if evs, _ := col.Snapshot(); len(evs) != 0 || b.Stats().Received != 0 {
		t.Fatalf("userspace messages got through: %d events", len(evs))
	}
}

func TestQueueDropPolicies(t *testing.T) {
	// The batcher takes one event and holds it in the gated sink; the queue
	// then holds QueueSize more, and every other event is dropped, however
	// fast or slow the machine: exactly 1 + QueueSize are delivered.
	const queueSize, n = 100, 2000
	for _, policy := range []string{bridge.PolicyDropNewest, bridge.PolicyDropOldest} {
		t.Run(policy, func(t *testing.T) {
			var g *gate
			b, snd, col, _ := injectBridge(t, bridge.Config{AllowUserspaceSenders: true, QueueSize: queueSize, QueuePolicy: policy, BatchEvents: 1},
				func(s sink.Sink) sink.Sink { g = newGate(s); return g })
			if err := snd.SendExmpl(1, n); err != nil {
				t.Fatal(err)
			}
			natstest.WaitFor(t, 10*time.Second, "all read", func() bool { return b.Stats().Received == n })
			if st := b.Stats(); st.QueueDepth != queueSize || st.Lost[event.ReasonQueueFull] != n-queueSize-1 {
				t.Fatalf("held: queue depth %d, queue_full %d; want %d and %d", st.QueueDepth, st.Lost[event.ReasonQueueFull], queueSize, n-queueSize-1)
			}
			g.release()
			natstest.WaitFor(t, 10*time.Second, "all accounted at the subscriber", func() bool {
				return col.Accounted() == n
			})
			// The subscriber can see a batch before Deliver returns and the
			// bridge counts it delivered.
			natstest.WaitFor(t, 5*time.Second, "the delivered counter", func() bool {
				return b.Stats().Delivered == queueSize+1
			})
			st := b.Stats()
			if st.Lost[event.ReasonQueueFull] != n-queueSize-1 || st.Lost[event.ReasonOverrun] != 0 {
				t.Fatalf("stats %+v", st)
			}
			checkAccounting(t, col, n)
			evs, losses := col.Snapshot()
			for _, l := range losses {
				if l.Instance != evs[0].Instance {
					t.Fatalf("loss record %+v: want the events' instance %d", l, evs[0].Instance)
				}
			}
			delivered := map[uint64]bool{}
			for _, e := range evs {
				delivered[e.Seq] = true
			}
			switch policy {
			case bridge.PolicyDropOldest:
				// The queue ends with the newest events.
				for s := uint64(n - queueSize + 1); s <= n; s++ {
					if !delivered[s] {
						t.Fatalf("drop-oldest dropped %d, one of the newest %d", s, queueSize)
					}
				}
			case bridge.PolicyDropNewest:
				if delivered[n] {
					t.Fatalf("drop-newest delivered the newest event; want it dropped")
				}
			}
		})
	}
}
