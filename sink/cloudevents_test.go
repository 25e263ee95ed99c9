package sink_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/cetest"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
)

// ceBatch has a record of each kind: a YNL event, an exmpl event with a
// kernel time, a generic event, a loss record; the host needs escaping.
func ceBatch() *sink.Batch {
	base := event.Event{Host: "node 1.example", BootID: "630f1920-7243-4465-bfcf-0cef91172f87", Version: 1, Instance: 1795000000123456,
		RecvNS: 1795000000123999999}
	ynl, ex, gen := base, base, base
	ynl.Family, ynl.Group, ynl.Cmd, ynl.Seq, ynl.SeqSource, ynl.Format, ynl.Op = "netdev", "mgmt", 1, 3, event.SeqBridge, event.FormatYNL, "dev-add-ntf"
	ynl.Fields = []byte(`{"ifindex":3,"big":"18446744073709551615"}`)
	ex.Family, ex.Group, ex.Cmd, ex.Seq, ex.SeqSource, ex.Format, ex.Msg = "CONTROL_EXMPL", "EXMPL_GRP", 1, 42, event.SeqKernel, event.FormatExmpl, "hi"
	ex.KernelNS, ex.Jiffies = 1795000000123456789, 4295123456
	gen.Family, gen.Group, gen.Cmd, gen.Seq, gen.SeqSource, gen.Format = "thermal", "event", 7, 1, event.SeqBridge, event.FormatGeneric
	gen.Attrs = []event.Attr{{Type: 1, Data: []byte{1, 0, 0, 0}}}
	loss := event.Loss{Host: base.Host, BootID: base.BootID, Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonSeqGap,
		Count: 5, FirstSeq: 37, LastSeq: 41, Instance: base.Instance, TimeNS: 1795000000200000001}
	return &sink.Batch{Events: []event.Event{ynl, ex, gen}, Losses: []event.Loss{loss}}
}

// Every message of one record reads, with the CloudEvents Go SDK as a
// foreign consumer does, as a valid CloudEvent: ce-id the Nats-Msg-Id,
// ce-source naming host and subscription, ce-type family and op, ce-time
// the kernel's time (else the receive time, a loss record's time) to the
// nanosecond, data the JSON body. Batched messages are no one event: no
// ce- header; with CloudEvents off, none either.
func TestCloudEventsHeaders(t *testing.T) {
	_, nc := jstest.Start(t)
	for _, c := range []struct {
		name        string
		batched, ce bool
	}{{"per event", false, true}, {"batched", true, true}, {"off", false, false}} {
		t.Run(c.name, func(t *testing.T) {
			sub, err := nc.SubscribeSync("genl.>")
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			s := sink.NewNATS(nc, sink.NATSConfig{Batched: c.batched, CloudEvents: c.ce, Logger: quiet()})
			b := ceBatch()
			if err := s.Deliver(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			// One loss record, three events (batched: three subjects, so
			// three messages of one event each, without ce- headers).
			for i := 0; i < 4; i++ {
				m, err := sub.NextMsg(10 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				isBatch := c.batched && !strings.HasSuffix(m.Subject, ".loss")
				checkCloudEvent(t, m, b, c.ce && !isBatch)
			}
		})
	}
}

func checkCloudEvent(t *testing.T, m *nats.Msg, b *sink.Batch, want bool) {
	t.Helper()
	if !want {
		for k := range m.Header {
			if strings.HasPrefix(strings.ToLower(k), "ce-") {
				t.Errorf("%s: header %s on a message that is no CloudEvent", m.Subject, k)
			}
		}
		if m.Header.Get(nats.MsgIdHdr) == "" {
			t.Errorf("%s: no Nats-Msg-Id", m.Subject)
		}
		return
	}
	e, err := cetest.Event(m)
	if err != nil {
		t.Fatalf("%s: not a valid CloudEvent: %v (headers %v)", m.Subject, err, m.Header)
	}
	var env event.Envelope
	if err := env.UnmarshalJSON(e.Data()); err != nil {
		t.Fatalf("%s: data %q: %v", m.Subject, e.Data(), err)
	}
	if string(e.Data()) != string(m.Data) || e.DataContentType() != "application/json" || e.SpecVersion() != "1.0" {
		t.Errorf("%s: data %q type %q version %q", m.Subject, e.Data(), e.DataContentType(), e.SpecVersion())
	}
	if id := m.Header.Get(nats.MsgIdHdr); e.ID() != id || id == "" {
		t.Errorf("%s: ce-id %q, Nats-Msg-Id %q", m.Subject, e.ID(), id)
	}
	if want := "genlbridge:/node%201.example/" + env.Family + "/" + env.Group; e.Source() != want {
		t.Errorf("%s: ce-source %q, want %q", m.Subject, e.Source(), want)
	}
	wantType, wantTime := sink.CELossType, env.TimeNS
	if env.Type == "event" {
		op := env.Op
		if op == "" {
			op = "cmd" + strconv.Itoa(int(env.Cmd))
		}
		wantType, wantTime = sink.CETypePrefix+env.Family+"."+op, env.KernelNS
		if wantTime == 0 {
			wantTime = env.RecvNS
		}
	}
	if e.Type() != wantType || e.Time().UnixNano() != wantTime {
		t.Errorf("%s: ce-type %q time %v (%d), want %q %d", m.Subject, e.Type(), e.Time(), e.Time().UnixNano(), wantType, wantTime)
	}
}

// BenchmarkEncodeCloudEvents encodes the same batch of 64 events, one
// message each, without and with the ce- headers, in turns, and reports
// both costs per event, their ratio and the allocations (target: none per
// event either way), from one run.
func BenchmarkEncodeCloudEvents(b *testing.B) {
	tpl, _ := sink.ParseTemplate(sink.DefaultSubject)
	loss, _ := sink.ParseTemplate(sink.DefaultLossSubject)
	plain := sink.NewEncoder(sink.EncoderConfig{Subject: tpl, LossSubject: loss})
	ce := sink.NewEncoder(sink.EncoderConfig{Subject: tpl, LossSubject: loss, CloudEvents: true})
	batch := sampleBatch(64)
	for i := range batch.Events {
		batch.Events[i].Format, batch.Events[i].Op = event.FormatYNL, "dev-add-ntf"
		batch.Events[i].Fields = []byte(`{"ifindex":3,"xdp-features":["basic","redirect","ndo-xmit"],"xdp-zc-max-segs":1}`)
	}
	plain.Encode(batch, 1<<20) // warm the buffers and the subject caches
	ce.Encode(batch, 1<<20)
	var plainT, ceT time.Duration
	var hdrPlain, hdrCE int
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		m := plain.Encode(batch, 1<<20)
		t1 := time.Now()
		hdrPlain = len(m[0].Hdr)
		m = ce.Encode(batch, 1<<20)
		t2 := time.Now()
		hdrCE = len(m[0].Hdr)
		plainT += t1.Sub(t0)
		ceT += t2.Sub(t1)
	}
	n := float64(b.N * len(batch.Events))
	b.ReportMetric(float64(plainT.Nanoseconds())/n, "plain-ns/event")
	b.ReportMetric(float64(ceT.Nanoseconds())/n, "ce-ns/event")
	b.ReportMetric(float64(ceT)/float64(plainT), "ce/plain")
	b.ReportMetric(float64(hdrPlain), "plain-hdr-bytes")
	b.ReportMetric(float64(hdrCE), "ce-hdr-bytes")
}
