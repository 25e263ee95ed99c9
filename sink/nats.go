package sink

import (
	"context"
	"errors"
	"fmt"
	"github.com/genlbridge/genlbridge/natsconn"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/internal/opt"

	"github.com/nats-io/nats.go"
)

// NATSConfig configures the core NATS sink.
type NATSConfig struct {
	// Subject and LossSubject build the subjects of events and loss records.
	Subject, LossSubject Template
	// Batched puts all events of a batch that share a subject into one
	// message, as newline-delimited JSON, for very high rates. Otherwise
	// every event is its own message.
	Batched bool
	// CloudEvents adds the CloudEvents binary-mode headers to every
	// message of one record (header.go).
	CloudEvents bool
	// FlushTimeout bounds the round trip that confirms a batch reached the server.
	FlushTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

func (c *NATSConfig) defaults() {
	publishDefaults(&c.Subject, &c.LossSubject, &c.RetryMin, &c.RetryMax, &c.Logger)
	opt.Default(&c.FlushTimeout, 5*time.Second)
}

// publishDefaults fills the settings the NATS and JetStream sinks share.
func publishDefaults(subject, loss *Template, retryMin, retryMax *time.Duration, log **slog.Logger) {
	opt.Default(subject, Template{raw: DefaultSubject})
	opt.Default(loss, Template{raw: DefaultLossSubject})
	opt.Default(retryMin, 50*time.Millisecond)
	opt.Default(retryMax, 2*time.Second)
	opt.Default(log, slog.Default())
}

// NATS publishes to core NATS subjects. A batch counts as delivered once the
// server has answered a PING sent after its last message, so every message
// before it was processed. On any failure (disconnected, flush timeout) the
// whole batch is published again after a backoff: delivery is at-least-once,
// and every message carries a Nats-Msg-Id header so that a JetStream stream
// on these subjects drops the repeats.
//
// The connection should be made with ReconnectBufSize(-1) (see Connect), so
// that nothing waits in the client's buffer while it is disconnected.
type NATS struct {
	nc  *nats.Conn
	cfg NATSConfig

	enc     encoder
	out     encoded
	failing atomic.Bool // publishing fails now (read by metrics)

	rejected    []int // messages of the batch refused for good
	rejectedErr error

	published atomic.Uint64 // messages published, repeats included
	retries   atomic.Uint64 // batches published again

	deniedMu sync.Mutex
	denied   map[string]time.Time // subject -> when the server last refused it for permissions
}

// NewNATS returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewNATS(nc *nats.Conn, cfg NATSConfig) *NATS {
	cfg.defaults()
	return &NATS{nc: nc, cfg: cfg, enc: newEncoder(EncoderConfig{Subject: cfg.Subject, LossSubject: cfg.LossSubject, Batched: cfg.Batched, CloudEvents: cfg.CloudEvents})}
}

// Published returns how many messages were published (repeats included) and
// how many batches were retried.
func (s *NATS) Published() (messages, retries uint64) { return s.published.Load(), s.retries.Load() }

// Denied notes that the server refused a publish on subject for
// permissions (sink.Denier): the messages of the batch being delivered on
// it are given up on.
func (s *NATS) Denied(subject string) {
	s.deniedMu.Lock()
	if s.denied == nil || len(s.denied) > 1024 {
		s.denied = map[string]time.Time{}
	}
	s.denied[subject] = time.Now()
	s.deniedMu.Unlock()
}

// deniedSince adds to s.rejected the messages of the batch whose subject
// the server refused for permissions since start (see deniedOf).
func (s *NATS) deniedSince(start time.Time, before error) {
	for _, i := range s.deniedOf(len(s.out.msgs), func(i int) string { return s.out.msgs[i].subject }, start, before) {
		if !slices.Contains(s.rejected, i) {
			s.rejected = append(s.rejected, i)
			s.rejectedErr = fmt.Errorf("%w: %s", ErrPermissionDenied, s.out.msgs[i].subject)
		}
	}
}

// deniedMsgs is deniedSince for Forward's messages: it returns rejected
// with those denied added, and the error naming one.
func (s *NATS) deniedMsgs(msgs []Msg, rejected []int, start time.Time, before error) ([]int, error) {
	var err error
	for _, i := range s.deniedOf(len(msgs), func(i int) string { return msgs[i].Subject }, start, before) {
		if !slices.Contains(rejected, i) {
			rejected = append(rejected, i)
			err = fmt.Errorf("%w: %s", ErrPermissionDenied, msgs[i].Subject)
		}
	}
	return rejected, err
}

// deniedOf returns which of n messages (subject(i) their subjects) went to
// a subject the server refused for permissions since start: heard through
// Denied, or in the connection's last error, which nats.go sets before the
// flush that confirms them returns (Denied may come later). before is the
// last error when they began.
func (s *NATS) deniedOf(n int, subject func(int) string, start time.Time, before error) []int {
	if err := s.nc.LastError(); err != nil && err != before && errors.Is(err, nats.ErrPermissionViolation) {
		if kind, subject, ok := natsconn.ParseDenial(err); ok && kind == "publish" {
			s.Denied(subject)
		}
	}
	s.deniedMu.Lock()
	defer s.deniedMu.Unlock()
	if len(s.denied) == 0 {
		return nil
	}
	var out []int
	for i := range n {
		if t, ok := s.denied[subject(i)]; ok && !t.Before(start) {
			out = append(out, i)
		}
	}
	return out
}

// publishAll publishes every message of b. A message the client refuses for
// good (see permanent) is skipped and left in s.rejected.
func (s *NATS) publishAll(b *Batch) error {
	s.enc.encode(&s.out, b, int(s.nc.MaxPayload()))
	s.rejected, s.rejectedErr = s.rejected[:0], nil
	for i := range s.out.msgs {
		m := &s.out.msgs[i]
		if err := publishRaw(s.nc, m.subject, "", s.out.hdr(m), s.out.data(m)); err != nil {
			err = fmt.Errorf("publish %s: %w", m.kind(), err)
			if permanent(err) {
				s.rejected, s.rejectedErr = append(s.rejected, i), err
				continue
			}
			return err
		}
		s.published.Add(1)
	}
	return nil
}

// Deliver publishes the batch and confirms it with one flush, retrying the
// whole batch with backoff until it is confirmed or ctx ends.
func (s *NATS) Deliver(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return AllUndelivered(b, err) // past the deadline: publish nothing more
	}
	bo := Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
		start, before := time.Now(), s.nc.LastError()
		err := s.publishAll(b)
		if err == nil {
			fctx, cancel := context.WithTimeout(ctx, s.cfg.FlushTimeout)
			err = s.nc.FlushWithContext(fctx)
			cancel()
			if err != nil {
				err = fmt.Errorf("flush: %w", err)
			}
		}
		if err == nil {
			s.deniedSince(start, before)
			if s.failing.Swap(false) {
				s.cfg.Logger.Info("publishing again", "attempts", attempt+1)
			}
			if len(s.rejected) > 0 {
				return s.rejectedError()
			}
			return nil
		}
		if closedForGood(s.nc) {
			return AllUndelivered(b, err)
		}
		if !s.failing.Swap(true) {
			s.cfg.Logger.Warn("publish failed; retrying with backoff until delivered", "err", err)
		}
		s.retries.Add(1)
		if serr := bo.Sleep(ctx); serr != nil {
			return AllUndelivered(b, fmt.Errorf("%w (last error: %v)", serr, err))
		}
	}
}

// Forward publishes prepared messages (the spool's) and confirms them with
// one flush, retrying all of them with backoff until confirmed or ctx ends;
// then it calls done with the messages the client refused for good (given
// up on at once) and, if ctx ended first, every other one as unsent. Not
// concurrent with Deliver.
func (s *NATS) Forward(ctx context.Context, msgs []Msg, done func(refused, unsent []int, err error)) {
	bo := Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
		var rejected []int
		var err error
		start, before := time.Now(), s.nc.LastError()
		for i := range msgs {
			m := &msgs[i]
			if perr := publishRaw(s.nc, m.Subject, "", m.Hdr, m.Data); perr != nil {
				if permanent(perr) {
					rejected = append(rejected, i)
					continue
				}
				err = fmt.Errorf("publish: %w", perr)
				break
			}
			s.published.Add(1)
		}
		if err == nil {
			fctx, cancel := context.WithTimeout(ctx, s.cfg.FlushTimeout)
			if ferr := s.nc.FlushWithContext(fctx); ferr != nil {
				err = fmt.Errorf("flush: %w", ferr)
			}
			cancel()
		}
		if err == nil {
			if s.failing.Swap(false) {
				s.cfg.Logger.Info("publishing again", "attempts", attempt+1)
			}
			var derr error
			rejected, derr = s.deniedMsgs(msgs, rejected, start, before)
			done(rejected, nil, derr)
			return
		}
		if !s.failing.Swap(true) {
			s.cfg.Logger.Warn("publish failed; retrying with backoff until delivered", "err", err)
		}
		s.retries.Add(1)
		if closedForGood(s.nc) || bo.Sleep(ctx) != nil {
			done(rejected, without(allIndexes(len(msgs)), rejected), err)
			return
		}
	}
}

// Failing says whether publishing fails now (and is being retried).
func (s *NATS) Failing() bool { return s.failing.Load() }

// rejectedError names the records of the messages the client refused.
func (s *NATS) rejectedError() error {
	de := &DeliveryError{Err: s.rejectedErr}
	for _, i := range s.rejected {
		s.out.msgs[i].name(de)
	}
	return de
}

// Close flushes; the caller closes the connection.
func (s *NATS) Close(ctx context.Context) error {
	if s.nc.IsClosed() {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FlushTimeout)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
