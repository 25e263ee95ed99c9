package sink

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

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
	publishDefaults(&c.Subject, &c.LossSubject, &c.RetryMin, &c.RetryMax, &c.Logger)
	orDefault(&c.FlushTimeout, 5*time.Second)
}

// publishDefaults fills the settings the NATS and JetStream sinks share.
func publishDefaults(subject, loss *Template, retryMin, retryMax *time.Duration, log **slog.Logger) {
	orDefault(subject, Template{raw: DefaultSubject})
	orDefault(loss, Template{raw: DefaultLossSubject})
	orDefault(retryMin, 50*time.Millisecond)
	orDefault(retryMax, 2*time.Second)
	orDefault(log, slog.Default())
}

// orDefault sets *v to d when *v is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
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

	enc     encoder
	msg     nats.Msg
	msgID   []string
	failing bool

	rejected    []int // messages of the batch refused for good
	rejectedErr error

	published atomic.Uint64 // messages published, repeats included
	retries   atomic.Uint64 // batches published again
}

type subjectKey struct{ family, group, host string }

// NewNATS returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewNATS(nc *nats.Conn, cfg NATSConfig) *NATS {
	cfg.defaults()
	s := &NATS{nc: nc, cfg: cfg, enc: newEncoder(cfg.Subject, cfg.LossSubject, cfg.Batched), msgID: []string{""}}
	s.msg.Header = nats.Header{"Nats-Msg-Id": s.msgID}
	return s
}

// Published returns how many messages were published (repeats included) and
// how many batches were retried.
func (s *NATS) Published() (messages, retries uint64) { return s.published.Load(), s.retries.Load() }

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

// publishAll publishes every message of b. A message the client refuses for
// good (see permanent) is skipped and left in s.rejected.
func (s *NATS) publishAll(b *Batch) error {
	s.enc.encode(b, int(s.nc.MaxPayload()))
	s.rejected, s.rejectedErr = s.rejected[:0], nil
	for i := range s.enc.msgs {
		m := &s.enc.msgs[i]
		s.msg.Subject = m.subject
		// The header value is only read during PublishMsg, and the encoder's
		// buffer does not change until the next batch: no copy needed.
		id := s.enc.id(m)
		s.msgID[0] = unsafe.String(&id[0], len(id))
		s.msg.Data = s.enc.data(m)
		if err := s.nc.PublishMsg(&s.msg); err != nil {
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

// message is one NATS message that a batch becomes: its subject, where its
// Nats-Msg-Id and payload lie in the encoder's buffer, and which records it
// carries (Losses[first], or Events[first:last+1]).
type message struct {
	subject            string
	idStart, idEnd     int
	dataStart, dataEnd int
	loss               bool
	first, last        int
}

// name adds the records the message carries to de's undelivered ones.
func (m *message) name(de *DeliveryError) {
	for r := m.first; r <= m.last; r++ {
		if m.loss {
			de.UndeliveredLosses = append(de.UndeliveredLosses, r)
		} else {
			de.UndeliveredEvents = append(de.UndeliveredEvents, r)
		}
	}
}

func (m *message) kind() string {
	switch {
	case m.loss:
		return "loss record"
	case m.first != m.last:
		return "batch"
	}
	return "event"
}

// encoder turns a batch into messages, for the NATS and JetStream sinks
// alike: loss records first, one message each, then the events, one message
// each or (batched) one newline-delimited JSON message per run of events
// with the same subject, split below the server's payload limit.
type encoder struct {
	subject, lossSubject Template
	batched              bool

	subjects map[subjectKey]string
	// buf holds every message's id and payload, msgs describes them; both
	// are valid until the next encode.
	buf  []byte
	msgs []message
}

func newEncoder(subject, lossSubject Template, batched bool) encoder {
	return encoder{subject: subject, lossSubject: lossSubject, batched: batched, subjects: map[subjectKey]string{}}
}

func (c *encoder) subjectOf(t *Template, family, group, host string) string {
	k := subjectKey{family, group, host}
	if t == &c.lossSubject {
		k.family = "\x00" + family
	}
	if sub, ok := c.subjects[k]; ok {
		return sub
	}
	if len(c.subjects) > 4096 {
		clear(c.subjects)
	}
	sub := t.Subject(family, group, host)
	c.subjects[k] = sub
	return sub
}

// id and data return a message's Nats-Msg-Id and payload.
func (c *encoder) id(m *message) []byte   { return c.buf[m.idStart:m.idEnd] }
func (c *encoder) data(m *message) []byte { return c.buf[m.dataStart:m.dataEnd] }

// encode fills buf and msgs from b. maxPayload is the server's limit.
func (c *encoder) encode(b *Batch, maxPayload int) {
	c.buf, c.msgs = c.buf[:0], c.msgs[:0]
	for i := range b.Losses {
		l := &b.Losses[i]
		m := message{subject: c.subjectOf(&c.lossSubject, l.Family, l.Group, l.Host), idStart: len(c.buf), loss: true, first: i, last: i}
		c.buf = LossMsgID(c.buf, l)
		m.idEnd, m.dataStart = len(c.buf), len(c.buf)
		c.buf = event.AppendLossJSON(c.buf, l)
		m.dataEnd = len(c.buf)
		c.msgs = append(c.msgs, m)
	}
	if !c.batched {
		for i := range b.Events {
			e := &b.Events[i]
			m := message{subject: c.subjectOf(&c.subject, e.Family, e.Group, e.Host), idStart: len(c.buf), first: i, last: i}
			c.buf = MsgID(c.buf, e)
			m.idEnd, m.dataStart = len(c.buf), len(c.buf)
			c.buf = event.AppendJSON(c.buf, e)
			m.dataEnd = len(c.buf)
			c.msgs = append(c.msgs, m)
		}
		return
	}
	limit := max(maxPayload-1024, 4096)
	for i := 0; i < len(b.Events); {
		first := &b.Events[i]
		m := message{subject: c.subjectOf(&c.subject, first.Family, first.Group, first.Host), dataStart: len(c.buf), first: i}
		j := i
		for ; j < len(b.Events); j++ {
			e := &b.Events[j]
			if e.Family != first.Family || e.Group != first.Group || e.Host != first.Host {
				break
			}
			n := len(c.buf)
			c.buf = append(event.AppendJSON(c.buf, e), '\n')
			if len(c.buf)-m.dataStart > limit && j > i {
				c.buf = c.buf[:n]
				break
			}
		}
		m.last, m.dataEnd, m.idStart = j-1, len(c.buf), len(c.buf)
		// The id names the range of sequences the message holds.
		c.buf = MsgID(c.buf, first)
		c.buf = append(c.buf, '-')
		c.buf = strconv.AppendUint(c.buf, b.Events[j-1].Seq, 10)
		m.idEnd = len(c.buf)
		c.msgs = append(c.msgs, m)
		i = j
	}
}

// Deliver publishes the batch and confirms it with one flush, retrying the
// whole batch with backoff until it is confirmed or ctx ends.
func (s *NATS) Deliver(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return AllUndelivered(b, err) // past the deadline: publish nothing more
	}
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
			if len(s.rejected) > 0 {
				return s.rejectedError()
			}
			return nil
		}
		if closedForGood(s.nc) {
			return AllUndelivered(b, err)
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

// rejectedError names the records of the messages the client refused.
func (s *NATS) rejectedError() error {
	de := &DeliveryError{Err: s.rejectedErr}
	for _, i := range s.rejected {
		s.enc.msgs[i].name(de)
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
