package spool

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// A record's meta says what its messages carry, in their order, without
// their payload: for runs of events, the subscription, the instance and
// the sequence range; for a loss record, the record itself. It is what
// the spool knows of a record whose payload is damaged (its events become
// a spool_damaged loss record with their exact range, its loss records are
// published again as they were), of the last event of each subscription
// (the resume point), and of where a record's messages are in the
// sequence (Prev: damage the meta itself does not survive is found from
// the records after it).
//
// Encoding: a version byte, the keys (uvarint count; host, boot id,
// family, group each a uvarint length and bytes), the parts (uvarint
// count; each a kind byte, then uvarint fields, a loss part's reason a
// string and its time a varint).
const metaVersion = 1

// metaKey is who an event or loss record is of.
type metaKey struct{ Host, BootID, Family, Group string }

// partKind says what a part describes.
type partKind uint8

const (
	partEvents partKind = 1 // a run of events, consecutive in one instance's sequence
	partLoss   partKind = 2 // one loss record
)

// part is a run of a record's messages, or of one message's events.
type part struct {
	Kind partKind
	Key  int // into meta.Keys
	// Msgs is the number of the pack's messages this part starts: 1, or
	// (events published one message each) its event count; 0 when it
	// continues the last message of the part before it (a batched message
	// whose events are not one run).
	Msgs int
	// Kernel: the events are numbered by the kernel (seq_src kernel), else
	// by the bridge.
	Kernel   bool
	Instance uint64
	// First and Last bound the events' sequence numbers, or the loss
	// record's (both 0 when it has none).
	First, Last uint64
	// Prev is the highest sequence number of the key's instance in the
	// records written before this one (0: none): what the log covered
	// before it.
	Prev uint64
	// A loss record's reason, count and time.
	Reason string
	Count  uint64
	Time   int64
}

// events is how many events an events part holds.
func (p *part) events() uint64 { return p.Last - p.First + 1 }

type meta struct {
	Keys  []metaKey
	Parts []part
}

// reset empties m for reuse.
func (m *meta) reset() {
	m.Keys = m.Keys[:0]
	m.Parts = m.Parts[:0]
}

// key returns the index of k in m.Keys, adding it if new.
func (m *meta) key(host, boot, family, group string) int {
	for i := range m.Keys {
		k := &m.Keys[i]
		if k.Family == family && k.Group == group && k.Host == host && k.BootID == boot {
			return i
		}
	}
	m.Keys = append(m.Keys, metaKey{host, boot, family, group})
	return len(m.Keys) - 1
}

// markKey names what a sequence number counts in: a key's instance.
type markKey struct {
	metaKey
	Instance uint64
}

func (m *meta) markKey(p *part) markKey { return markKey{m.Keys[p.Key], p.Instance} }

// build fills m from a batch and its encoded messages. prev says, for a
// key's instance, the highest sequence number the log covered before this
// record.
func (m *meta) build(b *sink.Batch, msgs []sink.EncodedMsg, prev func(markKey) uint64) {
	m.reset()
	for i := range msgs {
		em := &msgs[i]
		if em.Loss {
			l := &b.Losses[em.First]
			p := part{Kind: partLoss, Key: m.key(l.Host, l.BootID, l.Family, l.Group), Msgs: 1, Instance: l.Instance,
				First: l.FirstSeq, Last: l.LastSeq, Reason: l.Reason, Count: l.Count, Time: l.TimeNS}
			p.Prev = prev(m.markKey(&p))
			m.Parts = append(m.Parts, p)
			continue
		}
		startsMsg := true
		for j := em.First; j <= em.Last; {
			e := &b.Events[j]
			k := m.key(e.Host, e.BootID, e.Family, e.Group)
			kernel := e.SeqSource == event.SeqKernel
			// The run: consecutive sequence numbers of one key's instance.
			end := j
			for end+1 <= em.Last {
				n := &b.Events[end+1]
				if n.Seq != b.Events[end].Seq+1 || n.Instance != e.Instance || (n.SeqSource == event.SeqKernel) != kernel ||
					n.Family != e.Family || n.Group != e.Group || n.Host != e.Host || n.BootID != e.BootID {
					break
				}
				end++
			}
			first, last := e.Seq, b.Events[end].Seq
			// Events published one message each extend the part before.
			if n := len(m.Parts); startsMsg && em.First == em.Last && n > 0 {
				q := &m.Parts[n-1]
				if q.Kind == partEvents && q.Key == k && q.Kernel == kernel && q.Instance == e.Instance &&
					q.Last+1 == first && uint64(q.Msgs) == q.events() {
					q.Last = last
					q.Msgs++
					j = end + 1
					startsMsg = false
					continue
				}
			}
			p := part{Kind: partEvents, Key: k, Kernel: kernel, Instance: e.Instance, First: first, Last: last}
			if startsMsg {
				p.Msgs = 1
			}
			p.Prev = prev(m.markKey(&p))
			m.Parts = append(m.Parts, p)
			startsMsg = false
			j = end + 1
		}
	}
}

// msgs is how many messages the parts describe.
func (m *meta) msgs() int {
	n := 0
	for i := range m.Parts {
		n += m.Parts[i].Msgs
	}
	return n
}

// eventCount is how many events the record holds.
func (m *meta) eventCount() uint64 {
	var n uint64
	for i := range m.Parts {
		if m.Parts[i].Kind == partEvents {
			n += m.Parts[i].events()
		}
	}
	return n
}

// partsOf calls fn with the parts (whole, or, of a part whose messages
// hold one event each, the one event's sub-part) that message idx of the
// pack carries.
func (m *meta) partsOf(idx int, fn func(p part)) {
	at := 0 // the message the next part starts
	for i := 0; i < len(m.Parts); i++ {
		p := m.Parts[i]
		switch {
		case p.Msgs == 0:
			continue
		case p.Msgs > 1 && idx >= at && idx < at+p.Msgs:
			// One event a message.
			s := p.First + uint64(idx-at)
			p.First, p.Last, p.Msgs = s, s, 1
			fn(p)
			return
		case p.Msgs == 1 && idx == at:
			fn(p)
			for i+1 < len(m.Parts) && m.Parts[i+1].Msgs == 0 {
				i++
				fn(m.Parts[i])
			}
			return
		}
		at += p.Msgs
	}
}

// appendMeta encodes m.
func appendMeta(dst []byte, m *meta) []byte {
	dst = append(dst, metaVersion)
	dst = binary.AppendUvarint(dst, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		dst = appendString(dst, k.Host)
		dst = appendString(dst, k.BootID)
		dst = appendString(dst, k.Family)
		dst = appendString(dst, k.Group)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Parts)))
	for i := range m.Parts {
		p := &m.Parts[i]
		kind := byte(p.Kind)
		if p.Kernel {
			kind |= 0x80
		}
		dst = append(dst, kind)
		for _, v := range []uint64{uint64(p.Key), uint64(p.Msgs), p.Instance, p.First, p.Last, p.Prev} {
			dst = binary.AppendUvarint(dst, v)
		}
		if p.Kind == partLoss {
			dst = appendString(dst, p.Reason)
			dst = binary.AppendUvarint(dst, p.Count)
			dst = binary.AppendVarint(dst, p.Time)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

var errBadMeta = errors.New("bad record meta")

// parseMeta decodes b into m (strings are copies: m outlives b).
func parseMeta(b []byte, m *meta) error {
	m.reset()
	d := decoder{b: b}
	if v := d.byte(); v != metaVersion {
		return fmt.Errorf("%w: version %d", errBadMeta, v)
	}
	nk := d.uvarint()
	if nk > uint64(len(b)) {
		return fmt.Errorf("%w: %d keys", errBadMeta, nk)
	}
	for range nk {
		m.Keys = append(m.Keys, metaKey{d.string(), d.string(), d.string(), d.string()})
	}
	np := d.uvarint()
	if np > uint64(len(b)) {
		return fmt.Errorf("%w: %d parts", errBadMeta, np)
	}
	for range np {
		kind := d.byte()
		p := part{Kind: partKind(kind &^ 0x80), Kernel: kind&0x80 != 0}
		key, msgs := d.uvarint(), d.uvarint()
		p.Instance, p.First, p.Last, p.Prev = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		switch p.Kind {
		case partEvents:
			if p.Last < p.First || p.First == 0 {
				d.err = true
			}
		case partLoss:
			p.Reason, p.Count, p.Time = d.string(), d.uvarint(), d.varint()
		default:
			d.err = true
		}
		if key >= uint64(len(m.Keys)) || msgs > 1<<30 {
			d.err = true
		}
		if d.err {
			break
		}
		p.Key, p.Msgs = int(key), int(msgs)
		m.Parts = append(m.Parts, p)
	}
	if d.err || len(d.b) != 0 {
		return fmt.Errorf("%w: cut short or trailing bytes", errBadMeta)
	}
	return nil
}

// decoder reads a meta; a read past the end sets err.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = true
		d.b = nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// lossOf is the loss record a loss part describes.
func (m *meta) lossOf(p *part) event.Loss {
	k := m.Keys[p.Key]
	return event.Loss{Host: k.Host, BootID: k.BootID, Family: k.Family, Group: k.Group, Reason: p.Reason, Count: p.Count,
		FirstSeq: p.First, LastSeq: p.Last, Instance: p.Instance, TimeNS: p.Time}
}

// damagedOf is the spool_damaged loss record of the events first..last
// of key k's instance, noticed at time t.
func damagedOf(k metaKey, instance, first, last uint64, t int64) event.Loss {
	return event.Loss{Host: k.Host, BootID: k.BootID, Family: k.Family, Group: k.Group, Reason: event.ReasonSpoolDamaged,
		Count: last - first + 1, FirstSeq: first, LastSeq: last, Instance: instance, TimeNS: t}
}
