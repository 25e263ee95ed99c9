package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func quiet() *slog.Logger { return natstest.Logger() }

func TestToken(t *testing.T) {
	for in, want := range map[string]string{
		"node-1":          "node-1",
		"a.b.c":           "a_b_c",
		"wild*card>":      "wild_card_",
		"with space\ttab": "with_space_tab",
		"":                "_",
		"ctl\x00\x7f":     "ctl__",
		"ünïcode":         "ünïcode",
	} {
		if got := sink.Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTemplate(t *testing.T) {
	tpl, err := sink.ParseTemplate(sink.DefaultSubject)
	if err != nil {
		t.Fatal(err)
	}
	if got := tpl.Subject("CONTROL_EXMPL", "EXMPL_GRP", "node.example.com", ""); got != "genl.CONTROL_EXMPL.EXMPL_GRP.node_example_com" {
		t.Fatalf("subject %q", got)
	}
	if got := tpl.Subject("fam", "g>", "*", ""); got != "genl.fam.g_._" {
		t.Fatalf("subject %q", got)
	}
	if got := tpl.Filter("CONTROL_EXMPL", "", "node.example.com", ""); got != "genl.CONTROL_EXMPL.*.node_example_com" {
		t.Fatalf("filter %q", got)
	}
	// {op}: the message's name, or the command number without one.
	byOp, err := sink.ParseTemplate("genl.{family}.{group}.{host}.{op}")
	if err != nil || !byOp.HasOp() || tpl.HasOp() {
		t.Fatalf("{op} template: %v, HasOp %v %v", err, byOp.HasOp(), tpl.HasOp())
	}
	created, exmplEv := event.Event{Op: "created", Cmd: 1}, event.Event{Cmd: 1}
	if got := byOp.Subject("mptcp_pm", "mptcp_pm_events", "n1", sink.OpToken(&created)); got != "genl.mptcp_pm.mptcp_pm_events.n1.created" {
		t.Fatalf("subject %q", got)
	}
	if got := byOp.Subject("CONTROL_EXMPL", "EXMPL_GRP", "n1", sink.OpToken(&exmplEv)); got != "genl.CONTROL_EXMPL.EXMPL_GRP.n1.1" {
		t.Fatalf("subject %q", got)
	}
	if got := byOp.Filter("mptcp_pm", "", "", "created"); got != "genl.mptcp_pm.*.*.created" {
		t.Fatalf("filter %q", got)
	}
	for _, bad := range []string{"", "genl.>", "genl.*.{host}", "genl..{host}", "genl.{nope}", "genl.{host", "genl. x"} {
		if _, err := sink.ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
}

func sampleBatch(n int) *sink.Batch {
	b := &sink.Batch{}
	for i := 1; i <= n; i++ {
		b.Events = append(b.Events, event.Event{Host: "h.one", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP",
			Cmd: 1, Version: 1, Seq: uint64(i), SeqSource: event.SeqKernel, Instance: 7, RecvNS: int64(i), Format: event.FormatExmpl,
			Msg: fmt.Sprintf("event %d %s", i, strings.Repeat("x", 100))})
	}
	return b
}

// serverAndSubscriber starts a server with a subscriber on genl.> and
// connects to it the way the bridge does; all end with the test.
func serverAndSubscriber(t *testing.T) (*natstest.Collector, *nats.Conn) {
	t.Helper()
	srv := natstest.StartServer(t, 0, nil)
	sub := natstest.Collect(t, srv.URL(), "genl.>", nil)
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: srv.URL(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return sub, nc
}

func TestNATSPerEventMessages(t *testing.T) {
	sub, nc := serverAndSubscriber(t)
	s := sink.NewNATS(nc, sink.NATSConfig{Logger: quiet()})
	b := sampleBatch(3)
	b.Losses = []event.Loss{{Host: "h.one", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonOverrun, Count: 2, FirstSeq: 4, LastSeq: 5, TimeNS: 9}}
	if err := s.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	msgs := sub.WaitMessages(4, 10*time.Second)
	// The loss record goes first, on its own subject.
	if msgs[0].Subject != "genl.CONTROL_EXMPL.EXMPL_GRP.h_one.loss" {
		t.Fatalf("loss subject %q", msgs[0].Subject)
	}
	var l event.Envelope
	if err := json.Unmarshal(msgs[0].Data, &l); err != nil || l.Type != "loss" || l.Loss() != b.Losses[0] {
		t.Fatalf("loss record %s: %v", msgs[0].Data, err)
	}
	ids := map[string]bool{}
	for i, m := range msgs[1:] {
		if m.Subject != "genl.CONTROL_EXMPL.EXMPL_GRP.h_one" {
			t.Fatalf("event subject %q", m.Subject)
		}
		var e event.Envelope
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Event.Seq != uint64(i+1) || e.Event.Msg != b.Events[i].Msg {
			t.Fatalf("event %d: %s (%v)", i, m.Data, err)
		}
		id := m.Header.Get("Nats-Msg-Id")
		if want := string(sink.MsgID(nil, &b.Events[i])); id != want || ids[id] {
			t.Fatalf("Nats-Msg-Id %q, want unique %q", id, want)
		}
		ids[id] = true
	}
}

// An event too big for the server is named undelivered at once, without
// retrying, and the rest of its batch is published.
func TestNATSOversizedEventGivenUpAlone(t *testing.T) {
	sub, nc := serverAndSubscriber(t)
	for _, batched := range []bool{false, true} {
		s := sink.NewNATS(nc, sink.NATSConfig{Batched: batched, Logger: quiet()})
		b := sampleBatch(3)
		b.Events[1].Msg = strings.Repeat("x", int(nc.MaxPayload())+1)
		err := s.Deliver(context.Background(), b)
		var de *sink.DeliveryError
		if !errors.As(err, &de) || len(de.UndeliveredEvents) != 1 || de.UndeliveredEvents[0] != 1 || !errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("batched=%v: Deliver = %v, want event 1 named, for its size", batched, err)
		}
		if _, retries := s.Published(); retries != 0 {
			t.Fatalf("batched=%v: %d retries of a message that can never go", batched, retries)
		}
	}
	// Per event: events 0 and 2; batched: [0] and [2] (the big one splits the run).
	msgs := sub.WaitMessages(4, 10*time.Second)
	time.Sleep(50 * time.Millisecond)
	if msgs = sub.WaitMessages(4, 10*time.Second); len(msgs) != 4 {
		t.Fatalf("%d messages, want 4", len(msgs))
	}
	for _, m := range msgs {
		if len(m.Data) > 4096 {
			t.Fatalf("the oversized event got through: %d bytes", len(m.Data))
		}
	}
}

func TestNATSBatchedMessagesSplitBelowMaxPayload(t *testing.T) {
	srv := natstest.StartServer(t, 0, func(o *server.Options) { o.MaxPayload = 8 << 10 })
	defer srv.Shutdown()
	sub := natstest.Collect(t, srv.URL(), "genl.>", nil)
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: srv.URL(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := sink.NewNATS(nc, sink.NATSConfig{Batched: true, Logger: quiet()})
	b := sampleBatch(200) // ~70 KB of JSON
	if err := s.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	msgs, _ := s.Published()
	if msgs < 9 || msgs > 20 {
		t.Fatalf("%d messages for 200 events under an 8 KiB limit", msgs)
	}
	got := sub.WaitMessages(int(msgs), 10*time.Second)
	var seqs []uint64
	for _, m := range got {
		if len(m.Data) > 8<<10 {
			t.Fatalf("message of %d bytes over the limit", len(m.Data))
		}
		for _, line := range bytes.Split(bytes.TrimSpace(m.Data), []byte("\n")) {
			var e event.Envelope
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Event.Seq)
		}
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seq %d at position %d", s, i)
		}
	}
	if len(seqs) != 200 {
		t.Fatalf("%d events", len(seqs))
	}
}

func TestNATSSurvivesBrokerOutage(t *testing.T) {
	port := natstest.FreePort(t)
	srv := natstest.StartServer(t, port, nil)
	url := srv.URL()
	sub := natstest.Collect(t, url, "genl.>", nil)
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: url, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := sink.NewNATS(nc, sink.NATSConfig{Logger: quiet(), RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, FlushTimeout: 200 * time.Millisecond})
	if err := s.Deliver(context.Background(), sampleBatch(5)); err != nil {
		t.Fatal(err)
	}
	sub.WaitMessages(5, 10*time.Second)

	// The broker goes away: Deliver keeps the batch and retries instead of dropping it.
	srv.Shutdown()
	done := make(chan error, 1)
	go func() { done <- s.Deliver(context.Background(), sampleBatch(10)) }()
	select {
	case err := <-done:
		t.Fatalf("Deliver returned %v while the broker was down", err)
	case <-time.After(500 * time.Millisecond):
	}
	srv2 := natstest.StartServer(t, port, nil)
	defer srv2.Shutdown()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Deliver did not finish after the broker came back")
	}
	if _, retries := s.Published(); retries == 0 {
		t.Fatal("no retry counted")
	}
	// Delivered means the server took them: it counted at least the ten
	// (a subscriber could still miss them while it reconnects: core NATS).
	vz, err := srv2.Server().Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	if vz.InMsgs < 10 {
		t.Fatalf("the restarted server received %d messages, want the batch of 10", vz.InMsgs)
	}

	// Given up only when the caller's deadline passes, and then every record is named.
	srv2.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	b := sampleBatch(4)
	b.Losses = make([]event.Loss, 1)
	err = s.Deliver(ctx, b)
	var de *sink.DeliveryError
	if !errors.As(err, &de) || len(de.UndeliveredEvents) != 4 || len(de.UndeliveredLosses) != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a DeliveryError naming 4 events and 1 loss record", err)
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := sink.NewWriter(&buf)
	b := sampleBatch(2)
	b.Losses = []event.Loss{{Family: "f", Group: "g", Reason: event.ReasonQueueFull, Count: 1}}
	if err := w.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"type":"loss"`) || !strings.Contains(lines[2], `"seq":2`) {
		t.Fatalf("output:\n%s", buf.String())
	}
}

func BenchmarkNATSPerEvent(b *testing.B) { benchNATS(b, false) }
func BenchmarkNATSBatched(b *testing.B)  { benchNATS(b, true) }

func benchNATS(b *testing.B, batched bool) {
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: srv.URL(), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	s := sink.NewNATS(nc, sink.NATSConfig{Batched: batched, Logger: quiet()})
	batch := sampleBatch(64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Deliver(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "events/s")
}
