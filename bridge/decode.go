package bridge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/exmpl"
)

// Decoder names, as written after a colon in a subscription ("netdev/mgmt:exmpl").
const (
	// DecodeAuto picks DecodeExmpl for the CONTROL_EXMPL family and DecodeGeneric otherwise.
	DecodeAuto = "auto"
	// DecodeExmpl decodes the CONTROL_EXMPL schema, and the seed's 50-byte
	// payload when attribute 1 comes alone.
	DecodeExmpl = "exmpl"
	// DecodeGeneric keeps every attribute as type number -> bytes.
	DecodeGeneric = "generic"
)

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

// decodeMessage decodes one generic netlink message (netlink header included)
// into e, filling Cmd, Version and the payload fields for the given decoder
// (DecodeExmpl or DecodeGeneric). It does not touch the metadata fields. It
// copies the message text, the attribute bytes and a generic event's Attrs
// slice into the arena a: an event costs no allocation of its own.
func decodeMessage(msg []byte, decoder string, e *event.Event, a *arena) error {
	if len(msg) < nlmsgHdrLen+genlHdrLen {
		return fmt.Errorf("%w: %d bytes, shorter than the genl header", errMalformed, len(msg))
	}
	e.Cmd = msg[nlmsgHdrLen]
	e.Version = msg[nlmsgHdrLen+1]
	attrs := msg[nlmsgHdrLen+genlHdrLen:]
	if decoder == DecodeExmpl {
		return decodeExmpl(attrs, e, a)
	}
	return decodeGeneric(attrs, e, a)
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

func decodeExmpl(b []byte, e *event.Event, a *arena) error {
	var msg []byte
	haveMsg, other := false, false
	for len(b) > 0 {
		t, data, rest, err := nextAttr(b)
		if err != nil {
			return err
		}
		b = rest
		typ := t & nlaTypeMask
		switch typ {
		case exmpl.AttrMsg:
			msg, haveMsg = data, true
		case exmpl.AttrJiffies, exmpl.AttrSeq, exmpl.AttrTimestamp:
			if len(data) != 8 {
				return fmt.Errorf("%w: attribute %d has %d bytes, want 8", errMalformed, typ, len(data))
			}
			v := binary.NativeEndian.Uint64(data)
			switch typ {
			case exmpl.AttrJiffies:
				e.Jiffies = v
			case exmpl.AttrSeq:
				e.Seq = v
			default:
				e.KernelNS = int64(v)
			}
			other = true
		default:
			// PAD and attributes newer than this bridge: not part of the schema.
			other = true
		}
	}
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	e.Msg = a.string(msg)
	if haveMsg && !other {
		// The seed's format: attribute 1 alone, jiffies only in the text.
		e.Format = event.FormatSeed
		e.Jiffies = parseSeedJiffies(msg)
		return nil
	}
	e.Format = event.FormatExmpl
	return nil
}

// seedPrefix is the text before the number in the seed's events.
var seedPrefix = []byte("at jiffies ")

// parseSeedJiffies returns N from "Hello from kernel at jiffies N", or 0.
func parseSeedJiffies(msg []byte) uint64 {
	i := bytes.LastIndex(msg, seedPrefix)
	if i < 0 {
		return 0
	}
	var v uint64
	digits := msg[i+len(seedPrefix):]
	if len(digits) == 0 || len(digits) > 20 {
		return 0
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0
		}
		v = v*10 + d
	}
	return v
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

// string returns a string with b's bytes.
func (a *arena) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := append(a.alloc(len(b)), b...)
	return unsafe.String(&s[0], len(s))
}
