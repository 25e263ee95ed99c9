package sink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/internal/opt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamConfig configures the JetStream sink.
type JetStreamConfig struct {
	// Subject, LossSubject and Batched are as for the core NATS sink; the
	// stream's subjects must cover the subjects they make.
	Subject, LossSubject Template
	Batched              bool
	// CloudEvents adds the CloudEvents binary-mode headers to every
	// message of one record (header.go).
	CloudEvents bool
	Stream      StreamConfig
	// Manage lets the sink create the stream when it is missing. Off, the
	// sink never creates or changes a stream (locked-down accounts): it only
	// checks that the stream exists and covers its subjects, and publishes
	// without checking when the account may not even look at it.
	Manage bool
	// MaxInFlight bounds the messages published and not yet acknowledged.
	MaxInFlight int
	// AckTimeout is how long the sink waits without any acknowledgement
	// before every message still in flight counts as failed and is
	// published again. While acknowledgements keep coming, the server is
	// working through the messages in order and the wait goes on.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between rounds of republishing.
	RetryMin, RetryMax time.Duration
	// ResumeWindow is how many of the last stored events of a
	// subscription Resume reads to find the highest sequence number (see
	// Resume); default 1024. It must cover the largest batch the bridge
	// delivers, which is how far a republished event can land behind later
	// ones.
	ResumeWindow int
	Logger       *slog.Logger
}

func (c *JetStreamConfig) defaults() {
	publishDefaults(&c.Subject, &c.LossSubject, &c.RetryMin, &c.RetryMax, &c.Logger)
	opt.Default(&c.Stream.Name, DefaultStream.Name)
	if len(c.Stream.Subjects) == 0 {
		c.Stream.Subjects = DefaultStream.Subjects
	}
	opt.Default(&c.Stream.Storage, DefaultStream.Storage)
	opt.Default(&c.Stream.Replicas, 1)
	opt.Default(&c.Stream.DuplicateWindow, DefaultStream.DuplicateWindow)
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	opt.Default(&c.AckTimeout, 5*time.Second)
	if c.ResumeWindow <= 0 {
		c.ResumeWindow = 1024
	}
}

// RetrySpan is how long a message waits between being published and being
// published again, once the acknowledgements before it have come: an
// acknowledgement timeout and the longest backoff.
// A stream's duplicate window must be at least this long for any republish
// to be deduplicated; each further span of outage the window covers is one
// more round of republishing that cannot store a record twice.
func (c *JetStreamConfig) RetrySpan() time.Duration { return c.AckTimeout + c.RetryMax }

// JetStream publishes into a JetStream stream asynchronously, through a
// window of at most MaxInFlight messages unacknowledged that spans batches:
// Submit returns once the batch is copied and queued, and its done function
// is called, in submission order, once the server has acknowledged every
// message of it (or they were given up on). A message whose
// acknowledgement fails (an error reply, no stream listening, the
// connection dropping, or no acknowledgement at all for AckTimeout) is
// published again after a backoff, with those after it, until it is
// acknowledged or the sink gives up (Flush's deadline, the connection
// closed for good); the server drops the repeats it had stored already,
// within the stream's duplicate window. Every message carries the
// Nats-Msg-Id of its records.
//
// Submit and Deliver are called by one goroutine at a time; done functions
// run on the sink's goroutines and must not block. Close stops them.
type JetStream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream // nil when the account may not look at it
	batch  bool             // publishing fast batches (the stream allows them)
	cfg    JetStreamConfig
	log    *slog.Logger
	enc    encoder
	win    *window

	mu   sync.Mutex
	free []*pendingBatch

	resumeMu sync.Mutex // one read-back at a time

	closed atomic.Bool // Close may run while a Submit waits for room
}

// pendingBatch is a submitted batch: copies of its records, its encoded
// messages, and whom to tell when it is done.
type pendingBatch struct {
	batch Batch
	enc   encoded
	out   []outMsg
	done  func(*Batch, error)
}

// JetStreamStats counts what the sink did since it was made.
type JetStreamStats struct {
	Published, Acked, Republished, Retries, Duplicates, BeyondWindow uint64
	// Foreign counts replies that were not acknowledgements (something
	// other than a stream answered on the subject); they are ignored.
	Foreign uint64
	// InFlight is the number of messages submitted and not done now.
	InFlight int
	// Stalled says publishing is failing now (and being retried).
	Stalled bool
}

// Stats returns the counters. Safe to call at any time.
func (s *JetStream) Stats() JetStreamStats { return s.win.stats() }

func (w *window) stats() JetStreamStats {
	return JetStreamStats{Published: w.published.Load(), Acked: w.acked.Load(), Republished: w.republished.Load(),
		Retries: w.retries.Load(), Duplicates: w.duplicates.Load(), BeyondWindow: w.beyondWindow.Load(),
		Foreign: w.foreign.Load(), InFlight: w.pending(), Stalled: w.stalled.Load()}
}

// NewJetStream provisions or checks the stream (see JetStreamConfig.Manage)
// and returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	cfg.defaults()
	s := &JetStream{nc: nc, cfg: cfg, log: cfg.Logger, enc: newEncoder(EncoderConfig{Subject: cfg.Subject, LossSubject: cfg.LossSubject, Batched: cfg.Batched, CloudEvents: cfg.CloudEvents})}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if err := s.provision(ctx); err != nil {
		return nil, err
	}
	s.win, err = newWindow(nc, windowConfig{Max: cfg.MaxInFlight, AckTimeout: cfg.AckTimeout, RetryMin: cfg.RetryMin,
		RetryMax: cfg.RetryMax, DuplicateWindow: cfg.Stream.DuplicateWindow, Batch: s.batch, Logger: cfg.Logger}, s.groupDone)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// BatchPublishing says whether the sink publishes fast batches.
func (s *JetStream) BatchPublishing() bool { return s.batch }

// Stream returns the stream, or nil when the account may not look at it.
func (s *JetStream) Stream() jetstream.Stream { return s.stream }

// Submit copies b, encodes it and queues its messages, blocking while the
// window is full or until ctx ends (the messages not queued by then are
// given up on). done is called once, in submission order, with the sink's
// copy of the batch (valid during the call) and nil, or a *DeliveryError
// naming the records given up on.
func (s *JetStream) Submit(ctx context.Context, b *Batch, done func(*Batch, error)) {
	if s.closed.Load() {
		done(b, AllUndelivered(b, ErrClosed))
		return
	}
	pb := s.pending()
	pb.batch.Events = append(pb.batch.Events[:0], b.Events...)
	pb.batch.Losses = append(pb.batch.Losses[:0], b.Losses...)
	pb.done = done
	s.enc.encode(&pb.enc, &pb.batch, int(s.nc.MaxPayload()))
	pb.out = pb.out[:0]
	for i := range pb.enc.msgs {
		m := &pb.enc.msgs[i]
		pb.out = append(pb.out, outMsg{subject: m.subject, hdr: pb.enc.hdr(m), data: pb.enc.data(m)})
	}
	if len(pb.out) == 0 {
		s.groupDone(pb, nil, nil, nil)
		return
	}
	s.win.submit(ctx, pb.out, pb)
}

// Denied gives up on the messages on subject not acknowledged yet: the
// server refused them for permissions (sink.Denier).
func (s *JetStream) Denied(subject string) { s.win.denied(subject) }

// forwardGroup is a group Forward submitted.
type forwardGroup struct {
	out  []outMsg
	done func(refused, unsent []int, err error)
}

// Forward publishes prepared messages (the spool's) through the window, as
// they are, with their Nats-Msg-Id and tag. done is called once, in
// submission order with the sink's batches, when every message is
// acknowledged or given up on: refused lists the messages refused for good
// (too large, a permanent error), unsent those given up on (Flush's
// deadline, Close, the connection closed for good), both empty when all
// are stored. It blocks while the window is full.
func (s *JetStream) Forward(ctx context.Context, msgs []Msg, done func(refused, unsent []int, err error)) {
	if s.closed.Load() {
		done(nil, allIndexes(len(msgs)), ErrClosed)
		return
	}
	g := &forwardGroup{out: make([]outMsg, len(msgs)), done: done}
	for i := range msgs {
		m := &msgs[i]
		g.out[i] = outMsg{subject: m.Subject, hdr: m.Hdr, data: m.Data}
	}
	s.win.submit(ctx, g.out, g)
}

// without returns the elements of a not in b, sorted.
func without(a, b []int) []int {
	var out []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// groupDone reports a batch done to its submitter.
func (s *JetStream) groupDone(tag any, failed, refused []int, err error) {
	if g, ok := tag.(*forwardGroup); ok {
		g.done(refused, without(failed, refused), err)
		return
	}
	pb := tag.(*pendingBatch)
	var derr error
	if len(failed) > 0 {
		de := &DeliveryError{Err: err}
		for _, i := range failed {
			pb.enc.msgs[i].name(de)
		}
		derr = de
	}
	pb.done(&pb.batch, derr)
	clear(pb.batch.Events)
	clear(pb.batch.Losses)
	pb.done = nil
	s.mu.Lock()
	s.free = append(s.free, pb)
	s.mu.Unlock()
}

func (s *JetStream) pending() *pendingBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		pb := s.free[n-1]
		s.free = s.free[:n-1]
		return pb
	}
	return &pendingBatch{}
}

// Deliver publishes the batch and waits until every message of it is
// acknowledged, republishing what failed, or until ctx ends, when it gives
// up on what is still pending (and returns a *DeliveryError naming it).
func (s *JetStream) Deliver(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return AllUndelivered(b, err) // past the deadline: publish nothing more
	}
	result := make(chan error, 1)
	s.Submit(ctx, b, func(_ *Batch, err error) { result <- err })
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		_ = s.win.drain(ctx)
		return <-result
	}
}

// Flush waits until every submitted batch is done, or ctx ends (or the
// connection is closed for good): then it gives up on what is pending,
// whose batches are done with those records undelivered.
func (s *JetStream) Flush(ctx context.Context) error { return s.win.drain(ctx) }

// Close stops the sink; batches not done are given up on. The caller
// closes the connection.
func (s *JetStream) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.win.close()
}
