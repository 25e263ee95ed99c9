package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
)

// dropProxy forwards a client's connection to a NATS server, but swallows
// the first drop HPUB frames whose subject starts with prefix: those
// messages never reach the server, as when a server drops them in a
// leader election, while the ones after them are stored.
type dropProxy struct {
	l      net.Listener
	target string
	prefix string
	mu     sync.Mutex
	pass   int // HPUBs on prefix to let through before dropping
	drop   int
}

func newDropProxy(t *testing.T, target, prefix string, drop int) *dropProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{l: l, target: strings.TrimPrefix(target, "nats://"), prefix: prefix, drop: drop}
	t.Cleanup(func() { l.Close() })
	go p.serve()
	return p
}

func (p *dropProxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *dropProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go func() { io.Copy(c, s); c.Close() }()
		go func() { p.forward(s, c); s.Close() }()
	}
}

// forward copies client frames to the server, line by line, dropping the
// chosen HPUBs with their payload.
func (p *dropProxy) forward(dst io.Writer, src io.Reader) {
	r := bufio.NewReaderSize(src, 64<<10)
	w := bufio.NewWriterSize(dst, 64<<10)
	defer w.Flush()
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var payload []byte
		skip := false
		if f := bytes.Fields(line); len(f) >= 4 && string(f[0]) == "HPUB" {
			total, _ := strconv.Atoi(string(f[len(f)-1]))
			payload = make([]byte, total+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			if bytes.HasPrefix(f[1], []byte(p.prefix)) {
				p.mu.Lock()
				switch {
				case p.pass > 0:
					p.pass--
				case p.drop > 0:
					p.drop--
					skip = true
				}
				p.mu.Unlock()
			}
		}
		if !skip {
			w.Write(line)
			w.Write(payload)
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// A republished event can be stored after later ones: the first five
// messages of a batch are lost on the way, the other five stored, and the
// five go again in the next round. The stream then ends with seq 5; the
// previous run stopped at 10, and Resume must say 10, or a restart would
// report 6..10, which are stored, as a gap.
func TestResumeFindsTheHighestAfterARepublish(t *testing.T) {
	srv, direct := jstest.Start(t)
	proxy := newDropProxy(t, srv.URL(), "genl.", 5)
	nc, err := nats.Connect(proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// One acknowledgement a message: a fast batch that loses its first
	// messages is refused whole, and published again in order.
	stream := sink.DefaultStream
	stream.AllowBatchPublish = false
	s := newJS(t, nc, sink.JetStreamConfig{Stream: stream, Manage: true,
		AckTimeout: 200 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err := s.Deliver(context.Background(), &sink.Batch{Events: testEvents("h1", 1, 10)}); err != nil {
		t.Fatal(err)
	}
	evs, _, _ := readStream(t, direct, "GENL")
	order := make([]uint64, len(evs))
	for i, e := range evs {
		order[i] = e.Seq
	}
	if len(evs) != 10 || evs[len(evs)-1].Seq != 5 {
		t.Fatalf("stored order %v: want all 10, the republished 1..5 last", order)
	}
	last, _, err := s.LastEvent(context.Background(), "CONTROL_EXMPL", "EXMPL_GRP", "h1")
	if err != nil || last.Seq != 5 {
		t.Fatalf("last stored event %d, %v", last.Seq, err)
	}
	boot, inst, seq, ok := s.Resume("h1", "CONTROL_EXMPL", "EXMPL_GRP")
	if !ok || boot != "boot-1" || inst != 7 || seq != 10 {
		t.Fatalf("resume %q %d %d %v: want boot-1, 7, the highest seq 10 (stored order %v)", boot, inst, seq, ok, order)
	}
	t.Logf("stored order %v; resume at %d", order, seq)
}

// Resume looks past other hosts' events on a shared stream to find enough
// of its own, and only at the instance of the last one.
func TestResumeOnASharedStream(t *testing.T) {
	_, nc := jstest.Start(t)
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, ResumeWindow: 8})
	ctx := context.Background()
	// h1: instance 7 up to 20, then stored out of order; h2 in between.
	mine := testEvents("h1", 1, 20)
	mine[19], mine[15] = mine[15], mine[19] // ..., 20, 17, 18, 19, 16
	for i := 0; i < 20; i++ {
		if err := s.Deliver(ctx, &sink.Batch{Events: mine[i : i+1]}); err != nil {
			t.Fatal(err)
		}
		if err := s.Deliver(ctx, &sink.Batch{Events: testEvents("h2", uint64(1000+10*i), 10)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, seq, ok := s.Resume("h1", "CONTROL_EXMPL", "EXMPL_GRP"); !ok || seq != 20 {
		t.Fatalf("resume h1 at %d %v, want 20", seq, ok)
	}
	// A new instance's events after it: only they count.
	next := testEvents("h1", 1, 3)
	for i := range next {
		next[i].Instance = 8
	}
	if err := s.Deliver(ctx, &sink.Batch{Events: next}); err != nil {
		t.Fatal(err)
	}
	if _, inst, seq, ok := s.Resume("h1", "CONTROL_EXMPL", "EXMPL_GRP"); !ok || inst != 8 || seq != 3 {
		t.Fatalf("resume h1 at instance %d seq %d %v, want 8, 3", inst, seq, ok)
	}
}

// A fast batch that loses messages in the middle (a proxy drops two of
// them) is ended by the server at the gap; the window publishes the rest
// again, from the first message it has no acknowledgement of, in a new
// batch: every record stored once, in order.
func TestJetStreamFastBatchGap(t *testing.T) {
	srv, direct := jstest.Start(t)
	proxy := newDropProxy(t, srv.URL(), "genl.", 2)
	proxy.pass = 3
	nc, err := nats.Connect(proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true,
		AckTimeout: 500 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if !s.BatchPublishing() {
		t.Fatal("no fast batches")
	}
	if err := s.Deliver(context.Background(), &sink.Batch{Events: testEvents("h1", 1, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), &sink.Batch{Events: testEvents("h1", 11, 300)}); err != nil {
		t.Fatal(err)
	}
	evs, _, msgs := readStream(t, direct, "GENL")
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	st := s.Stats()
	if len(evs) != 310 || msgs != 310 || st.Republished == 0 || st.Acked != 310 || st.Published != 310+st.Republished {
		t.Fatalf("%d events in %d messages, stats %+v: want 310 once each, some published again", len(evs), msgs, st)
	}
}
