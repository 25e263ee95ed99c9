//go:build linux

package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/sink"
)

// shutdownBridge runs a bridge whose sink holds deliveries, queues n events,
// then ends Run's context and returns how long Run took to return.
func shutdownBridge(t *testing.T, n int, timeout time.Duration, releaseAfter time.Duration) (*bridge.Bridge, *natstest.Collector, time.Duration) {
	ns := netnstest.Need(t)
	nc := startNATS(t)
	col := natstest.Collect(t, nc.ConnectedUrl(), "genl.>", nil)
	g := newGate(sink.NewNATS(nc, sink.NATSConfig{Logger: testLogger(t)}))
	b, err := bridge.New(bridge.Config{
		Subscriptions:         []bridge.Subscription{{Family: "netdev", Group: "mgmt", Decoder: bridge.DecodeExmpl}},
		NetNS:                 ns.FD(),
		AllowUserspaceSenders: true,
		ShutdownTimeout:       timeout,
		Logger:                testLogger(t),
	}, g)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	natstest.WaitFor(t, 5*time.Second, "joined", func() bool { return b.Subscriptions()[0].State == bridge.StateJoined })
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	if err := snd.SendExmpl(1, n); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, "all read", func() bool { return b.Stats().Received == uint64(n) })
	start := time.Now()
	cancel() // SIGTERM
	if releaseAfter >= 0 {
		time.AfterFunc(releaseAfter, g.release)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatal("Run did not return after the shutdown deadline")
	}
	return b, col, time.Since(start)
}

func TestShutdownDeliversQueuedEvents(t *testing.T) {
	const n = 3000
	b, col, took := shutdownBridge(t, n, 10*time.Second, 200*time.Millisecond)
	st := b.Stats()
	if st.Delivered != n || st.Lost[event.ReasonPublishFailed] != 0 {
		t.Fatalf("stats after shutdown %+v", st)
	}
	natstest.WaitFor(t, 5*time.Second, "subscriber has all", func() bool { evs, _ := col.Snapshot(); return len(evs) == n })
	checkAccounting(t, col, n)
	t.Logf("delivered %d queued events in %v after the stop", n, took)
}

func TestShutdownDeadlineCountsUndelivered(t *testing.T) {
	const n = 3000
	b, _, took := shutdownBridge(t, n, 500*time.Millisecond, -1) // the sink never recovers
	st := b.Stats()
	if st.Delivered != 0 || st.Lost[event.ReasonPublishFailed] != n {
		t.Fatalf("stats %+v: want all %d counted as publish_failed", st, n)
	}
	if took < 500*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Run returned %v after the stop, want about the 500ms deadline", took)
	}
}
