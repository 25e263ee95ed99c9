package ynl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"

	"github.com/genlbridge/genlbridge/internal/jsonint"
)

// Output receives what Decode makes of one message. The caller owns it and
// reuses it: Reset it before each message; Decode only appends to JSON and
// Raw (amortized, no allocation once they have grown) and sets the meta
// fields. An Output is used by one goroutine at a time.
type Output struct {
	// JSON gets one JSON object per Decode: the fixed header's members, then
	// the attributes by their spec names, in wire order. Nests are objects,
	// multi-attrs and indexed-arrays arrays, nest-type-values objects keyed
	// by the type numbers (without type-value, a plain nest's object, as
	// ynl.py has it), bitfield32s {"value":..,"selector":..}, flags
	// true, strings up to their first NUL, binaries hex strings (or
	// their display hint's text, or a struct's object, or a sub-type's array
	// of numbers), enums names (an unknown value as its number), flags
	// enums lists of names (unknown bits appended as one number), integers
	// numbers or their display hint's text, except uint and sint, whose
	// hints ynl.py ignores; a number beyond 2^53-1 (or below -(2^53-1)) is
	// a string of its decimal digits, so that every JSON reader holds it
	// exactly (internal/jsonint). A
	// non-multi attribute that repeats is written each time; JSON readers
	// keep the last, as ynl.py does. Nothing for format exmpl.
	JSON []byte
	// Raw gets, when some attributes could not be decoded, one JSON array
	// of them per Decode: {"path":"a.b","type":17,"data":"<base64>"} with
	// path the names of the attributes enclosing it (empty at the top;
	// entries of an indexed-array and levels of a nest-type-value add no
	// name) and type its number without the NLA_F_* bits. Empty when every
	// attribute decoded.
	Raw []byte
	// Unknown counts attributes the spec does not know, BadLength those
	// whose length does not fit their type (a u32 of 2 bytes), TooDeep
	// nests deeper than the decoder follows (16 levels; this also ends a set
	// that contains itself). Each is also in Raw.
	Unknown, BadLength, TooDeep int
	// The event's own fields, from the override's meta attributes (zero
	// when the message does not carry them).
	Seq      uint64
	Jiffies  uint64
	KernelNS int64
	// Msg is the meta msg attribute's text up to its first NUL, a subslice
	// of the payload (copy it before the payload's buffer is reused).
	Msg []byte
	// Seed is set for format exmpl when the msg attribute came alone: the
	// seed module's format, Jiffies parsed from Msg ("... at jiffies N").
	Seed bool
}

// Reset empties o, keeping the capacity of JSON and Raw.
func (o *Output) Reset() {
	*o = Output{JSON: o.JSON[:0], Raw: o.Raw[:0]}
}

// decoder is the state of one Decode call. It lives on the stack; the JSON
// being written is passed along and returned (dst) so that it stays in
// registers.
type decoder struct {
	out     *Output
	rawOpen bool
	depth   int
	np      int
	path    [maxDepth + 1]*attr
}

func align4(n int) int { return (n + 3) &^ 3 }

// Decode decodes payload, everything after the 4-byte genlmsghdr (the fixed
// header if the message has one, then attributes), into out: one JSON
// object appended to out.JSON (nothing for format exmpl), attributes it
// cannot decode appended to out.Raw, meta fields set. An attribute the
// spec does not know, or whose length does not fit its type, is not an
// error: it is kept raw. Only a broken TLV structure (an attribute length
// below 4 or past the end of its container, 1-3 bytes after the last
// attribute, a truncated fixed header) is: an error wrapping ErrMalformed
// that says at which payload offset; out.JSON and out.Raw are then as they
// were, the other fields unspecified. For format exmpl a meta integer whose
// length does not fit is malformed too, as genlbridge's exmpl decoder has
// it. Decode does not allocate once out's buffers have grown (errors
// allocate), and is safe for concurrent use with distinct Outputs.
func (m *Message) Decode(out *Output, payload []byte) error {
	b, off := payload, 0
	if m.fixed != nil {
		if len(b) < m.fixed.size {
			return fmt.Errorf("%w: fixed header %s needs %d bytes, payload has %d", ErrMalformed, m.fixed.name, m.fixed.size, len(b))
		}
		off = min(align4(m.fixed.size), len(b))
		b = b[off:]
	}
	if m.exmpl {
		return m.decodeExmpl(out, b, off)
	}
	j0, r0 := len(out.JSON), len(out.Raw)
	d := decoder{out: out}
	dst := append(out.JSON, '{')
	first := true
	if m.fixed != nil {
		dst = appendMembers(dst, m.fixed, payload[:m.fixed.size], true)
		first = m.fixed.fields == 0
	}
	dst, err := d.attrs(dst, m.top, b, off, first)
	if err != nil {
		out.JSON, out.Raw = dst[:j0], out.Raw[:r0]
		return err
	}
	out.JSON = append(dst, '}')
	if d.rawOpen {
		out.Raw = append(out.Raw, ']')
	}
	return nil
}

func errTrailing(n, off int) error {
	return fmt.Errorf("%w: %d trailing bytes at offset %d, shorter than an attribute header", ErrMalformed, n, off)
}

func errLength(off, l, left int) error {
	return fmt.Errorf("%w: attribute at offset %d has length %d with %d bytes left", ErrMalformed, off, l, left)
}

// next splits the attribute at b[i:], b being a container starting at
// payload offset off, as the kernel's nla_ok() checks it: its type without
// the NLA_F_* bits, its payload, and where the next attribute starts.
func next(b []byte, i, off int) (t uint16, data []byte, n int, err error) {
	if len(b)-i < 4 {
		return 0, nil, 0, errTrailing(len(b)-i, off+i)
	}
	l := int(binary.NativeEndian.Uint16(b[i:]))
	if l < 4 || l > len(b)-i {
		return 0, nil, 0, errLength(off+i, l, len(b)-i)
	}
	t = binary.NativeEndian.Uint16(b[i+2:]) & maxAttrType
	return t, b[i+4 : i+l], min(i+align4(l), len(b)), nil
}

// appendAttrKey writes a's key, after a comma unless first.
func appendAttrKey(dst []byte, a *attr, first bool) []byte {
	if first {
		return append(dst, a.key[1:]...)
	}
	return append(dst, a.key...)
}

// attrs writes the attributes of b, decoded with set, as members of the
// JSON object the caller opened; first says whether nothing precedes them.
func (d *decoder) attrs(dst []byte, set *attrSet, b []byte, off int, first bool) ([]byte, error) {
	var done [maxMulti / 64]uint64 // multi-attrs written, by multiWord and multiBit
	for i := 0; i < len(b); {
		if len(b)-i < 4 {
			return dst, errTrailing(len(b)-i, off+i)
		}
		l := int(binary.NativeEndian.Uint16(b[i:]))
		if l < 4 || l > len(b)-i {
			return dst, errLength(off+i, l, len(b)-i)
		}
		t := binary.NativeEndian.Uint16(b[i+2:]) & maxAttrType
		data := b[i+4 : i+l]
		n := min(i+align4(l), len(b))
		a := set.lookup(t)
		switch {
		case a == nil:
			d.out.Unknown++
			d.raw(t, data)
		case a.size != 0: // a fixed-width integer, the common case
			if int(a.size) != len(data) {
				d.out.BadLength++
				d.raw(t, data)
				break
			}
			if a.keyed != nil {
				if v := intValue(a.kind, a.order, data); v < uint64(len(a.keyed)) {
					kv := a.keyed[v]
					if first {
						kv = kv[1:]
					}
					dst = append(dst, kv...)
					first = false
					break // meta attributes have no keyed table
				}
			}
			dst = appendAttrKey(dst, a, first)
			first = false
			if a.enum == nil && a.hint == hintNone {
				if v := intValue(a.kind, a.order, data); a.kind.signed() {
					dst = jsonint.AppendInt(dst, int64(v))
				} else {
					dst = jsonint.AppendUint(dst, v)
				}
			} else {
				dst = appendNumber(dst, a.kind, a.order, data, a.enum, a.flags, a.hint)
			}
			if a.role != roleNone {
				d.meta(a, data)
			}
		case a.kind == kindPad:
		case a.multi:
			w := a.multiWord % (maxMulti / 64)
			if done[w]&a.multiBit != 0 {
				break // written with the first of its kind
			}
			done[w] |= a.multiBit
			var err error
			if dst, first, err = d.multi(dst, a, t, b, i, off, first); err != nil {
				return dst, err
			}
		default:
			if d.ok(a, t, data) {
				dst = appendAttrKey(dst, a, first)
				first = false
				var err error
				if dst, err = d.value(dst, a, data, off+i+4); err != nil {
					return dst, err
				}
				if a.role != roleNone {
					d.meta(a, data)
				}
			}
		}
		i = n
	}
	return dst, nil
}

// multi writes every attribute of type t in b from b[i:] as one array.
func (d *decoder) multi(dst []byte, a *attr, t uint16, b []byte, i, off int, first bool) ([]byte, bool, error) {
	mark := len(dst)
	dst = appendAttrKey(dst, a, first)
	dst = append(dst, '[')
	count := 0
	for j := i; j < len(b); {
		tj, data, n, err := next(b, j, off)
		if err != nil {
			break // attrs reports it when it gets there
		}
		if tj == t && d.ok(a, t, data) {
			if count > 0 {
				dst = append(dst, ',')
			}
			if dst, err = d.value(dst, a, data, off+j+4); err != nil {
				return dst, false, err
			}
			count++
		}
		j = n
	}
	if count == 0 {
		return dst[:mark], first, nil
	}
	return append(dst, ']'), false, nil
}

// ok reports whether data can be decoded as a; if not, it is kept raw.
func (d *decoder) ok(a *attr, t uint16, data []byte) bool {
	if !a.fits(len(data)) {
		d.out.BadLength++
		d.raw(t, data)
		return false
	}
	levels := 0
	switch a.kind {
	case kindNest:
		levels = 1
	case kindIndexedArray:
		levels = 1
		if a.sub == kindNest {
			levels = 2
		}
	case kindNestTypeValue:
		levels = a.levels + 1
	}
	if d.depth+levels > maxDepth {
		d.out.TooDeep++
		d.raw(t, data)
		return false
	}
	return true
}

// fits reports whether a payload of n bytes fits a's type.
func (a *attr) fits(n int) bool {
	switch a.kind {
	case kindU8, kindS8:
		return n == 1
	case kindU16, kindS16:
		return n == 2
	case kindU32, kindS32:
		return n == 4
	case kindU64, kindS64:
		return n == 8
	case kindUint, kindSint:
		return n == 4 || n == 8
	case kindFlag:
		return n == 0
	case kindBitfield32:
		return n == 8
	case kindBinary:
		switch {
		case a.st != nil:
			return n >= a.st.size
		case a.sub != kindUnknown:
			return n%a.sub.size() == 0
		}
		return hintFits(a.hint, n)
	}
	return true
}

func hintFits(h hint, n int) bool {
	switch h {
	case hintIPv4:
		return n == 4
	case hintIPv6, hintUUID:
		return n == 16
	case hintIPv4or6:
		return n == 4 || n == 16
	}
	return true
}

// value writes the decoded payload of a, which fits its type; off is the
// payload's offset in the message.
func (d *decoder) value(dst []byte, a *attr, data []byte, off int) ([]byte, error) {
	var err error
	switch a.kind {
	case kindString:
		dst = appendString(dst, cutNUL(data))
	case kindFlag:
		dst = append(dst, "true"...)
	case kindBinary:
		switch {
		case a.st != nil:
			dst = append(dst, '{')
			dst = appendMembers(dst, a.st, data, true)
			dst = append(dst, '}')
		case a.sub != kindUnknown:
			dst = append(dst, '[')
			size := a.sub.size()
			for i := 0; i+size <= len(data); i += size {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendNumber(dst, a.sub, a.order, data[i:i+size], a.enum, a.flags, a.hint)
			}
			dst = append(dst, ']')
		default:
			dst = appendBytes(dst, a.hint, data)
		}
	case kindNest:
		dst = append(dst, '{')
		d.push(a, 1)
		dst, err = d.attrs(dst, a.nested, data, off, true)
		d.pop(1)
		dst = append(dst, '}')
	case kindIndexedArray:
		return d.indexed(dst, a, data, off)
	case kindNestTypeValue:
		d.push(a, a.levels+1)
		dst, err = d.typeValue(dst, a, a.levels, data, off)
		d.pop(a.levels + 1)
	case kindBitfield32:
		dst = append(dst, `{"value":`...)
		dst = appendNumber(dst, kindU32, orderHost, data[:4], a.enum, a.flags, hintNone)
		dst = append(dst, `,"selector":`...)
		dst = appendNumber(dst, kindU32, orderHost, data[4:8], a.enum, a.flags, hintNone)
		dst = append(dst, '}')
	default:
		if a.kind.integer() {
			// The hint of a uint or sint is none (Compile drops it).
			dst = appendNumber(dst, autoKind(a.kind, len(data)), a.order, data, a.enum, a.flags, a.hint)
		}
	}
	return dst, err
}

func (d *decoder) push(a *attr, levels int) {
	d.path[d.np] = a
	d.np++
	d.depth += levels
}

func (d *decoder) pop(levels int) {
	d.np--
	d.depth -= levels
}

// indexed writes an indexed-array: the entries' types are their indexes,
// not written; their payloads are of a's sub-type.
func (d *decoder) indexed(dst []byte, a *attr, data []byte, off int) ([]byte, error) {
	dst = append(dst, '[')
	levels := 1
	if a.sub == kindNest {
		levels = 2
	}
	d.push(a, levels)
	count := 0
	for i := 0; i < len(data); {
		t, e, n, err := next(data, i, off)
		if err != nil {
			return dst, err
		}
		eoff := off + i + 4
		i = n
		ok := true
		switch {
		case a.sub == kindUint || a.sub == kindSint:
			ok = len(e) == 4 || len(e) == 8
		case a.sub.integer():
			ok = len(e) == a.sub.size()
		case a.sub == kindBinary:
			ok = hintFits(a.hint, len(e))
		}
		if !ok {
			d.out.BadLength++
			d.raw(t, e)
			continue
		}
		if count > 0 {
			dst = append(dst, ',')
		}
		count++
		switch {
		case a.sub == kindNest:
			dst = append(dst, '{')
			if dst, err = d.attrs(dst, a.nested, e, eoff, true); err != nil {
				return dst, err
			}
			dst = append(dst, '}')
		case a.sub == kindString:
			dst = appendString(dst, cutNUL(e))
		case a.sub == kindBinary:
			dst = appendBytes(dst, a.hint, e)
		default:
			dst = appendNumber(dst, autoKind(a.sub, len(e)), a.order, e, a.enum, a.flags, a.hint)
		}
	}
	d.pop(levels)
	return append(dst, ']'), nil
}

// typeValue writes level levels of nests whose types carry values, as
// objects keyed by the type number, the innermost decoded with a's set.
func (d *decoder) typeValue(dst []byte, a *attr, level int, data []byte, off int) ([]byte, error) {
	dst = append(dst, '{')
	for i := 0; i < len(data); {
		t, e, n, err := next(data, i, off)
		if err != nil {
			return dst, err
		}
		eoff := off + i + 4
		if i > 0 {
			dst = append(dst, ',')
		}
		i = n
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, uint64(t), 10)
		dst = append(dst, '"', ':')
		if level > 1 {
			dst, err = d.typeValue(dst, a, level-1, e, eoff)
		} else {
			dst = append(dst, '{')
			dst, err = d.attrs(dst, a.nested, e, eoff, true)
			dst = append(dst, '}')
		}
		if err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// raw keeps an attribute d cannot decode in out.Raw.
func (d *decoder) raw(t uint16, data []byte) {
	o := d.out
	if d.rawOpen {
		o.Raw = append(o.Raw, ',')
	} else {
		o.Raw = append(o.Raw, '[')
		d.rawOpen = true
	}
	o.Raw = append(o.Raw, `{"path":"`...)
	for i := range d.np {
		if i > 0 {
			o.Raw = append(o.Raw, '.')
		}
		k := d.path[i].key
		o.Raw = append(o.Raw, k[2:len(k)-2]...) // the escaped name
	}
	o.Raw = append(o.Raw, `","type":`...)
	o.Raw = strconv.AppendUint(o.Raw, uint64(t), 10)
	o.Raw = append(o.Raw, `,"data":`...)
	o.Raw = appendBase64(o.Raw, data)
	o.Raw = append(o.Raw, '}')
}

// meta fills the event field a's role names; data fits a.
func (d *decoder) meta(a *attr, data []byte) {
	switch a.role {
	case roleSeq:
		d.out.Seq = intValue(a.kind, a.order, data)
	case roleJiffies:
		d.out.Jiffies = intValue(a.kind, a.order, data)
	case roleKernelNS:
		d.out.KernelNS = int64(intValue(a.kind, a.order, data))
	case roleMsg:
		d.out.Msg = cutNUL(data)
	}
}

// decodeExmpl fills only the meta fields, as genlbridge's decoder of the
// CONTROL_EXMPL schema does.
func (m *Message) decodeExmpl(out *Output, b []byte, off int) error {
	var msg []byte
	haveMsg, other := false, false
	for i := 0; i < len(b); {
		if len(b)-i < 4 {
			return errTrailing(len(b)-i, off+i)
		}
		l := int(binary.NativeEndian.Uint16(b[i:]))
		if l < 4 || l > len(b)-i {
			return errLength(off+i, l, len(b)-i)
		}
		t := binary.NativeEndian.Uint16(b[i+2:]) & maxAttrType
		data := b[i+4 : i+l]
		a := m.top.lookup(t)
		switch {
		case a == nil || a.role == roleNone:
			other = true
		case a.role == roleMsg:
			msg, haveMsg = data, true
		default:
			if int(a.size) != len(data) && (a.size != 0 || !a.fits(len(data))) {
				return fmt.Errorf("%w: attribute %d at offset %d has %d bytes, want %d", ErrMalformed, t, off+i, len(data), a.kind.size())
			}
			v := intValue(a.kind, a.order, data)
			switch a.role {
			case roleSeq:
				out.Seq = v
			case roleJiffies:
				out.Jiffies = v
			default:
				out.KernelNS = int64(v)
			}
			other = true
		}
		i = min(i+align4(l), len(b))
	}
	out.Msg = cutNUL(msg)
	if haveMsg && !other {
		out.Seed = true
		out.Jiffies = parseSeedJiffies(out.Msg)
	}
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
	digits := msg[i+len(seedPrefix):]
	if len(digits) == 0 || len(digits) > 20 {
		return 0
	}
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0
		}
		dg := uint64(c - '0')
		if v > (math.MaxUint64-dg)/10 {
			return 0
		}
		v = v*10 + dg
	}
	return v
}

func cutNUL(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// autoKind is the fixed-width kind a uint or sint of n (4 or 8) bytes is;
// any other kind is itself.
func autoKind(k kind, n int) kind {
	switch {
	case k != kindUint && k != kindSint:
		return k
	case k == kindUint && n == 4:
		return kindU32
	case k == kindUint:
		return kindU64
	case n == 4:
		return kindS32
	}
	return kindS64
}

// intValue reads an integer of len(data) (1, 2, 4 or 8) bytes, sign
// extended for the signed kinds.
func intValue(k kind, order byteOrder, data []byte) uint64 {
	if order == orderHost && !k.signed() {
		return hostUint(data)
	}
	return anyInt(k, order, data)
}

// hostUint reads an unsigned integer in host order.
func hostUint(data []byte) uint64 {
	switch len(data) {
	case 8:
		return binary.NativeEndian.Uint64(data)
	case 4:
		return uint64(binary.NativeEndian.Uint32(data))
	case 2:
		return uint64(binary.NativeEndian.Uint16(data))
	case 1:
		return uint64(data[0])
	}
	return 0
}

func anyInt(k kind, order byteOrder, data []byte) uint64 {
	var v uint64
	switch len(data) {
	case 1:
		v = uint64(data[0])
	case 2:
		switch order {
		case orderBig:
			v = uint64(binary.BigEndian.Uint16(data))
		case orderLittle:
			v = uint64(binary.LittleEndian.Uint16(data))
		default:
			v = uint64(binary.NativeEndian.Uint16(data))
		}
	case 4:
		switch order {
		case orderBig:
			v = uint64(binary.BigEndian.Uint32(data))
		case orderLittle:
			v = uint64(binary.LittleEndian.Uint32(data))
		default:
			v = uint64(binary.NativeEndian.Uint32(data))
		}
	case 8:
		switch order {
		case orderBig:
			v = binary.BigEndian.Uint64(data)
		case orderLittle:
			v = binary.LittleEndian.Uint64(data)
		default:
			v = binary.NativeEndian.Uint64(data)
		}
	default:
		return 0
	}
	if k.signed() && len(data) < 8 {
		shift := 64 - 8*uint(len(data))
		v = uint64(int64(v<<shift) >> shift)
	}
	return v
}

// appendNumber writes an integer of kind k from data: an enum's name (or
// list of flag names), the text its hint asks for, or the number.
func appendNumber(dst []byte, k kind, order byteOrder, data []byte, e *enumTab, flags bool, h hint) []byte {
	v := intValue(k, order, data)
	signed := k.signed()
	if e != nil {
		if flags {
			if signed && len(data) < 8 {
				v &= 1<<(8*uint(len(data))) - 1
			}
			return appendFlags(dst, e, v)
		}
		if signed || v <= math.MaxInt64 {
			if name := e.lookup(int64(v)); name != nil {
				return append(dst, name...)
			}
		}
	} else {
		switch h {
		case hintIPv4:
			if len(data) == 4 {
				return appendIPv4(dst, uint32(v))
			}
		case hintHex:
			if signed && int64(v) < 0 {
				return appendNegHex(dst, v)
			}
			return appendHexUint(dst, v)
		}
	}
	if signed {
		return jsonint.AppendInt(dst, int64(v))
	}
	return jsonint.AppendUint(dst, v)
}

// appendNegHex appends a negative v as ynl.py's hex(): "-0x1f".
func appendNegHex(dst []byte, v uint64) []byte {
	dst = append(dst, '"', '-', '0', 'x')
	dst = strconv.AppendUint(dst, -v, 16)
	return append(dst, '"')
}

// appendFlags writes the names of the bits set in v, and the unknown ones
// as one number.
func appendFlags(dst []byte, e *enumTab, v uint64) []byte {
	if v < uint64(len(e.flagSets)) {
		return append(dst, e.flagSets[v]...)
	}
	return appendFlagList(dst, e, v)
}

func appendFlagList(dst []byte, e *enumTab, v uint64) []byte {
	dst = append(dst, '[')
	var unknown uint64
	n := 0
	for v != 0 {
		i := bits.TrailingZeros64(v)
		bit := uint64(1) << i
		v &^= bit
		if name := e.bits[i]; name != nil {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, name...)
			n++
		} else {
			unknown |= bit
		}
	}
	if unknown != 0 {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = jsonint.AppendUint(dst, unknown)
	}
	return append(dst, ']')
}

// appendBytes writes a binary payload as its hint asks, else as hex.
func appendBytes(dst []byte, h hint, b []byte) []byte {
	switch h {
	case hintMAC:
		return appendMAC(dst, b)
	case hintIPv4, hintIPv6, hintIPv4or6:
		if len(b) == 4 || len(b) == 16 {
			return appendIP(dst, b)
		}
	case hintUUID:
		if len(b) == 16 {
			return appendUUID(dst, b)
		}
	case hintHex:
		return appendHex(dst, b, true)
	}
	return appendHex(dst, b, false)
}

// appendMembers writes the members of struct st from data (at least
// st.size bytes) as members of the JSON object the caller opened; first
// says whether nothing precedes them in it.
func appendMembers(dst []byte, st *structType, data []byte, first bool) []byte {
	off := 0
	for i := range st.members {
		m := &st.members[i]
		b := data[off : off+m.size]
		off += m.size
		if m.kind == kindPad {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, m.key...)
		switch {
		case m.kind.integer():
			dst = appendNumber(dst, m.kind, m.order, b, m.enum, m.flags, m.hint)
		case m.kind == kindString:
			dst = appendString(dst, cutNUL(b))
		case m.st != nil:
			dst = append(dst, '{')
			dst = appendMembers(dst, m.st, b, true)
			dst = append(dst, '}')
		default:
			dst = appendBytes(dst, m.hint, b)
		}
	}
	return dst
}
