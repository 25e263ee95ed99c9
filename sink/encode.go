package sink

import (
	"strconv"

	"github.com/genlbridge/genlbridge/event"
)

// The encoder turns a batch into NATS messages for both NATS sinks.

type subjectKey struct {
	family, group, host, op string
	loss                    bool
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
	withOp               bool // subject has {op}

	subjects map[subjectKey]string
}

// encoded is what a batch became: buf holds every message's id and
// payload, msgs describes them. Its owner reuses it for the next batch.
type encoded struct {
	buf  []byte
	msgs []message
}

func newEncoder(subject, lossSubject Template, batched bool) encoder {
	return encoder{subject: subject, lossSubject: lossSubject, batched: batched, withOp: subject.HasOp(), subjects: map[subjectKey]string{}}
}

func (c *encoder) subjectOf(t *Template, family, group, host, op string) string {
	k := subjectKey{family: family, group: group, host: host, op: op, loss: t == &c.lossSubject}
	if sub, ok := c.subjects[k]; ok {
		return sub
	}
	if len(c.subjects) > 4096 {
		clear(c.subjects)
	}
	sub := t.Subject(family, group, host, op)
	c.subjects[k] = sub
	return sub
}

// opOf is e's {op} when the event template has one, else "" (so that it
// splits neither the subject cache nor batched messages).
func (c *encoder) opOf(e *event.Event) string {
	if !c.withOp {
		return ""
	}
	return OpToken(e)
}

// id and data return a message's Nats-Msg-Id and payload.
func (c *encoded) id(m *message) []byte { return c.buf[m.idStart:m.idEnd] }

func (c *encoded) data(m *message) []byte { return c.buf[m.dataStart:m.dataEnd] }

// encode fills out from b. maxPayload is the server's limit. The encoder
// is used by one goroutine at a time (its subject cache).
func (enc *encoder) encode(c *encoded, b *Batch, maxPayload int) {
	c.buf, c.msgs = c.buf[:0], c.msgs[:0]
	for i := range b.Losses {
		l := &b.Losses[i]
		m := message{subject: enc.subjectOf(&enc.lossSubject, l.Family, l.Group, l.Host, ""), idStart: len(c.buf), loss: true, first: i, last: i}
		c.buf = LossMsgID(c.buf, l)
		m.idEnd, m.dataStart = len(c.buf), len(c.buf)
		c.buf = event.AppendLossJSON(c.buf, l)
		m.dataEnd = len(c.buf)
		c.msgs = append(c.msgs, m)
	}
	if !enc.batched {
		for i := range b.Events {
			e := &b.Events[i]
			m := message{subject: enc.subjectOf(&enc.subject, e.Family, e.Group, e.Host, enc.opOf(e)), idStart: len(c.buf), first: i, last: i}
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
		m := message{subject: enc.subjectOf(&enc.subject, first.Family, first.Group, first.Host, enc.opOf(first)), dataStart: len(c.buf), first: i}
		j := i
		for ; j < len(b.Events); j++ {
			e := &b.Events[j]
			if e.Family != first.Family || e.Group != first.Group || e.Host != first.Host || enc.opOf(e) != enc.opOf(first) {
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

// Encoder turns batches into the messages the NATS sinks publish, for
// those who keep them for later (the node's spool): each with its subject,
// Nats-Msg-Id and payload, and the records it carries. It is used by one
// goroutine at a time.
type Encoder struct {
	enc  encoder
	out  encoded
	msgs []EncodedMsg
}

// NewEncoder returns an encoder for the subject templates; batched puts a
// run of events of one subject in one message (JSON lines).
func NewEncoder(subject, lossSubject Template, batched bool) *Encoder {
	return &Encoder{enc: newEncoder(subject, lossSubject, batched)}
}

// EncodedMsg is one message of an encoded batch. ID and Data are views of
// the Encoder's buffer, valid until its next Encode.
type EncodedMsg struct {
	Subject  string
	ID, Data []byte
	// Loss: the message is the loss record Losses[First]; otherwise it
	// holds Events[First..Last].
	Loss        bool
	First, Last int
}

// Encode encodes b for a server whose payload limit is maxPayload (batched
// messages are split below it): loss records first, then the events. The
// result is valid until the next call.
func (e *Encoder) Encode(b *Batch, maxPayload int) []EncodedMsg {
	e.enc.encode(&e.out, b, maxPayload)
	e.msgs = e.msgs[:0]
	for i := range e.out.msgs {
		m := &e.out.msgs[i]
		e.msgs = append(e.msgs, EncodedMsg{Subject: m.subject, ID: e.out.id(m), Data: e.out.data(m), Loss: m.loss, First: m.first, Last: m.last})
	}
	return e.msgs
}
