package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A pack is several prepared messages in one payload: what the JetStream
// sink stores, with JetStreamConfig.Pack, as one message of the node's
// spool for a batch's records of one subscription, and what the spool's
// forwarder unpacks into the messages the fleet's server gets. It is a
// version byte, then per message three length-prefixed fields (uvarint
// lengths): subject, header block (sink.EncodedMsg.Hdr: the Nats-Msg-Id
// and the ce- headers), payload. (Version 1, from before CloudEvents, had
// the Nats-Msg-Id alone in place of the header block.)
const packVersion = 2

// ErrBadPack is the error of a payload that is not a pack this version
// reads (a corrupt or foreign spool message).
var ErrBadPack = errors.New("not a genlbridge pack")

// appendPackHeader starts a pack in dst.
func appendPackHeader(dst []byte) []byte { return append(dst, packVersion) }

// appendPacked appends one message to a pack begun by appendPackHeader.
func appendPacked(dst []byte, subject string, hdr, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(subject)))
	dst = append(dst, subject...)
	dst = binary.AppendUvarint(dst, uint64(len(hdr)))
	dst = append(dst, hdr...)
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// packedSize is what appendPacked adds for a message.
func packedSize(subject, hdr, data int) int {
	return uvarintLen(subject) + subject + uvarintLen(hdr) + hdr + uvarintLen(data) + data
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// Unpack calls fn for each message of pack, in order, with slices of pack
// (valid as long as pack is), until fn returns false. It returns how many
// it passed to fn, and ErrBadPack (wrapped, with the offset) for a payload
// that is not a whole pack: the messages before the damage were passed.
func Unpack(pack []byte, fn func(i int, subject, hdr, data []byte) bool) (int, error) {
	if len(pack) == 0 || pack[0] != packVersion {
		return 0, fmt.Errorf("%w: version byte %v", ErrBadPack, head(pack))
	}
	p := pack[1:]
	off := 1
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(p)
		// Lengths are written in their shortest form; a longer one is damage.
		if k <= 0 || n > uint64(len(p)-k) || k != uvarintLen(int(n)) {
			return nil, false
		}
		f := p[k : k+int(n)]
		p = p[k+int(n):]
		off += k + int(n)
		return f, true
	}
	i := 0
	for ; len(p) > 0; i++ {
		at := off
		subject, ok1 := field()
		hdr, ok2 := field()
		data, ok3 := field()
		if !ok1 || !ok2 || !ok3 || len(subject) == 0 {
			return i, fmt.Errorf("%w: message %d at byte %d is cut short or has no subject", ErrBadPack, i, at)
		}
		if !fn(i, subject, hdr, data) {
			return i + 1, nil
		}
	}
	return i, nil
}

func head(b []byte) any {
	if len(b) == 0 {
		return "(empty)"
	}
	return b[0]
}
