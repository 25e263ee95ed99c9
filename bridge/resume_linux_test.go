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
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/sink"
)

// A bridge stopped and started again reads where the last run stopped from
// the stream: what the module sent in between is one seq_gap loss record
// with its exact range, and the sequence keeps its instance.
func TestRestartReportsTheGapFromTheStream(t *testing.T) {
	ns := netnstest.Need(t)
	_, nc := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })

	// run starts a bridge, sends first..first+n-1 and stops it once they
	// and the loss records it expects are delivered.
	run := func(bootID string, first uint64, n int, losses uint64) {
		t.Helper()
		b, err := bridge.New(bridge.Config{
			Subscriptions:         []bridge.Subscription{{Family: "netdev", Group: "mgmt", Decoder: bridge.DecodeExmpl}},
			NetNS:                 ns.FD(),
			Host:                  "node-r",
			BootID:                bootID,
			AllowUserspaceSenders: true,
			Resume:                js.Resume,
			Logger:                testLogger(t),
		}, js)
		if err != nil {
			t.Fatal(err)
		}
		stop := runBridge(t, b)
		if err := snd.SendExmpl(first, n); err != nil {
			t.Fatal(err)
		}
		natstest.WaitFor(t, 10*time.Second, "events and loss records delivered", func() bool {
			st := b.Stats()
			return st.Delivered == uint64(n) && st.LossRecords == losses
		})
		stop()
	}

	run("boot-A", 1, 100, 0)
	// Nobody listens: 101..150 are missed.
	if err := snd.SendExmpl(101, 50); err != nil {
		t.Fatal(err)
	}
	run("boot-A", 151, 50, 1)
	// The module was reloaded meanwhile: its sequence starts over, no gap.
	run("boot-A", 1, 10, 0)
	// Another boot: the stored sequence says nothing about this one.
	run("boot-B", 500, 10, 0)

	recs := jstest.ReadStream(t, nc, "GENL")
	if len(recs.Losses) != 1 {
		t.Fatalf("loss records %+v, want one", recs.Losses)
	}
	l := recs.Losses[0]
	if l.Reason != event.ReasonSeqGap || l.Count != 50 || l.FirstSeq != 101 || l.LastSeq != 150 || l.BootID != "boot-A" || l.Host != "node-r" {
		t.Fatalf("loss record %+v, want seq_gap of 50, 101-150", l)
	}
	evs := recs.Events
	if len(evs) != 170 {
		t.Fatalf("%d events stored, want 170", len(evs))
	}
	if evs[0].Seq != 1 || evs[99].Seq != 100 || evs[100].Seq != 151 || evs[149].Seq != 200 || evs[150].Seq != 1 || evs[160].Seq != 500 {
		t.Fatalf("sequences %d %d %d %d %d %d", evs[0].Seq, evs[99].Seq, evs[100].Seq, evs[149].Seq, evs[150].Seq, evs[160].Seq)
	}
	if evs[100].Instance != evs[0].Instance {
		t.Fatalf("instance %d after the restart, want the stored %d kept", evs[100].Instance, evs[0].Instance)
	}
	if evs[150].Instance == evs[0].Instance || evs[160].Instance == evs[150].Instance {
		t.Fatalf("instances %d, %d, %d: want new ones after the reload and the reboot", evs[0].Instance, evs[150].Instance, evs[160].Instance)
	}
}
