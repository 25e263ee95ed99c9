// Package natstest holds the NATS helpers every test shares: an embedded
// nats-server, subscribers that keep (Collector) or count (Counter) the
// records genlbridge publishes, and waiting for a condition (WaitFor).
//
// A Collector or Counter is fed by the NATS client's goroutine and read by
// the test's: every method is safe for concurrent use. What a helper starts
// is stopped when the test ends.
package natstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Logger logs to stderr under go test -v, and nowhere otherwise. Call it
// from tests only (testing.Verbose needs the test flags parsed).
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// FreePort returns a loopback port nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartServer runs an embedded nats-server on 127.0.0.1:port (0: any), with
// opts applied to its options; it is shut down at the end of the test (a
// test may shut it down sooner).
func StartServer(t testing.TB, port int, opts func(*server.Options)) *broker.Server {
	t.Helper()
	srv, err := broker.Start(broker.Config{Listen: fmt.Sprintf("127.0.0.1:%d", port), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// WaitFor polls cond until it holds; it fails the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// subscribe subscribes to subject on url with no pending limit (a slow test
// must not look like a loss) and calls handle with each message. It fails
// the test at its end if the client dropped any message.
func subscribe(t testing.TB, url, subject string, handle func(*nats.Msg), opts []nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	sub, err := nc.Subscribe(subject, handle)
	if err != nil {
		nc.Close()
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	t.Cleanup(func() {
		if n, _ := sub.Dropped(); n > 0 {
			t.Errorf("the test's subscriber to %s dropped %d messages", subject, n)
		}
		nc.Close()
	})
	return nc
}

// lines calls fn with each non-empty line of a message (a batched message
// holds several records, one per line).
func lines(data []byte, fn func(line []byte)) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > 0 {
			fn(line)
		}
	}
}

// Record is one genlbridge record received: an event or a loss record (see
// Type), the subject and Nats-Msg-Id of its message, and when it arrived.
type Record struct {
	event.Envelope
	Subject, MsgID string
	At             time.Time
	// Line is the record's JSON text (its own copy).
	Line []byte
}

// Collector keeps every record and every raw message received.
type Collector struct {
	t     testing.TB
	check func(*Record) string

	mu       sync.Mutex
	msgs     []*nats.Msg
	recs     []Record
	events   int
	lost     uint64
	subjects map[string]int
	ids      map[string]int
	problems []string
}

// Collect subscribes to subject on url. check, if not nil, vets each record
// as it arrives and returns what is wrong with it ("" if nothing); the test
// fails at its end with the first problems found, and with any record that
// is not valid JSON.
func Collect(t testing.TB, url, subject string, check func(*Record) string, opts ...nats.Option) *Collector {
	t.Helper()
	c := &Collector{t: t, check: check, subjects: map[string]int{}, ids: map[string]int{}}
	subscribe(t, url, subject, c.handle, opts)
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.problems) > 0 {
			t.Errorf("%d bad records, the first ones:\n%s", len(c.problems), strings.Join(c.problems[:min(10, len(c.problems))], "\n"))
		}
	})
	return c
}

func (c *Collector) handle(m *nats.Msg) {
	now := time.Now()
	id := m.Header.Get("Nats-Msg-Id")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	c.subjects[m.Subject]++
	c.ids[id]++
	lines(m.Data, func(line []byte) {
		r := Record{Subject: m.Subject, MsgID: id, At: now, Line: bytes.Clone(line)}
		if err := json.Unmarshal(line, &r.Envelope); err != nil {
			c.problems = append(c.problems, fmt.Sprintf("%s %q: decode: %v", m.Subject, line, err))
			return
		}
		switch r.Type {
		case "event":
			c.events++
		case "loss":
			c.lost += r.Count
		default:
			c.problems = append(c.problems, fmt.Sprintf("%s %q: type %q", m.Subject, line, r.Type))
		}
		if c.check != nil {
			if p := c.check(&r); p != "" {
				c.problems = append(c.problems, fmt.Sprintf("%s %q: %s", m.Subject, line, p))
			}
		}
		c.recs = append(c.recs, r)
	})
}

// Snapshot returns the events and the loss records received so far, in order.
func (c *Collector) Snapshot() ([]event.Event, []event.Loss) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var evs []event.Event
	var losses []event.Loss
	for i := range c.recs {
		if c.recs[i].Type == "loss" {
			losses = append(losses, c.recs[i].Loss())
		} else {
			evs = append(evs, c.recs[i].Event)
		}
	}
	return evs, losses
}

// Since returns the records from index i on, and the index after them.
func (c *Collector) Since(i int) ([]Record, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs[i:]), len(c.recs)
}

// Totals returns the events received and the events the loss records count.
func (c *Collector) Totals() (events int, lost uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events, c.lost
}

// Accounted is the events received plus those the loss records count.
func (c *Collector) Accounted() uint64 {
	n, lost := c.Totals()
	return uint64(n) + lost
}

// Messages returns the raw messages received so far.
func (c *Collector) Messages() []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// WaitMessages waits until n messages have arrived and returns them.
func (c *Collector) WaitMessages(n int, timeout time.Duration) []*nats.Msg {
	c.t.Helper()
	WaitFor(c.t, timeout, fmt.Sprintf("%d messages", n), func() bool { return len(c.Messages()) >= n })
	return c.Messages()
}

// Subjects counts the messages received per subject.
func (c *Collector) Subjects() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.subjects)
}

// MsgIDs counts the messages received per Nats-Msg-Id.
func (c *Collector) MsgIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ids)
}

// WaitEvents waits up to timeout until n event records that keep accepts
// (nil: all) have arrived after index from, and returns them (fewer on
// timeout).
func (c *Collector) WaitEvents(from, n int, timeout time.Duration, keep func(*Record) bool) []Record {
	deadline := time.Now().Add(timeout)
	for {
		recs, _ := c.Since(from)
		var evs []Record
		for i := range recs {
			if recs[i].Type == "event" && (keep == nil || keep(&recs[i])) {
				evs = append(evs, recs[i])
			}
		}
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Counter counts events and the losses loss records report, without
// decoding events, and samples the latency from an event's kernel_time to its
// arrival: the subscriber at the end of a benchmarked pipeline.
type Counter struct {
	nc     *nats.Conn
	sample int // one latency sample per sample events

	mu   sync.Mutex
	n    uint64
	lost uint64
	lat  []float64 // µs
	at   time.Time
}

// Count subscribes to subject on url, keeping one latency sample per
// sample events (at most a million). Close ends it.
func Count(url, subject string, sample int) (*Counter, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	c := &Counter{nc: nc, sample: max(sample, 1), lat: make([]float64, 0, 1<<20)}
	sub, err := nc.Subscribe(subject, c.handle)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nc.Flush()
}

var (
	kernelKey = []byte(`"kernel_time":"`)
	lossType  = []byte(`"type":"loss"`)
)

func (c *Counter) handle(m *nats.Msg) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = now
	lines(m.Data, func(line []byte) {
		if i := bytes.Index(line, lossType); i >= 0 && i < 16 { // {"v":2,"type":"loss"
			var l event.Loss
			if json.Unmarshal(line, &l) == nil {
				c.lost += l.Count
			}
			return
		}
		c.n++
		if c.n%uint64(c.sample) != 0 || len(c.lat) == cap(c.lat) {
			return
		}
		if i := bytes.Index(line, kernelKey); i >= 0 {
			rest := line[i+len(kernelKey):]
			if j := bytes.IndexByte(rest, '"'); j > 0 {
				if k, err := event.ParseTime(string(rest[:j])); err == nil {
					c.lat = append(c.lat, float64(now.UnixNano()-k)/1e3)
				}
			}
		}
	})
}

// Counts returns the events received and the losses reported.
func (c *Counter) Counts() (events, lost uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.lost
}

// Last is when the last message arrived.
func (c *Counter) Last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// Latencies returns the latency samples, in µs.
func (c *Counter) Latencies() []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lat)
}

// Close unsubscribes and closes the connection.
func (c *Counter) Close() { c.nc.Close() }
