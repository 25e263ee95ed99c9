//go:build linux

package sink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/sink"
)

// 100,000 events go through the real bridge into a stream while the
// nats-server process is killed with SIGKILL and started again on the same
// port and store, three times: the stream ends with every event exactly once, in order.
func TestJetStreamServerKilledMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and moves 100,000 events")
	}
	ns := netnstest.Need(t)
	srv := jstest.StartProcess(t)
	nc := jstest.Connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true,
		MaxInFlight: 1024, AckTimeout: 2 * time.Second, RetryMax: 500 * time.Millisecond, Logger: jstest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{
		Subscriptions:         []bridge.Subscription{{Family: "netdev", Group: "mgmt", Decoder: bridge.DecodeExmpl}},
		NetNS:                 ns.FD(),
		Host:                  "node-k",
		AllowUserspaceSenders: true,
		BatchEvents:           256,
		Resume:                js.Resume,
		Logger:                jstest.Logger(),
	}, js)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	wait(t, 5*time.Second, "subscription joined", func() bool { return b.Subscriptions()[0].State == bridge.StateJoined })
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()

	const total = 100000
	start := time.Now()
	// The sender stays at most 4,000 events ahead of the reader, so that
	// while the server is down the bridge's queue, not the socket, holds
	// them: no overrun, and the kill lands mid-stream.
	var sendErr atomic.Value
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for next := uint64(1); next <= total; {
			for next-1 > b.Stats().Received+4000 {
				time.Sleep(time.Millisecond)
			}
			n := min(500, total-int(next)+1)
			if err := snd.SendExmpl(next, n); err != nil {
				sendErr.Store(err)
				return
			}
			next += uint64(n)
		}
	}()
	// Three kills, each once the sink has had so many events acknowledged.
	for _, at := range []uint64{25000, 50000, 75000} {
		wait(t, 60*time.Second, "events acknowledged before the kill", func() bool { return js.Stats().Acked >= at })
		srv.Kill()
		killedAt := b.Stats().Delivered
		down := time.Now()
		time.Sleep(500 * time.Millisecond)
		srv.Start()
		t.Logf("killed the server with %d events delivered, restarted after %s", killedAt, time.Since(down).Round(time.Millisecond))
		if killedAt >= total-5000 {
			t.Fatalf("the kill landed at %d of %d events: not mid-stream", killedAt, total)
		}
	}
	<-sent
	if err, _ := sendErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	wait(t, 120*time.Second, "every event delivered", func() bool { return b.Stats().Delivered == total })
	took := time.Since(start)

	st := b.Stats()
	for reason, n := range st.Lost {
		if n != 0 {
			t.Errorf("lost %d events (%s)", n, reason)
		}
	}
	recs := jstest.ReadStream(t, nc, "GENL")
	if len(recs.Losses) != 0 {
		t.Errorf("loss records in the stream: %+v", recs.Losses)
	}
	if recs.Msgs != total || len(recs.Events) != total {
		t.Fatalf("stream holds %d messages, %d events; want exactly %d", recs.Msgs, len(recs.Events), total)
	}
	for id, n := range recs.IDs {
		if n != 1 {
			t.Fatalf("Nats-Msg-Id %q stored %d times", id, n)
		}
	}
	for i, e := range recs.Events {
		if e.Seq != uint64(i+1) || e.Host != "node-k" {
			t.Fatalf("stream position %d holds %s seq %d, want node-k seq %d", i, e.Host, e.Seq, i+1)
		}
	}
	jst := js.Stats()
	if jst.Retries == 0 || jst.Republished == 0 {
		t.Fatalf("the sink never retried: %+v", jst)
	}
	if jst.BeyondWindow != 0 {
		t.Fatalf("republished beyond the duplicate window: %+v", jst)
	}
	t.Logf("%d events in %s; sink: %d published, %d republished in %d retry rounds, %d deduplicated by the server",
		total, took.Round(time.Millisecond), jst.Published, jst.Republished, jst.Retries, jst.Duplicates)
}

func wait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
