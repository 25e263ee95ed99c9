package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go/jetstream"
)

// genlbridge audit on a real stream: complete as the sink stored it; then
// with messages deleted, an event stored twice and a forged loss record
// claiming delivered events, each is reported and the exit status is 1.
func TestAuditStream(t *testing.T) {
	t.Setenv("GENLBRIDGE_SUBJECT", "")
	t.Setenv("GENLBRIDGE_LOSS_SUBJECT", "")
	ctx := context.Background()
	srv, nc := jstest.Start(t)
	url := srv.URL()
	js, err := sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Manage: true, Logger: jstest.Logger(), CloudEvents: true,
		Stream: sink.StreamConfig{Name: "A", Subjects: []string{"genl.>"}, DuplicateWindow: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	h1 := replayEvents("h1", "EX", 1, 100)
	gap := event.Loss{Host: "h1", BootID: "boot-h1", Family: "EX", Group: "G", Reason: event.ReasonSeqGap, Count: 10, FirstSeq: 101, LastSeq: 110,
		Instance: 1, TimeNS: time.Now().UnixNano()}
	h1b := replayEvents("h1", "EX", 111, 90)
	h2 := replayEvents("h2", "netdev", 1, 50)
	for i := range h2 {
		h2[i].SeqSource, h2[i].Instance = event.SeqBridge, 77
	}
	for _, b := range []*sink.Batch{{Events: h1}, {Losses: []event.Loss{gap}, Events: h1b}, {Events: h2}} {
		if err := js.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := mainErr(append([]string{"audit", "--server", url, "--stream", "A"}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	code, out := run()
	t.Logf("as stored:\n%s", out)
	if code != 0 || !strings.Contains(out, "complete: every number") || !strings.Contains(out, "seq_gap 10") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	// Damage: delete the messages of h1's events 30..32, store event 50
	// again (another message id) and forge a loss record of 60..65.
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := jsc.Stream(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := jsc.OrderedConsumer(ctx, "A", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(st.CachedInfo().State.Msgs), jetstream.FetchMaxWait(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for m := range batch.Messages() {
		var v event.Envelope
		if err := json.Unmarshal(m.Data(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Host == "h1" && v.Type == "event" && v.Seq >= 30 && v.Seq <= 32 {
			md, _ := m.Metadata()
			if err := st.DeleteMsg(ctx, md.Sequence.Stream); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
	}
	if deleted != 3 {
		t.Fatalf("deleted %d messages, want 3", deleted)
	}
	dup := h1[49]
	if _, err := jsc.Publish(ctx, "genl.EX.G.h1", event.AppendJSON(nil, &dup), jetstream.WithMsgID("another-id")); err != nil {
		t.Fatal(err)
	}
	forged := event.Loss{Host: "h1", BootID: "boot-h1", Family: "EX", Group: "G", Reason: event.ReasonOverrun, Count: 6, FirstSeq: 60, LastSeq: 65,
		Instance: 1, TimeNS: time.Now().UnixNano()}
	if _, err := jsc.Publish(ctx, "genl.EX.G.h1.loss", event.AppendLossJSON(nil, &forged)); err != nil {
		t.Fatal(err)
	}
	code, out = run()
	t.Logf("damaged:\n%s", out)
	for _, want := range []string{"HOLE seq 30..32 (3)", "DUPLICATE seq 50..50", "DOUBLE COUNT a overrun loss record of seq 60..65", "NOT COMPLETE: 3 missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	// The same as JSON; a host filter leaves h1 out, and h2 is complete.
	code, out = run("--json")
	var rep struct {
		Complete       bool
		UncoveredHoles uint64
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndexByte(out, '}')+1]), &rep); err != nil || rep.Complete || rep.UncoveredHoles != 3 || code != 1 {
		t.Errorf("--json: exit %d %+v %v:\n%s", code, rep, err, out)
	}
	if code, out = run("--host", "h2"); code != 0 || !strings.Contains(out, "50 events") {
		t.Errorf("--host h2: exit %d:\n%s", code, out)
	}
}
