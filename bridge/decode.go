package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/ynl"
)

// Decoder names, as written after a colon in a subscription ("netdev/mgmt:generic").
const (
	// DecodeAuto decodes with the family's YNL spec when the registry has
	// one (CONTROL_EXMPL always has), and generically otherwise.
	DecodeAuto = "auto"
	// DecodeYNL decodes with the family's YNL spec; without one the bridge
	// does not start.
	DecodeYNL = "ynl"
	// DecodeExmpl decodes with the CONTROL_EXMPL spec whatever the family
	// (tests inject the module's events into other groups), and the seed's
	// 50-byte payload when attribute 1 comes alone.
	DecodeExmpl = "exmpl"
	// DecodeGeneric keeps every attribute as type number -> bytes.
	DecodeGeneric = "generic"
)

// Decoders lists the decoder names.
var Decoders = []string{DecodeAuto, DecodeYNL, DecodeExmpl, DecodeGeneric}

// Netlink and generic netlink header sizes and constants.
const (
	nlmsgHdrLen  = 16
	genlHdrLen   = 4
	nlaHdrLen    = 4
	nlaTypeMask  = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
	genlMinID    = 0x10   // types below are netlink control messages (NOOP, ERROR, DONE, OVERRUN)
	nlmsgAlignTo = 4
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed message")

func align4(n int) int { return (n + nlmsgAlignTo - 1) &^ (nlmsgAlignTo - 1) }

// nextMessage splits the first netlink message off a datagram. It returns the
// message (header included), the rest of the datagram, and an error when the
// lengths do not fit.
func nextMessage(b []byte) (msg, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return nil, nil, fmt.Errorf("%w: %d bytes left, shorter than a netlink header", errMalformed, len(b))
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < nlmsgHdrLen || l > len(b) {
		return nil, nil, fmt.Errorf("%w: nlmsg_len %d with %d bytes", errMalformed, l, len(b))
	}
	next := align4(l)
	if next > len(b) {
		next = len(b)
	}
	return b[:l], b[next:], nil
}

// msgType returns the nlmsg_type of a message split by nextMessage.
func msgType(msg []byte) uint16 { return binary.NativeEndian.Uint16(msg[4:6]) }

// msgDecoder decodes one subscription's messages: with its family's
// compiled spec (the format exmpl keeps genlbridge's exmpl schema), or
// generically. Its Output is reused by the reader's goroutine, which alone
// calls decode; the counters may be read by any.
type msgDecoder struct {
	group *ynl.Group // nil: generic
	exmpl bool       // the family's format is exmpl
	out   ynl.Output

	rawUnknown   atomic.Uint64 // attributes the spec does not know, kept raw
	rawBadLength atomic.Uint64 // attributes whose length does not fit their type, kept raw
	rawTooDeep   atomic.Uint64 // nests deeper than the decoder follows, kept raw
	fallback     atomic.Uint64 // messages of a cmd the spec has no message for, decoded generically
}

func newMsgDecoder(f *ynl.Family, group string) *msgDecoder {
	d := &msgDecoder{}
	if f != nil {
		d.group, d.exmpl = f.Group(group), f.Format == ynl.FormatExmpl
	}
	return d
}

// decode decodes one generic netlink message (netlink header included)
// into e, filling Cmd, Version and the payload fields. It does not touch
// the metadata fields, except Seq (and Jiffies, KernelNS) when the
// family's spec maps attributes to them. It copies what e keeps of the
// message into the arena a: an event costs no allocation of its own.
func (d *msgDecoder) decode(msg []byte, e *event.Event, a *arena) error {
	if len(msg) < nlmsgHdrLen+genlHdrLen {
		return fmt.Errorf("%w: %d bytes, shorter than the genl header", errMalformed, len(msg))
	}
	e.Cmd = msg[nlmsgHdrLen]
	e.Version = msg[nlmsgHdrLen+1]
	payload := msg[nlmsgHdrLen+genlHdrLen:]
	if d.group == nil {
		return decodeGeneric(payload, e, a)
	}
	m := d.group.Lookup(e.Cmd)
	if m == nil {
		d.fallback.Add(1)
		return decodeGeneric(payload, e, a)
	}
	o := &d.out
	o.Reset()
	if err := m.Decode(o, payload); err != nil {
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	e.Seq, e.Jiffies, e.KernelNS = o.Seq, o.Jiffies, o.KernelNS
	e.Msg = a.string(o.Msg)
	if d.exmpl {
		e.Format = event.FormatExmpl
		if o.Seed {
			e.Format = event.FormatSeed
		}
		return nil
	}
	e.Format, e.Op = event.FormatYNL, m.Name
	e.Fields = a.bytes(o.JSON)
	if len(o.Raw) > 0 {
		e.Raw = a.bytes(o.Raw)
		d.rawUnknown.Add(uint64(o.Unknown))
		d.rawBadLength.Add(uint64(o.BadLength))
		d.rawTooDeep.Add(uint64(o.TooDeep))
	}
	return nil
}

// nextAttr splits the first attribute off b, checking its length as the
// kernel's nla_ok() does.
func nextAttr(b []byte) (typ uint16, data, rest []byte, err error) {
	if len(b) < nlaHdrLen {
		return 0, nil, nil, fmt.Errorf("%w: %d trailing bytes after the attributes", errMalformed, len(b))
	}
	l := int(binary.NativeEndian.Uint16(b[0:2]))
	if l < nlaHdrLen || l > len(b) {
		return 0, nil, nil, fmt.Errorf("%w: attribute length %d with %d bytes left", errMalformed, l, len(b))
	}
	return binary.NativeEndian.Uint16(b[2:4]), b[nlaHdrLen:l], b[min(align4(l), len(b)):], nil
}

// walkAttrs calls fn for each attribute of b.
func walkAttrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		typ, data, rest, err := nextAttr(b)
		if err != nil {
			return err
		}
		if err := fn(typ, data); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

func decodeGeneric(b []byte, e *event.Event, a *arena) error {
	e.Format = event.FormatGeneric
	// The arena holds every attribute's bytes and the Attrs slice: a first
	// walk sizes both.
	n, size := 0, 0
	if err := walkAttrs(b, func(_ uint16, data []byte) error {
		n++
		size += len(data)
		return nil
	}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	store := a.alloc(size)
	e.Attrs = a.attrSlice(n)
	return walkAttrs(b, func(typ uint16, data []byte) error {
		start := len(store)
		store = append(store, data...)
		e.Attrs = append(e.Attrs, event.Attr{Type: typ, Data: store[start:len(store):len(store)]})
		return nil
	})
}

// arenaBlock is the size of the blocks an arena carves strings from.
const arenaBlock = 64 << 10

// arena copies message text and attribute bytes out of the reused receive
// buffers into large blocks, so that an event costs no allocation of its
// own. What it hands out is never written again; a block is freed by the
// garbage collector once no event refers to it. Used by one goroutine; the
// zero value is ready (a nil *arena allocates each copy on its own).
type arena struct {
	block []byte
	attrs []event.Attr // carved into the Attrs of generic events
}

// attrSlice returns an empty slice with room for n attributes.
func (a *arena) attrSlice(n int) []event.Attr {
	const block = 4096
	if a == nil || n > block/8 {
		return make([]event.Attr, 0, n)
	}
	if cap(a.attrs)-len(a.attrs) < n {
		a.attrs = make([]event.Attr, 0, block)
	}
	start := len(a.attrs)
	a.attrs = a.attrs[:start+n]
	return a.attrs[start : start : start+n]
}

// alloc returns an empty slice with room for n bytes, to be appended to once.
func (a *arena) alloc(n int) []byte {
	if a == nil || n > arenaBlock/8 {
		return make([]byte, 0, n)
	}
	if cap(a.block)-len(a.block) < n {
		a.block = make([]byte, 0, arenaBlock)
	}
	start := len(a.block)
	a.block = a.block[:start+n]
	return a.block[start : start : start+n]
}

// bytes returns a copy of b (nil for an empty b).
func (a *arena) bytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append(a.alloc(len(b)), b...)
}

// string returns a string with b's bytes.
func (a *arena) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := append(a.alloc(len(b)), b...)
	return unsafe.String(&s[0], len(s))
}
