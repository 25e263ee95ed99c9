//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// measureJSBare publishes n pre-encoded events to a JetStream stream with a
// bare PublishMsgAsync loop: the reference for the JetStream sink. Like every
// pipeline it feeds the counting subscriber, and its rate is taken the same
// way: events the subscriber received over the time from the first publish
// to the last one received (and all acknowledged).
func measureJSBare(o options, n int) (*point, error) {
	dir, err := os.MkdirTemp("", "genlbench-js")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := startHub(o, true, dir)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	sub, err := natstest.Count(srv.url, "genl.>", sampleEvery)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	nc, err := nats.Connect(srv.url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"genl.>"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	e := event.Event{Host: "h", BootID: "b", Family: "netdev", Group: "mgmt", Cmd: 1, Version: 1, SeqSource: event.SeqKernel,
		Instance: 1, Jiffies: 4295000000, KernelNS: time.Now().UnixNano(), Format: event.FormatExmpl, Msg: "event 1"}
	var buf []byte
	start := time.Now()
	for i := 1; i <= n; i++ {
		e.Seq = uint64(i)
		buf = event.AppendJSON(buf[:0], &e)
		m := &nats.Msg{Subject: "genl.netdev.mgmt.h", Data: append([]byte(nil), buf...), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, "b.netdev.mgmt.1."+strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	acked := time.Now()
	for {
		if d, _ := sub.Counts(); d >= uint64(n) || time.Since(acked) > 2*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	end := sub.Last()
	if end.Before(acked) {
		end = acked
	}
	secs := end.Sub(start).Seconds()
	st, err := js.Stream(ctx, "BENCH")
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	received, _ := sub.Counts()
	if info.State.Msgs != uint64(n) {
		return nil, fmt.Errorf("stream stored %d of %d", info.State.Msgs, n)
	}
	p := &point{Mode: "js-bare", Sent: uint64(n), Delivered: received, Seconds: secs, EventsPerSec: float64(received) / secs}
	p.LostActual = int64(p.Sent) - int64(p.Delivered)
	return p, nil
}
