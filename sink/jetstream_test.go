package sink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/natsconn"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func quietLogger() *slog.Logger { return jstest.Logger() }

func startJetStream(t testing.TB) (*broker.Server, *nats.Conn) { return jstest.Start(t) }

func testEvents(host string, first uint64, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		seq := first + uint64(i)
		evs[i] = event.Event{Host: host, BootID: "boot-1", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Cmd: 1, Version: 1,
			Seq: seq, SeqSource: event.SeqKernel, Instance: 7, RecvNS: time.Now().UnixNano(), Format: event.FormatExmpl,
			Msg: fmt.Sprintf("event %d", seq)}
	}
	return evs
}

// readStream returns every record stored in the stream, in order.
func readStream(t testing.TB, nc *nats.Conn, stream string) (evs []event.Event, losses []event.Loss, msgs int) {
	r := jstest.ReadStream(t, nc, stream)
	return r.Events, r.Losses, r.Msgs
}

func newJS(t testing.TB, nc *nats.Conn, cfg sink.JetStreamConfig) *sink.JetStream {
	t.Helper()
	cfg.Logger = quietLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := sink.NewJetStream(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJetStreamDeliverAndDedupe(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			_, nc := startJetStream(t)
			s := newJS(t, nc, sink.JetStreamConfig{Batched: batched, Stream: sink.DefaultStream, Manage: true, MaxInFlight: 16})
			ctx := context.Background()
			b := &sink.Batch{Events: testEvents("h1", 1, 100),
				Losses: []event.Loss{{Host: "h1", BootID: "boot-1", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonOverrun, Count: 2, FirstSeq: 101, LastSeq: 102, TimeNS: 5}}}
			if err := s.Deliver(ctx, b); err != nil {
				t.Fatal(err)
			}
			// The same batch again (a republish after a lost ack): stored once.
			if err := s.Deliver(ctx, b); err != nil {
				t.Fatal(err)
			}
			b2 := &sink.Batch{Events: testEvents("h1", 103, 50)}
			if err := s.Deliver(ctx, b2); err != nil {
				t.Fatal(err)
			}
			evs, losses, msgs := readStream(t, nc, "GENL")
			if len(evs) != 150 || len(losses) != 1 {
				t.Fatalf("stream holds %d events, %d losses; want 150, 1", len(evs), len(losses))
			}
			for i, e := range evs {
				want := uint64(i + 1)
				if i >= 100 {
					want += 2
				}
				if e.Seq != want {
					t.Fatalf("event %d has seq %d, want %d", i, e.Seq, want)
				}
			}
			st := s.Stats()
			if !s.BatchPublishing() {
				t.Fatal("the default stream allows fast batches, and the sink does not publish them")
			}
			// A fast batch's acknowledgement does not say which messages
			// were duplicates; the stream stored each record once.
			if st.Acked != st.Published || st.Published < uint64(msgs) {
				t.Fatalf("stats %+v with %d messages stored", st, msgs)
			}
			if !batched && msgs != 151 {
				t.Fatalf("%d messages, want one per record", msgs)
			}
			last, ok, err := s.LastEvent(ctx, "CONTROL_EXMPL", "EXMPL_GRP", "h1")
			if err != nil || !ok || last.Seq != 152 {
				t.Fatalf("last event %+v %v %v, want seq 152", last, ok, err)
			}
			if boot, inst, seq, ok := s.Resume("h1", "CONTROL_EXMPL", "EXMPL_GRP"); !ok || boot != "boot-1" || inst != 7 || seq != 152 {
				t.Fatalf("resume %q %d %d %v", boot, inst, seq, ok)
			}
			if _, _, _, ok := s.Resume("h2", "CONTROL_EXMPL", "EXMPL_GRP"); ok {
				t.Fatal("resume for a host with nothing stored")
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestJetStreamGivesUpWithExactlyTheUnacked(t *testing.T) {
	srv, nc := startJetStream(t)
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, AckTimeout: 200 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err := s.Deliver(context.Background(), &sink.Batch{Events: testEvents("h", 1, 10)}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b := &sink.Batch{Events: testEvents("h", 11, 20), Losses: []event.Loss{{Host: "h", Reason: event.ReasonSeqGap, Count: 1}}}
	err := s.Deliver(ctx, b)
	var de *sink.DeliveryError
	if !errors.As(err, &de) || len(de.UndeliveredEvents) != 20 || len(de.UndeliveredLosses) != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deliver = %v, want every record named and the deadline", err)
	}
	if st := s.Stats(); st.Retries == 0 {
		t.Fatalf("no retry: %+v", st)
	}
}

func TestJetStreamProvisioning(t *testing.T) {
	_, nc := startJetStream(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	// Missing: created as configured.
	want := sink.StreamConfig{Name: "EVENTS", Subjects: []string{"genl.>"}, MaxAge: time.Hour, MaxBytes: 64 << 20, MaxMsgs: 100000,
		Storage: "file", Replicas: 1, DuplicateWindow: time.Minute}
	newJS(t, nc, sink.JetStreamConfig{Stream: want, Manage: true})
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	got := st.CachedInfo().Config
	if got.MaxAge != time.Hour || got.MaxBytes != 64<<20 || got.MaxMsgs != 100000 || got.Duplicates != time.Minute ||
		got.Storage != jetstream.FileStorage || strings.Join(got.Subjects, ",") != "genl.>" {
		t.Fatalf("created %+v", got)
	}
	// The same configuration again: accepted.
	newJS(t, nc, sink.JetStreamConfig{Stream: want, Manage: true})

	// A conflicting stream: every difference named, nothing changed.
	other := want
	other.Subjects = []string{"genl.>", "other.>"}
	other.MaxAge = 2 * time.Hour
	other.MaxMsgs = 0
	other.Storage = "memory"
	other.DuplicateWindow = 90 * time.Second
	_, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: other, Manage: true, Logger: quietLogger()})
	if err == nil {
		t.Fatal("conflicting stream accepted")
	}
	for _, field := range []string{"stream EVENTS", "subjects: stream has genl.>, configured genl.>,other.>", "max_age: stream has 1h0m0s, configured 2h0m0s",
		"max_msgs: stream has 100000, configured -1", "storage: stream has File, configured Memory", "duplicate_window: stream has 1m0s, configured 1m30s", "left unchanged"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not say %q: %v", field, err)
		}
	}
	if strings.Contains(err.Error(), "max_bytes") || strings.Contains(err.Error(), "replicas") {
		t.Errorf("error names fields that agree: %v", err)
	}
	st, _ = js.Stream(ctx, "EVENTS")
	if after := st.CachedInfo().Config; after.MaxAge != got.MaxAge || after.MaxMsgs != got.MaxMsgs || after.Storage != got.Storage ||
		after.Duplicates != got.Duplicates || len(after.Subjects) != 1 {
		t.Fatalf("stream changed: %+v", after)
	}

	// Not managed: the limits are the account's business; existence and
	// subjects are checked.
	newJS(t, nc, sink.JetStreamConfig{Stream: other, Manage: false})
	missing := want
	missing.Name = "NOPE"
	_, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: missing, Manage: false, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing unmanaged stream: %v", err)
	}
	if _, err := js.Stream(ctx, "NOPE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("unmanaged stream created: %v", err)
	}
	// Subjects that do not capture the templates.
	bad := want
	bad.Name, bad.Subjects = "BAD", []string{"genl.*.*.*"}
	_, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: bad, Manage: true, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "do not capture subject template genl.{family}.{group}.{host}.loss") {
		t.Fatalf("subjects missing the loss subject: %v", err)
	}
	// A duplicate window shorter than one retry span.
	short := want
	short.Name, short.Subjects, short.DuplicateWindow = "SHORT", []string{"genl.>"}, 3*time.Second
	_, err = sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Stream: short, Manage: true, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "duplicate window 3s is shorter than the retry span 7s") {
		t.Fatalf("short duplicate window: %v", err)
	}
}

// A publish the server refuses for permissions gets no acknowledgement:
// the sink, told by natsconn.Denials, gives up on it at once with
// ErrPermissionDenied (no republishing forever), while the messages it may
// publish are stored.
func TestJetStreamPermissionDenied(t *testing.T) {
	port := natstest.FreePort(t)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "node-a", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"genl.*.*.node-a", "$JS.API.>"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}}}},
			{Username: "admin", Password: "pw"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	admin, err := nats.Connect(fmt.Sprintf("nats://admin:pw@127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	if _, err := ajs.CreateStream(context.Background(), jetstream.StreamConfig{Name: "GENL", Subjects: []string{"genl.>"}}); err != nil {
		t.Fatal(err)
	}
	denials := natsconn.NewDenials(quiet())
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: fmt.Sprintf("nats://node-a:pw@127.0.0.1:%d", port), Logger: quiet(), Denials: denials})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := sink.NewJetStream(context.Background(), nc, sink.JetStreamConfig{Stream: sink.StreamConfig{Name: "GENL"}, AckTimeout: time.Minute, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	denials.OnPublish(js.Denied)
	b := sampleBatch(4)
	b.Events[1].Host, b.Events[3].Host = "node-b", "node-b"
	for i := range b.Events {
		if b.Events[i].Host != "node-b" {
			b.Events[i].Host = "node-a"
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = js.Deliver(ctx, b) // without the denial, it would republish until ctx ends
	var de *sink.DeliveryError
	if !errors.As(err, &de) || !errors.Is(err, sink.ErrPermissionDenied) || len(de.UndeliveredEvents) != 2 ||
		de.UndeliveredEvents[0] != 1 || de.UndeliveredEvents[1] != 3 {
		t.Fatalf("Deliver: %v (%+v)", err, de)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("gave up after %v: waited for the ack timeout", took)
	}
	if got := jstest.StreamMsgs(t, admin, "GENL"); got != 2 {
		t.Errorf("%d messages stored, want node-a's 2", got)
	}
	if p, _ := denials.Counts(); p < 2 {
		t.Errorf("%d denials counted", p)
	}
	_ = js.Close(context.Background())
}
