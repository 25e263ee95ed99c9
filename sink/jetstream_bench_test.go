package sink_test

// Throughput into a JetStream stream on an embedded server with a file store
// in a temp dir, one event per message or many:
//
//	go test -run '^$' -bench JetStream -benchtime 200000x ./sink
//
// Every benchmark reports events/s and msgs/s. "Sink" runs go through
// sink.JetStream.Deliver (batches of N events, all acknowledged before the
// next); "Bare" is a loop of PublishAsync with only a Nats-Msg-Id, the
// ceiling of one message per event; "Atomic" and "Fast" are nats-server
// 2.14+'s batch publishing (jetstreamext.PublishMsgBatch on a stream with
// AllowAtomicPublish; jetstreamext.FastPublisher on one with
// AllowBatchPublish), one message per event, a batch committed per N.

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

func report(b *testing.B, events, msgs int) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/s, "events/s")
	b.ReportMetric(float64(msgs)/s, "msgs/s")
	b.ReportMetric(0, "ns/op")
}

func benchEvents(n int) []event.Event {
	evs := testEvents("bench-host", 1, n)
	for i := range evs {
		evs[i].Msg = fmt.Sprintf("Hello from kernel at jiffies %d", 4294967296+i)
		evs[i].Jiffies, evs[i].KernelNS = 4294967296+uint64(i), time.Now().UnixNano()
	}
	return evs
}

func BenchmarkJetStreamSink(b *testing.B) {
	for _, batched := range []bool{false, true} {
		for _, n := range []int{64, 256, 1024, 4096} {
			mode := "event"
			if batched {
				mode = "batch"
			}
			b.Run(fmt.Sprintf("%s/N=%d", mode, n), func(b *testing.B) {
				_, nc := jstest.Start(b)
				s := newJS(b, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, Batched: batched, MaxInFlight: 4096})
				batch := &sink.Batch{Events: benchEvents(n)}
				ctx := context.Background()
				seq := uint64(0)
				b.ResetTimer()
				for done := 0; done < b.N; done += n {
					for i := range batch.Events {
						seq++
						batch.Events[i].Seq = seq
					}
					if err := s.Deliver(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				events := (b.N + n - 1) / n * n
				report(b, events, int(s.Stats().Published))
			})
		}
	}
}

// encoded returns n events as JSON with their message ids.
func encoded(n int) (data [][]byte, ids []string) {
	evs := benchEvents(n)
	for i := range evs {
		data = append(data, event.AppendJSON(nil, &evs[i]))
		ids = append(ids, string(sink.MsgID(nil, &evs[i])))
	}
	return data, ids
}

func BenchmarkJetStreamBarePublishAsync(b *testing.B) {
	_, nc := jstest.Start(b)
	newJS(b, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true})
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	data, _ := encoded(1024)
	subject := sink.DefaultStream.Subjects[0][:5] + "CONTROL_EXMPL.EXMPL_GRP.bench-host"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("b.%d", i)
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data[i%len(data)], Header: nats.Header{"Nats-Msg-Id": []string{id}}}); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not arrive")
	}
	b.StopTimer()
	report(b, b.N, b.N)
}

// batchStream makes a stream that allows atomic or fast batch publishing.
func batchStream(b *testing.B, nc *nats.Conn, atomic bool) jetstream.JetStream {
	js, _ := jetstream.New(nc)
	cfg := jetstream.StreamConfig{Name: "GENL", Subjects: []string{"genl.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}
	if atomic {
		cfg.AllowAtomicPublish = true
	} else {
		cfg.AllowBatchPublish = true
	}
	if _, err := js.CreateStream(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	return js
}

func BenchmarkJetStreamAtomicBatch(b *testing.B) {
	for _, n := range []int{64, 256, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			_, nc := jstest.Start(b)
			js := batchStream(b, nc, true)
			data, _ := encoded(n)
			msgs := make([]*nats.Msg, n)
			ctx := context.Background()
			b.ResetTimer()
			k := 0
			for done := 0; done < b.N; done += n {
				for i := range msgs {
					k++
					msgs[i] = &nats.Msg{Subject: "genl.CONTROL_EXMPL.EXMPL_GRP.bench-host", Data: data[i],
						Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprintf("b.%d", k)}}}
				}
				if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			events := (b.N + n - 1) / n * n
			report(b, events, events)
		})
	}
}

func BenchmarkJetStreamFastBatch(b *testing.B) {
	for _, n := range []int{64, 256, 1024, 4096} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			_, nc := jstest.Start(b)
			js := batchStream(b, nc, false)
			data, _ := encoded(n)
			ctx := context.Background()
			b.ResetTimer()
			k := 0
			for done := 0; done < b.N; done += n {
				fp, err := jetstreamext.NewFastPublisher(js)
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n-1; i++ {
					k++
					m := &nats.Msg{Subject: "genl.CONTROL_EXMPL.EXMPL_GRP.bench-host", Data: data[i],
						Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprintf("b.%d", k)}}}
					if _, err := fp.AddMsg(m); err != nil {
						b.Fatal(err)
					}
				}
				k++
				m := &nats.Msg{Subject: "genl.CONTROL_EXMPL.EXMPL_GRP.bench-host", Data: data[n-1],
					Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprintf("b.%d", k)}}}
				if _, err := fp.CommitMsg(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			events := (b.N + n - 1) / n * n
			report(b, events, events)
		})
	}
}

// BenchmarkJetStreamSinkVsBare runs, side by side in one benchmark, the
// JetStream sink as the bridge drives it (Submit of batches of 256 events,
// one message per event, not waiting between batches) and the bare
// PublishMsgAsync loop, each b.N events into its own server, and reports
// both rates and their ratio (the target: sink/bare >= 0.9).
func BenchmarkJetStreamSinkVsBare(b *testing.B) {
	const n = 256
	var sinkSecs, bareSecs float64
	{
		_, nc := jstest.Start(b)
		s := newJS(b, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, MaxInFlight: 4096})
		batch := &sink.Batch{Events: benchEvents(n)}
		ctx := context.Background()
		errs := make(chan error, 1)
		seq := uint64(0)
		start := time.Now()
		for done := 0; done < b.N; done += n {
			for i := range batch.Events {
				seq++
				batch.Events[i].Seq = seq
			}
			s.Submit(ctx, batch, func(_ *sink.Batch, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		sinkSecs = time.Since(start).Seconds()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	}
	{
		_, nc := jstest.Start(b)
		newJS(b, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true})
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		data, _ := encoded(n)
		subject := sink.DefaultStream.Subjects[0][:5] + "CONTROL_EXMPL.EXMPL_GRP.bench-host"
		total := (b.N + n - 1) / n * n
		start := time.Now()
		for i := 0; i < total; i++ {
			m := &nats.Msg{Subject: subject, Data: data[i%n], Header: nats.Header{"Nats-Msg-Id": []string{"b." + strconv.Itoa(i)}}}
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("acks did not arrive")
		}
		bareSecs = time.Since(start).Seconds()
	}
	events := float64((b.N + n - 1) / n * n)
	b.ReportMetric(events/sinkSecs, "sink-events/s")
	b.ReportMetric(events/bareSecs, "bare-events/s")
	b.ReportMetric(bareSecs/sinkSecs, "sink/bare")
	b.ReportMetric(0, "ns/op")
}
