package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A record is one batch in the spool's log: a fixed header, the batch's
// meta (what its messages carry: subscriptions, sequence ranges, loss
// records) and its payload (the pack of messages the fleet's server is to
// get). Header and meta are checksummed together, the payload on its own,
// so that damage to the payload, by far the larger part, still leaves the
// meta to say exactly what was lost.
//
//	offset size
//	 0      4  magic "GBS1"
//	 4      4  CRC-32C of bytes 8..40 and the meta
//	 8      8  sequence number of the record in the log (consecutive)
//	16      8  time it was written, ns since the epoch
//	24      4  meta length
//	28      4  payload length
//	32      4  CRC-32C of the payload
//	36      4  flags (0)
//	40         meta, then payload
//
// Integers are little-endian.
const (
	recMagic   = 0x31534247 // "GBS1" read little-endian
	headerSize = 40
	// maxMeta and maxPayload bound a record: a header that claims more is
	// damage, not a record.
	maxMeta    = 4 << 20
	maxPayload = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a record's fixed part.
type header struct {
	seq        uint64
	time       int64
	metaLen    int
	payloadLen int
	payloadCRC uint32
}

// size is the whole record's length.
func (h *header) size() int { return headerSize + h.metaLen + h.payloadLen }

// errBadRecord is the error of bytes that are not a whole, valid record.
var errBadRecord = errors.New("not a valid record")

// beginRecord starts a record in dst: room for the header, then the caller
// appends the meta (and, after markMeta, the payload) and calls
// sealRecord.
func beginRecord(dst []byte) []byte {
	return append(dst[:0], make([]byte, headerSize)...)
}

// sealRecord fills in the header of rec (begun by beginRecord; its meta is
// rec[headerSize:metaEnd], its payload the rest).
func sealRecord(rec []byte, seq uint64, t int64, metaEnd int) {
	h := rec[:headerSize]
	binary.LittleEndian.PutUint32(h[0:], recMagic)
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint64(h[16:], uint64(t))
	binary.LittleEndian.PutUint32(h[24:], uint32(metaEnd-headerSize))
	binary.LittleEndian.PutUint32(h[28:], uint32(len(rec)-metaEnd))
	binary.LittleEndian.PutUint32(h[32:], crc32.Checksum(rec[metaEnd:], castagnoli))
	binary.LittleEndian.PutUint32(h[36:], 0)
	binary.LittleEndian.PutUint32(h[4:], headerCRC(rec[:metaEnd]))
}

func headerCRC(headerAndMeta []byte) uint32 {
	c := crc32.Update(0, castagnoli, headerAndMeta[8:headerSize])
	return crc32.Update(c, castagnoli, headerAndMeta[headerSize:])
}

// parseFixed reads a header's fixed part from b (at least headerSize
// bytes) and checks what it can without the meta: the magic and the
// lengths' bounds.
func parseFixed(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("%w: %d bytes, want a %d-byte header", errBadRecord, len(b), headerSize)
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != recMagic {
		return header{}, fmt.Errorf("%w: magic %#x", errBadRecord, m)
	}
	h := header{
		seq:        binary.LittleEndian.Uint64(b[8:]),
		time:       int64(binary.LittleEndian.Uint64(b[16:])),
		payloadCRC: binary.LittleEndian.Uint32(b[32:]),
	}
	ml, pl := binary.LittleEndian.Uint32(b[24:]), binary.LittleEndian.Uint32(b[28:])
	if ml > maxMeta || pl > maxPayload || binary.LittleEndian.Uint32(b[36:]) != 0 {
		return header{}, fmt.Errorf("%w: meta %d bytes, payload %d bytes", errBadRecord, ml, pl)
	}
	h.metaLen, h.payloadLen = int(ml), int(pl)
	return h, nil
}

// checkHeader checks the header CRC over b, which holds the header and the
// whole meta.
func checkHeader(b []byte, h *header) error {
	if len(b) < headerSize+h.metaLen {
		return fmt.Errorf("%w: cut short in its meta", errBadRecord)
	}
	if want := binary.LittleEndian.Uint32(b[4:]); headerCRC(b[:headerSize+h.metaLen]) != want {
		return fmt.Errorf("%w: header checksum", errBadRecord)
	}
	return nil
}

// checkPayload checks the payload CRC.
func checkPayload(payload []byte, h *header) bool {
	return crc32.Checksum(payload, castagnoli) == h.payloadCRC
}

// record is a record read back: its header, its meta (nil when the meta
// could not be read) and its payload (a view of the reader's buffer; nil
// when damaged).
type record struct {
	header
	meta    *meta
	payload []byte
	off     int64 // where it starts in its segment
}

// findHeader returns the offset in b, at or after from, of the next bytes
// that form a valid header and meta (the checksum holds) of a record
// numbered at least minSeq, or -1. It is how a reader resynchronizes after
// damage.
func findHeader(b []byte, from int, minSeq uint64) int {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], recMagic)
	for i := from; i+headerSize <= len(b); {
		j := bytes.Index(b[i:], magic[:])
		if j < 0 {
			return -1
		}
		i += j
		if h, err := parseFixed(b[i:]); err == nil && h.seq >= minSeq && checkHeader(b[i:], &h) == nil {
			return i
		}
		i++
	}
	return -1
}
