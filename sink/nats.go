package sink

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/event"
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
	// FlushTimeout bounds the round trip that confirms a batch reached the server.
	FlushTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

func (c *NATSConfig) defaults() {
	if c.Subject.raw == "" {
		c.Subject = Template{raw: DefaultSubject}
	}
	if c.LossSubject.raw == "" {
		c.LossSubject = Template{raw: DefaultLossSubject}
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 5 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
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

	subjects map[subjectKey]string
	msg      nats.Msg
	msgID    []string
	buf, id  []byte
	failing  bool

	published atomic.Uint64 // messages published, repeats included
	retries   atomic.Uint64 // batches published again
}

type subjectKey struct{ family, group, host string }

// NewNATS returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewNATS(nc *nats.Conn, cfg NATSConfig) *NATS {
	cfg.defaults()
	s := &NATS{nc: nc, cfg: cfg, subjects: map[subjectKey]string{}, msgID: []string{""}, buf: make([]byte, 0, 64<<10)}
	s.msg.Header = nats.Header{"Nats-Msg-Id": s.msgID}
	return s
}

// Published returns how many messages were published (repeats included) and
// how many batches were retried.
func (s *NATS) Published() (messages, retries uint64) { return s.published.Load(), s.retries.Load() }

func (s *NATS) subject(t *Template, family, group, host string) string {
	k := subjectKey{family, group, host}
	if t == &s.cfg.LossSubject {
		k.family = "\x00" + family
	}
	if sub, ok := s.subjects[k]; ok {
		return sub
	}
	if len(s.subjects) > 4096 {
		clear(s.subjects)
	}
	sub := t.Subject(family, group, host)
	s.subjects[k] = sub
	return sub
}

// MsgID is the Nats-Msg-Id of an event: boot id, family, group, instance and
// sequence, unique per event and the same when it is published again.
func MsgID(dst []byte, e *event.Event) []byte {
	dst = append(dst, e.BootID...)
	dst = append(dst, '.')
	dst = append(dst, e.Family...)
	dst = append(dst, '.')
	dst = append(dst, e.Group...)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, e.Instance, 36)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, e.Seq, 10)
}

// LossMsgID is the Nats-Msg-Id of a loss record.
func LossMsgID(dst []byte, l *event.Loss) []byte {
	dst = append(dst, l.BootID...)
	dst = append(dst, '.')
	dst = append(dst, l.Family...)
	dst = append(dst, '.')
	dst = append(dst, l.Group...)
	dst = append(dst, ".loss."...)
	dst = append(dst, l.Reason...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, l.TimeNS, 36)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, l.FirstSeq, 10)
}

func (s *NATS) publish(subject string, id []byte, data []byte) error {
	s.msg.Subject = subject
	s.msgID[0] = string(id)
	s.msg.Data = data
	if err := s.nc.PublishMsg(&s.msg); err != nil {
		return err
	}
	s.published.Add(1)
	return nil
}

func (s *NATS) publishAll(b *Batch) error {
	for i := range b.Losses {
		l := &b.Losses[i]
		s.buf = event.AppendLossJSON(s.buf[:0], l)
		s.id = LossMsgID(s.id[:0], l)
		if err := s.publish(s.subject(&s.cfg.LossSubject, l.Family, l.Group, l.Host), s.id, s.buf); err != nil {
			return fmt.Errorf("publish loss record: %w", err)
		}
	}
	if !s.cfg.Batched {
		for i := range b.Events {
			e := &b.Events[i]
			s.buf = event.AppendJSON(s.buf[:0], e)
			s.id = MsgID(s.id[:0], e)
			if err := s.publish(s.subject(&s.cfg.Subject, e.Family, e.Group, e.Host), s.id, s.buf); err != nil {
				return fmt.Errorf("publish event: %w", err)
			}
		}
		return nil
	}
	// Runs of events with the same subject become one message each, split
	// below the server's payload limit.
	limit := int(s.nc.MaxPayload()) - 1024
	if limit < 4096 {
		limit = 4096
	}
	for i := 0; i < len(b.Events); {
		first := &b.Events[i]
		s.buf = s.buf[:0]
		j := i
		for ; j < len(b.Events); j++ {
			e := &b.Events[j]
			if e.Family != first.Family || e.Group != first.Group || e.Host != first.Host {
				break
			}
			n := len(s.buf)
			s.buf = append(event.AppendJSON(s.buf, e), '\n')
			if len(s.buf) > limit && j > i {
				s.buf = s.buf[:n]
				break
			}
		}
		last := &b.Events[j-1]
		s.id = MsgID(s.id[:0], first)
		s.id = append(s.id, '-')
		s.id = strconv.AppendUint(s.id, last.Seq, 10)
		if err := s.publish(s.subject(&s.cfg.Subject, first.Family, first.Group, first.Host), s.id, s.buf); err != nil {
			return fmt.Errorf("publish batch: %w", err)
		}
		i = j
	}
	return nil
}

// Deliver publishes the batch and confirms it with one flush, retrying the
// whole batch with backoff until it is confirmed or ctx ends.
func (s *NATS) Deliver(ctx context.Context, b *Batch) error {
	bo := Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
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
			if s.failing {
				s.failing = false
				s.cfg.Logger.Info("publishing again", "attempts", attempt+1)
			}
			return nil
		}
		if !s.failing {
			s.failing = true
			s.cfg.Logger.Warn("publish failed; retrying with backoff until delivered", "err", err)
		}
		s.retries.Add(1)
		if serr := bo.Sleep(ctx); serr != nil {
			return AllUndelivered(b, fmt.Errorf("%w (last error: %v)", serr, err))
		}
	}
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
