package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// JetStream publishes into a JetStream stream asynchronously, at most
// MaxInFlight messages unacknowledged, every message with the Nats-Msg-Id of
// its records. Deliver returns once the server has acknowledged every
// message of the batch. A message whose acknowledgement fails (an error
// reply, no stream listening, the connection dropping, or no acknowledgement
// at all for AckTimeout) is published again after a backoff, in rounds,
// until it is acknowledged or Deliver's context ends; the server drops the
// repeats that it had stored already, within the stream's duplicate window.
//
// It publishes with plain core NATS requests whose reply subjects name the
// batch and the message, and reads every acknowledgement on one wildcard
// subscription: no future, timer or map entry per message, which is most of
// what jetstream.PublishMsgAsync costs. Close stops the subscription and the
// goroutine that watches the connection for disconnects.
type JetStream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream // nil when the account may not look at it
	cfg    JetStreamConfig
	log    *slog.Logger
	enc    encoder

	prefix   string // reply subjects are prefix + batch generation + "." + slot
	sub      *nats.Subscription
	status   chan nats.Status
	watching chan struct{} // closed when the status watcher has returned
	replies  []byte        // the reply subjects of the batch being delivered
	timer    *time.Timer   // acknowledgement timeout of the current wait

	// Per-batch state, guarded by mu: acknowledgements arrive on the
	// subscription's goroutine and disconnects on the watcher's.
	mu       sync.Mutex
	gen      uint64 // generation of the batch being delivered
	slots    []slot
	inFlight int
	lastErr  error
	rejected error // why a slot of the batch was rejected, if one was
	wake     chan struct{}

	failing bool
	closed  bool

	published    atomic.Uint64 // messages published, repeats included
	acked        atomic.Uint64 // messages acknowledged
	republished  atomic.Uint64 // messages published again
	retries      atomic.Uint64 // rounds of republishing
	duplicates   atomic.Uint64 // acknowledgements that said "duplicate"
	beyondWindow atomic.Uint64 // republished later than the duplicate window after their first publish
	foreign      atomic.Uint64 // replies that were not acknowledgements, ignored
}

// JetStreamStats counts what the sink did since it was made.
type JetStreamStats struct {
	Published, Acked, Republished, Retries, Duplicates, BeyondWindow uint64
	// Foreign counts replies that were not acknowledgements (something
	// other than a stream answered on the subject); they are ignored.
	Foreign uint64
}

// Stats returns the counters. Safe to call at any time.
func (s *JetStream) Stats() JetStreamStats {
	return JetStreamStats{Published: s.published.Load(), Acked: s.acked.Load(), Republished: s.republished.Load(),
		Retries: s.retries.Load(), Duplicates: s.duplicates.Load(), BeyondWindow: s.beyondWindow.Load(),
		Foreign: s.foreign.Load()}
}

// NewJetStream provisions or checks the stream (see JetStreamConfig.Manage)
// and returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	cfg.defaults()
	s := &JetStream{nc: nc, cfg: cfg, log: cfg.Logger, enc: newEncoder(cfg.Subject, cfg.LossSubject, cfg.Batched),
		prefix: nc.NewInbox() + ".", wake: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	s.timer.Stop()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if err := s.provision(ctx); err != nil {
		return nil, err
	}
	s.sub, err = nc.Subscribe(s.prefix+"*.*", s.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	// Acknowledgements of a whole window may arrive at once.
	if err := s.sub.SetPendingLimits(-1, -1); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	s.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	s.watching = make(chan struct{})
	go s.watch()
	return s, nil
}

// Stream returns the stream, or nil when the account may not look at it.
func (s *JetStream) Stream() jetstream.Stream { return s.stream }

// Deliver publishes the batch and waits for every acknowledgement,
// republishing what failed until all is acknowledged or ctx ends.
func (s *JetStream) Deliver(ctx context.Context, b *Batch) error {
	if s.closed {
		return AllUndelivered(b, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return AllUndelivered(b, err) // past the deadline: publish nothing more
	}
	s.enc.encode(b, int(s.nc.MaxPayload()))
	s.prepare()
	bo := Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	var last error // the last failure other than ctx ending
	for round := 0; ; round++ {
		err := s.publishRound(ctx, round > 0)
		if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
			last = err
		}
		if err == nil {
			if s.failing {
				s.failing = false
				s.log.Info("publishing again", "rounds", round+1)
			}
			if s.rejected != nil {
				// Everything else is acknowledged; what the client refused
				// for good is given up on at once, not retried.
				return s.giveUp(b, s.rejected)
			}
			return nil
		}
		if closedForGood(s.nc) {
			return s.giveUp(b, err)
		}
		if !s.failing {
			s.failing = true
			s.log.Warn("jetstream publish failed; republishing with backoff until acknowledged", "err", err)
		}
		if ctx.Err() == nil {
			s.retries.Add(1)
			_ = bo.Sleep(ctx)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return s.giveUp(b, fmt.Errorf("%w (last error: %v)", ctx.Err(), last))
		}
	}
}

// publishRound publishes every message not yet acknowledged and waits until
// none is in flight. It returns nil when all are acknowledged.
func (s *JetStream) publishRound(ctx context.Context, again bool) error {
	var pubErr error
	now := time.Now()
	warned := false
	for i := range s.slots {
		if err := ctx.Err(); err != nil {
			return err // past the deadline: publish nothing more
		}
		if err := s.waitInFlight(ctx, s.cfg.MaxInFlight-1); err != nil {
			return err
		}
		sl := &s.slots[i]
		if sl.state != slotIdle {
			s.mu.Unlock()
			continue
		}
		sl.state = slotInFlight
		s.inFlight++
		s.mu.Unlock()
		if sl.first.IsZero() {
			sl.first = now
		} else if again {
			s.republished.Add(1)
			if now.Sub(sl.first) > s.cfg.Stream.DuplicateWindow {
				s.beyondWindow.Add(1)
				if !warned {
					warned = true
					s.log.Warn("republishing records first published longer ago than the stream's duplicate window; the stream may store them twice",
						"duplicate_window", s.cfg.Stream.DuplicateWindow, "first_published", sl.first)
				}
			}
		}
		if err := s.nc.PublishMsg(&sl.msg); err != nil {
			err = fmt.Errorf("publish %s: %w", s.enc.msgs[i].kind(), err)
			s.mu.Lock()
			if sl.state == slotInFlight {
				sl.state = slotIdle
				s.inFlight--
			}
			if permanent(err) {
				sl.state = slotRejected
				s.rejected = err
			}
			s.mu.Unlock()
			if sl.state == slotRejected {
				continue // this message can never go; the others still can
			}
			pubErr = err
			break
		}
		s.published.Add(1)
	}
	// Wait for every acknowledgement of this round.
	if err := s.waitInFlight(ctx, 0); err != nil {
		return err
	}
	lastErr := s.lastErr
	s.lastErr = nil
	acked := true // or rejected for good
	for i := range s.slots {
		if st := s.slots[i].state; st != slotAcked && st != slotRejected {
			acked = false
			break
		}
	}
	s.mu.Unlock()
	switch {
	case acked:
		return nil
	case pubErr != nil:
		return pubErr
	case lastErr != nil:
		return lastErr
	}
	return errors.New("not acknowledged")
}

// giveUp names the records of every message not acknowledged.
func (s *JetStream) giveUp(b *Batch, err error) error {
	de := &DeliveryError{Err: err}
	s.mu.Lock()
	for i := range s.slots {
		if s.slots[i].state == slotAcked {
			continue
		}
		s.enc.msgs[i].name(de)
	}
	s.gen++ // late acknowledgements find nothing
	s.mu.Unlock()
	return de
}

// Close stops the sink. Every batch was acknowledged or given up on by
// Deliver, so nothing is buffered; the caller closes the connection.
func (s *JetStream) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.nc.RemoveStatusListener(s.status)
	<-s.watching
	if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("unsubscribe from acknowledgements: %w", err)
	}
	return nil
}
