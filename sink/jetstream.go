package sink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	Stream               StreamConfig
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
	// Classify, if set, says whether an error reply from the stream rejects
	// a message for good (returning why, e.g. ErrSpoolFull) rather than
	// having it published again.
	Classify func(reply []byte) error
	// MessageMaxPayload, if set and above 0, is the payload limit the
	// messages are encoded for (batched messages split below it) instead
	// of the server's: with Pack, the limit of the server the messages go
	// to in the end. It is asked at every batch (that server's limit is
	// known once it is connected).
	MessageMaxPayload func() int
	// Pack stores a batch's messages of each subscription as one stream
	// message, a pack (see Unpack): for the node's spool, which the
	// forwarder unpacks into the messages the fleet's server gets. A pack
	// is a message of the first event's subject (or, with only loss
	// records, the first one's), so that Resume finds a subscription's last
	// pack.
	Pack bool
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
	cfg    JetStreamConfig
	log    *slog.Logger
	enc    encoder
	win    *window

	mu   sync.Mutex
	free []*pendingBatch

	closed atomic.Bool // Close may run while a Submit waits for room
}

// pendingBatch is a submitted batch: copies of its records, its encoded
// messages, and whom to tell when it is done.
type pendingBatch struct {
	batch Batch
	enc   encoded
	out   []outMsg
	done  func(*Batch, error)

	// With Pack: the packs' bytes, and which of enc.msgs each out holds
	// (views into packIdx); byKey and keys are scratch.
	packBuf []byte
	packs   [][]int
	packIdx []int
	byKey   [][]int
	keys    []packKey
}

// packKey is a subscription, which a pack does not mix with another.
type packKey struct{ family, group string }

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
	s := &JetStream{nc: nc, cfg: cfg, log: cfg.Logger, enc: newEncoder(cfg.Subject, cfg.LossSubject, cfg.Batched)}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if err := s.provision(ctx); err != nil {
		return nil, err
	}
	s.win, err = newWindow(nc, windowConfig{Max: cfg.MaxInFlight, AckTimeout: cfg.AckTimeout, RetryMin: cfg.RetryMin,
		RetryMax: cfg.RetryMax, DuplicateWindow: cfg.Stream.DuplicateWindow, Classify: cfg.Classify, Logger: cfg.Logger}, s.groupDone)
	if err != nil {
		return nil, err
	}
	return s, nil
}

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
	limit := int(s.nc.MaxPayload())
	if f := s.cfg.MessageMaxPayload; f != nil {
		if m := f(); m > 0 {
			limit = min(limit, m)
		}
	}
	s.enc.encode(&pb.enc, &pb.batch, limit)
	pb.out = pb.out[:0]
	if s.cfg.Pack {
		s.pack(pb, int(s.nc.MaxPayload()))
	}
	for i := range pb.enc.msgs {
		if s.cfg.Pack {
			break
		}
		m := &pb.enc.msgs[i]
		id := pb.enc.id(m)
		pb.out = append(pb.out, outMsg{subject: m.subject, id: unsafe.String(unsafe.SliceData(id), len(id)), data: pb.enc.data(m)})
	}
	if len(pb.out) == 0 {
		s.groupDone(pb, nil, nil, nil)
		return
	}
	s.win.submit(ctx, pb.out, pb)
}

// pack makes pb.out the batch's packs: one per subscription, in the order
// the subscriptions first appear, split where a pack would pass the
// server's payload limit. A pack's Nats-Msg-Id is its first message's, its
// message count after a '+'.
func (s *JetStream) pack(pb *pendingBatch, maxPayload int) {
	// Which subscription each message is of: byKey[k] lists keys[k]'s.
	pb.keys = pb.keys[:0]
	for i := range pb.byKey {
		pb.byKey[i] = pb.byKey[i][:0]
	}
	for i := range pb.enc.msgs {
		m := &pb.enc.msgs[i]
		var k packKey
		if m.loss {
			k = packKey{pb.batch.Losses[m.first].Family, pb.batch.Losses[m.first].Group}
		} else {
			k = packKey{pb.batch.Events[m.first].Family, pb.batch.Events[m.first].Group}
		}
		ki := slices.Index(pb.keys, k)
		if ki < 0 {
			ki = len(pb.keys)
			pb.keys = append(pb.keys, k)
			if ki == len(pb.byKey) {
				pb.byKey = append(pb.byKey, nil)
			}
		}
		pb.byKey[ki] = append(pb.byKey[ki], i)
	}
	// Split where the limit says, and lay every pack out in packBuf.
	limit := max(maxPayload-1024, 4096)
	pb.packBuf, pb.packIdx = pb.packBuf[:0], pb.packIdx[:0]
	var ends [][4]int // per pack: end in packIdx, data start and end, id end (in packBuf)
	for _, list := range pb.byKey[:len(pb.keys)] {
		for len(list) > 0 {
			n, size := 0, 1
			for n < len(list) {
				m := &pb.enc.msgs[list[n]]
				add := packedSize(len(m.subject), m.idEnd-m.idStart, m.dataEnd-m.dataStart)
				if n > 0 && size+add > limit {
					break
				}
				size += add
				n++
			}
			start := len(pb.packBuf)
			pb.packBuf = appendPackHeader(pb.packBuf)
			for _, mi := range list[:n] {
				m := &pb.enc.msgs[mi]
				pb.packBuf = appendPacked(pb.packBuf, m.subject, pb.enc.id(m), pb.enc.data(m))
			}
			end := len(pb.packBuf)
			pb.packBuf = append(pb.packBuf, pb.enc.id(&pb.enc.msgs[list[0]])...)
			pb.packBuf = strconv.AppendInt(append(pb.packBuf, '+'), int64(n), 10)
			pb.packIdx = append(pb.packIdx, list[:n]...)
			ends = append(ends, [4]int{len(pb.packIdx), start, end, len(pb.packBuf)})
			list = list[n:]
		}
	}
	pb.packs = pb.packs[:0]
	from := 0
	for _, e := range ends {
		idx := pb.packIdx[from:e[0]]
		pb.packs = append(pb.packs, idx)
		subject := pb.enc.msgs[idx[0]].subject
		for _, mi := range idx {
			if !pb.enc.msgs[mi].loss {
				subject = pb.enc.msgs[mi].subject
				break
			}
		}
		id := pb.packBuf[e[2]:e[3]]
		pb.out = append(pb.out, outMsg{subject: subject, id: unsafe.String(unsafe.SliceData(id), len(id)), data: pb.packBuf[e[1]:e[2]]})
		from = e[0]
	}
}

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
		g.out[i] = outMsg{subject: m.Subject, id: m.ID, data: m.Data, tag: m.Tag}
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
			if !s.cfg.Pack {
				pb.enc.msgs[i].name(de)
				continue
			}
			for _, m := range pb.packs[i] {
				pb.enc.msgs[m].name(de)
			}
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
