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
// header block (hdr, holding its Nats-Msg-Id at id) and payload lie in the
// encoder's buffer, and which records it carries (Losses[first], or
// Events[first:last+1]).
type message struct {
	subject            string
	hdrStart, hdrEnd   int
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
// with the same subject, split below the server's payload limit. Each
// message gets its header block (header.go).
type encoder struct {
	subject, lossSubject Template
	batched              bool
	withOp               bool // subject has {op}
	cloudEvents          bool

	subjects map[subjectKey]*subjectInfo
}

// subjectInfo is what the encoder keeps per subject: the subject, and the
// ce-source and ce-type prefix of its records.
type subjectInfo struct {
	subject, source, typePrefix string
}

// EncoderConfig configures an Encoder.
type EncoderConfig struct {
	Subject, LossSubject Template
	// Batched puts a run of events of one subject in one message (JSON lines).
	Batched bool
	// CloudEvents adds the CloudEvents binary-mode headers to every message
	// of one record (header.go).
	CloudEvents bool
}

// encoded is what a batch became: buf holds every message's header block
// and payload, msgs describes them. Its owner reuses it for the next batch.
type encoded struct {
	buf  []byte
	msgs []message
}

func newEncoder(c EncoderConfig) encoder {
	return encoder{subject: c.Subject, lossSubject: c.LossSubject, batched: c.Batched, cloudEvents: c.CloudEvents,
		withOp: c.Subject.HasOp(), subjects: map[subjectKey]*subjectInfo{}}
}

func (c *encoder) subjectOf(t *Template, family, group, host, op string) *subjectInfo {
	k := subjectKey{family: family, group: group, host: host, op: op, loss: t == &c.lossSubject}
	if si, ok := c.subjects[k]; ok {
		return si
	}
	if len(c.subjects) > 4096 {
		clear(c.subjects)
	}
	si := &subjectInfo{subject: t.Subject(family, group, host, op)}
	if c.cloudEvents {
		si.source, si.typePrefix = ceSource(host, family, group), ceType(family)
	}
	c.subjects[k] = si
	return si
}

// opOf is e's {op} when the event template has one, else "" (so that it
// splits neither the subject cache nor batched messages).
func (c *encoder) opOf(e *event.Event) string {
	if !c.withOp {
		return ""
	}
	return OpToken(e)
}

// hdr, id and data return a message's header block, its Nats-Msg-Id and
// its payload.
func (c *encoded) hdr(m *message) []byte { return c.buf[m.hdrStart:m.hdrEnd] }

func (c *encoded) id(m *message) []byte { return c.buf[m.idStart:m.idEnd] }

func (c *encoded) data(m *message) []byte { return c.buf[m.dataStart:m.dataEnd] }

// beginHeader starts m's header block at the end of c.buf, up to its
// Nats-Msg-Id's value (written next, then closed by endID).
func (c *encoded) beginHeader(m *message) {
	m.hdrStart = len(c.buf)
	c.buf = append(c.buf, hdrLine...)
	c.buf = append(c.buf, hdrMsgID...)
	m.idStart = len(c.buf)
}

// endID ends the Nats-Msg-Id line begun by beginHeader.
func (c *encoded) endID(m *message) {
	m.idEnd = len(c.buf)
	c.buf = append(c.buf, '\r', '\n')
}

// cloudEvent writes the ce- headers of a one-record message whose id was
// written, with its ce-time ns; the type is typePrefix and (events) op.
func (c *encoded) cloudEvent(m *message, si *subjectInfo, ns int64, e *event.Event) {
	c.buf = append(c.buf, hdrCEStart...)
	c.buf = append(c.buf, c.buf[m.idStart:m.idEnd]...)
	c.buf = append(c.buf, "\r\nce-source: "...)
	c.buf = append(c.buf, si.source...)
	c.buf = append(c.buf, "\r\nce-type: "...)
	if e == nil {
		c.buf = append(c.buf, CELossType...)
	} else {
		c.buf = append(c.buf, si.typePrefix...)
		c.buf = ceOp(c.buf, e)
	}
	c.buf = append(c.buf, "\r\nce-time: "...)
	c.buf = event.AppendTimeText(c.buf, ns)
	c.buf = append(c.buf, "\r\ncontent-type: application/json\r\n"...)
}

// endHeader closes m's header block.
func (c *encoded) endHeader(m *message) {
	c.buf = append(c.buf, '\r', '\n')
	m.hdrEnd = len(c.buf)
}

// encode fills out from b. maxPayload is the server's limit. The encoder
// is used by one goroutine at a time (its subject cache).
func (enc *encoder) encode(c *encoded, b *Batch, maxPayload int) {
	c.buf, c.msgs = c.buf[:0], c.msgs[:0]
	for i := range b.Losses {
		l := &b.Losses[i]
		si := enc.subjectOf(&enc.lossSubject, l.Family, l.Group, l.Host, "")
		m := message{subject: si.subject, loss: true, first: i, last: i}
		c.beginHeader(&m)
		c.buf = LossMsgID(c.buf, l)
		c.endID(&m)
		if enc.cloudEvents {
			c.cloudEvent(&m, si, l.TimeNS, nil)
		}
		c.endHeader(&m)
		m.dataStart = len(c.buf)
		c.buf = event.AppendLossJSON(c.buf, l)
		m.dataEnd = len(c.buf)
		c.msgs = append(c.msgs, m)
	}
	if !enc.batched {
		for i := range b.Events {
			e := &b.Events[i]
			si := enc.subjectOf(&enc.subject, e.Family, e.Group, e.Host, enc.opOf(e))
			m := message{subject: si.subject, first: i, last: i}
			c.beginHeader(&m)
			c.buf = MsgID(c.buf, e)
			c.endID(&m)
			if enc.cloudEvents {
				t := e.KernelNS
				if t == 0 {
					t = e.RecvNS
				}
				c.cloudEvent(&m, si, t, e)
			}
			c.endHeader(&m)
			m.dataStart = len(c.buf)
			c.buf = event.AppendJSON(c.buf, e)
			m.dataEnd = len(c.buf)
			c.msgs = append(c.msgs, m)
		}
		return
	}
	limit := max(maxPayload-1024, 4096)
	for i := 0; i < len(b.Events); {
		first := &b.Events[i]
		si := enc.subjectOf(&enc.subject, first.Family, first.Group, first.Host, enc.opOf(first))
		m := message{subject: si.subject, dataStart: len(c.buf), first: i}
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
		m.last, m.dataEnd = j-1, len(c.buf)
		// The id names the range of sequences the message holds.
		c.beginHeader(&m)
		c.buf = MsgID(c.buf, first)
		c.buf = append(c.buf, '-')
		c.buf = strconv.AppendUint(c.buf, b.Events[j-1].Seq, 10)
		c.endID(&m)
		c.endHeader(&m)
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

// NewEncoder returns an encoder configured by c.
func NewEncoder(c EncoderConfig) *Encoder {
	return &Encoder{enc: newEncoder(c)}
}

// EncodedMsg is one message of an encoded batch. Hdr (its whole header
// block), ID (its Nats-Msg-Id, within Hdr) and Data are views of the
// Encoder's buffer, valid until its next Encode.
type EncodedMsg struct {
	Subject       string
	Hdr, ID, Data []byte
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
		e.msgs = append(e.msgs, EncodedMsg{Subject: m.subject, Hdr: e.out.hdr(m), ID: e.out.id(m), Data: e.out.data(m), Loss: m.loss, First: m.first, Last: m.last})
	}
	return e.msgs
}
