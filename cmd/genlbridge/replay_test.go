package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/syncbuf"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
)

func replayEvents(host, family string, first, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		// Boot ids are per machine: they keep the hosts' message ids apart.
		evs[i] = event.Event{Host: host, BootID: "boot-" + host, Family: family, Group: "G", Seq: uint64(first + i), SeqSource: event.SeqKernel,
			Instance: 1, RecvNS: time.Now().UnixNano(), Format: event.FormatExmpl, Msg: "m"}
	}
	return evs
}

// key names a record as "host/family/seq" (events) or "host/family/loss".
func key(line string, t *testing.T) string {
	var v event.Envelope
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("not JSON: %q", line)
	}
	if v.Type == "loss" {
		return v.Host + "/" + v.Family + "/loss"
	}
	return fmt.Sprintf("%s/%s/%d", v.Host, v.Family, v.Seq)
}

func keys(host, family string, first, last int) []string {
	var out []string
	for s := first; s <= last; s++ {
		out = append(out, fmt.Sprintf("%s/%s/%d", host, family, s))
	}
	return out
}

func TestReplay(t *testing.T) {
	t.Setenv("GENLBRIDGE_SUBJECT", "")
	t.Setenv("GENLBRIDGE_LOSS_SUBJECT", "")
	ctx := context.Background()
	srv, nc := jstest.Start(t)
	// The batched mode (on a server of its own): replay reads every line of
	// a message.
	for _, batched := range []bool{false, true} {
		srv, nc := srv, nc
		if batched {
			srv, nc = jstest.Start(t)
		}
		stream := fmt.Sprintf("R%v", batched)
		js, err := sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Batched: batched, Manage: true, Logger: jstest.Logger(),
			Stream: sink.StreamConfig{Name: stream, Subjects: []string{"genl.>"}, DuplicateWindow: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		loss := event.Loss{Host: "h1", BootID: "boot-h1", Family: "EX", Group: "G", Reason: event.ReasonSeqGap, Count: 1, FirstSeq: 9, LastSeq: 9, TimeNS: 1}
		b1 := &sink.Batch{Losses: []event.Loss{loss}, Events: append(replayEvents("h1", "EX", 1, 5), replayEvents("h.2", "EX", 1, 3)...)}
		if err := js.Deliver(ctx, b1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		t0 := time.Now()
		time.Sleep(30 * time.Millisecond)
		b2 := &sink.Batch{Events: append(replayEvents("h1", "EX", 6, 5), replayEvents("h.2", "netdev", 1, 2)...)}
		if err := js.Deliver(ctx, b2); err != nil {
			t.Fatal(err)
		}
		all := append(append(append(append([]string{"h1/EX/loss"}, keys("h1", "EX", 1, 5)...), keys("h.2", "EX", 1, 3)...),
			keys("h1", "EX", 6, 10)...), keys("h.2", "netdev", 1, 2)...)
		// Stream sequence 10 is the first message of the second batch
		// (9 messages before it, or 3 when batched: loss, h1, h.2).
		seq2 := "10"
		if batched {
			seq2 = "4"
		}
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"all", nil, all},
			{"since", []string{"--since", t0.UTC().Format(time.RFC3339Nano)}, all[9:]},
			{"ago", []string{"--ago", "1h"}, all},
			{"seq", []string{"--seq", seq2}, all[9:]},
			{"host", []string{"--host", "h1"}, append(append([]string{"h1/EX/loss"}, keys("h1", "EX", 1, 5)...), keys("h1", "EX", 6, 10)...)},
			{"host without losses", []string{"--host", "h1", "--no-losses"}, append(keys("h1", "EX", 1, 5), keys("h1", "EX", 6, 10)...)},
			{"host with a dot", []string{"--host", "h.2", "--family", "EX", "--group", "G"}, keys("h.2", "EX", 1, 3)},
			{"family", []string{"--family", "netdev"}, keys("h.2", "netdev", 1, 2)},
			{"since and filter", []string{"--since", t0.UTC().Format(time.RFC3339Nano), "--host", "h.2"}, keys("h.2", "netdev", 1, 2)},
			{"nothing", []string{"--host", "nobody"}, nil},
		} {
			t.Run(fmt.Sprintf("%s/batched=%v", tc.name, batched), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				args := append([]string{"replay", "--server", srv.URL(), "--stream", stream, "--json"}, tc.args...)
				if code := mainErr(args, &stdout, &stderr); code != 0 {
					t.Fatalf("exit %d: %s", code, stderr.String())
				}
				var got []string
				for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
					if line != "" {
						got = append(got, key(line, t))
					}
				}
				if strings.Join(got, " ") != strings.Join(tc.want, " ") {
					t.Fatalf("replay %v\n got %v\nwant %v", tc.args, got, tc.want)
				}
				if stderr.Len() != 0 {
					t.Fatalf("stderr not quiet off a terminal: %q", stderr.String())
				}
			})
		}
	}

	t.Run("readable lines", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := mainErr([]string{"replay", "--server", srv.URL(), "--stream", "Rfalse", "--host", "h1", "--seq", "1"}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != 11 || !strings.Contains(lines[0], "LOSS h1 EX/G seq_gap count=1 seq=9-9") || !strings.Contains(lines[1], "h1 EX/G cmd=0 seq=1") {
			t.Fatalf("output:\n%s", stdout.String())
		}
	})

	t.Run("republish", func(t *testing.T) {
		sub, err := nc.SubscribeSync("replayed.h2")
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		var stdout, stderr bytes.Buffer
		if code := mainErr([]string{"replay", "--server", srv.URL(), "--stream", "Rfalse", "--host", "h.2", "--republish", "replayed.h2"}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if stdout.Len() != 0 || !strings.Contains(stderr.String(), "republished 5 messages to replayed.h2") {
			t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
		}
		var got []string
		for range 5 {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, key(string(m.Data), t)+"@"+m.Header.Get("Genlbridge-Stream-Seq"))
		}
		if want := "h.2/EX/1@7 h.2/EX/2@8 h.2/EX/3@9 h.2/netdev/1@15 h.2/netdev/2@16"; strings.Join(got, " ") != want {
			t.Fatalf("republished %v, want %s", got, want)
		}
	})

	t.Run("follow", func(t *testing.T) {
		events, losses, _ := templatesFromEnv()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdout syncbuf.Buffer
		o := &replayOptions{stream: "Rfalse", events: events, losses: losses, host: "h3", follow: true, raw: true}
		done := make(chan error, 1)
		go func() { _, err := replay(ctx, nc, o, &stdout, &stdout); done <- err }()
		js, err := sink.NewJetStream(ctx, nc, sink.JetStreamConfig{Manage: true, Logger: jstest.Logger(),
			Stream: sink.StreamConfig{Name: "Rfalse", Subjects: []string{"genl.>"}, DuplicateWindow: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		if err := js.Deliver(ctx, &sink.Batch{Events: replayEvents("h3", "EX", 1, 3)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(stdout.String(), "\n") < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("followed %q", stdout.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("follow ended by itself")
		}
	})

	t.Run("progress bar", func(t *testing.T) {
		var buf bytes.Buffer
		p := newProgress(&buf, true, 200, time.Nanosecond)
		p.set(50)
		p.done()
		if !strings.Contains(buf.String(), "\rreplay [#######.......................] 50/200 messages (25%)") || !strings.HasSuffix(buf.String(), "\n") {
			t.Fatalf("%q", buf.String())
		}
	})
}
