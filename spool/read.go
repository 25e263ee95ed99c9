package spool

import (
	"fmt"
	"io"
	"os"
)

// itemKind says what a scanner found.
type itemKind int

const (
	itemRecord  itemKind = iota // a whole, valid record
	itemDamaged                 // a record whose header and meta are whole and whose payload is not
	itemLost                    // bytes that hold no readable record: records lostFrom..lostTo-1 are gone
)

// item is what the scanner returns next.
type item struct {
	kind itemKind
	rec  record // itemRecord (payload set), itemDamaged (payload nil)
	// itemLost: the records' sequence numbers (an empty range when the
	// bytes held none, or it is not known yet), and how many bytes.
	lostFrom, lostTo uint64
	bytes            int64
	// Where: the segment file and the offset in it.
	file string
	off  int64
}

// scanner reads the log's records in order, from one segment to the next,
// across damage: a header or meta whose checksum fails, or a record cut
// short, is skipped to the next valid header (itemLost, naming the
// records between by their sequence numbers); a payload whose checksum
// fails is itemDamaged, with its meta. It reads only what the log says
// is written. Payloads are views of buffers the scanner does not reuse:
// they stay valid as long as someone holds them.
//
// A scanner is used by one goroutine.
type scanner struct {
	log    *segLog
	tail   *tailCache // records taken from memory when it has them (nil: none)
	seg    *segment
	f      *os.File
	off    int64
	expect uint64 // the next record's sequence number (0: any)
	buf    []byte // bytes of seg from bufOff
	bufOff int64
	pend   *item // a record found after a lost range, returned next
}

// chunkSize is how much a scanner reads at once.
const chunkSize = 1 << 20

// newScanner reads from the segment that holds record from (or the first
// one after it); records before from in that segment are returned too
// (the caller skips them).
func newScanner(l *segLog, from uint64) *scanner {
	return &scanner{log: l, seg: l.find(from)}
}

func (s *scanner) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// next returns the next item; ok is false when nothing more is written
// yet. An error is an I/O error of the disk (the caller tries again
// later).
func (s *scanner) next() (it item, ok bool, err error) {
	if s.pend != nil {
		it, s.pend = *s.pend, nil
		return it, true, nil
	}
	for {
		if s.seg == nil {
			if s.seg = s.log.first(); s.seg == nil {
				return item{}, false, nil
			}
		}
		if s.f == nil {
			if s.f, err = os.Open(s.seg.path); err != nil {
				return item{}, false, fmt.Errorf("open a spool segment: %w", err)
			}
			s.off, s.buf, s.bufOff = 0, nil, 0
		}
		size, sealed := s.log.extent(s.seg)
		if s.off >= size {
			if !sealed {
				return item{}, false, nil
			}
			nxt := s.log.after(s.seg)
			if nxt == nil {
				return item{}, false, nil
			}
			prev, end := s.seg.path, size
			s.close()
			s.seg = nxt
			if s.expect != 0 && nxt.base > s.expect {
				it := item{kind: itemLost, lostFrom: s.expect, lostTo: nxt.base, file: prev, off: end}
				s.expect = nxt.base
				return it, true, nil
			}
			continue
		}
		return s.record(size)
	}
}

// record reads the record at s.off of a segment of size bytes (from the
// tail cache when it holds it: then as written, unchecked).
func (s *scanner) record(size int64) (item, bool, error) {
	if s.tail != nil {
		if b, ok := s.tail.get(s.seg, s.off); ok {
			return s.cached(b)
		}
	}
	if size-s.off < headerSize {
		return s.resync(size)
	}
	hb, err := s.bytes(s.off, headerSize, size)
	if err != nil {
		return item{}, false, err
	}
	h, perr := parseFixed(hb)
	if perr != nil || s.off+int64(h.size()) > size {
		return s.resync(size)
	}
	b, err := s.bytes(s.off, h.size(), size)
	if err != nil {
		return item{}, false, err
	}
	m := &meta{}
	if checkHeader(b, &h) != nil || parseMeta(b[headerSize:headerSize+h.metaLen], m) != nil {
		return s.resync(size)
	}
	it := item{kind: itemRecord, rec: record{header: h, meta: m, off: s.off}, file: s.seg.path, off: s.off}
	if payload := b[headerSize+h.metaLen:]; checkPayload(payload, &h) {
		it.rec.payload = payload
	} else {
		it.kind = itemDamaged
	}
	s.off += int64(h.size())
	return s.numbered(it, h.seq)
}

// numbered returns it, the record numbered seq, unless records are missing
// before it: then their range first, it next.
func (s *scanner) numbered(it item, seq uint64) (item, bool, error) {
	if s.expect != 0 && seq > s.expect {
		lost := item{kind: itemLost, lostFrom: s.expect, lostTo: seq, file: s.seg.path, off: it.off}
		s.expect = seq + 1
		s.pend = &it
		return lost, true, nil
	}
	s.expect = max(s.expect, seq+1)
	return it, true, nil
}

// cached returns the record b the tail cache held at s.off.
func (s *scanner) cached(b []byte) (item, bool, error) {
	h, err := parseFixed(b)
	if err != nil {
		return item{}, false, err // the writer wrote it: cannot be
	}
	m := &meta{}
	if err := parseMeta(b[headerSize:headerSize+h.metaLen], m); err != nil {
		return item{}, false, err
	}
	it := item{kind: itemRecord, rec: record{header: h, meta: m, off: s.off, payload: b[headerSize+h.metaLen : h.size()]},
		file: s.seg.path, off: s.off}
	s.off += int64(h.size())
	return s.numbered(it, h.seq)
}

// resync skips from s.off to the next valid header of a record numbered
// s.expect or more in this segment, or to its end, and returns the lost
// range (what the next record's number, or the next segment's first,
// says).
func (s *scanner) resync(size int64) (item, bool, error) {
	rest := make([]byte, size-s.off)
	if _, err := s.f.ReadAt(rest, s.off); err != nil && err != io.EOF {
		return item{}, false, fmt.Errorf("read %s: %w", s.seg.path, err)
	}
	it := item{kind: itemLost, file: s.seg.path, off: s.off}
	j := findHeader(rest, 1, s.expect)
	if j < 0 {
		it.bytes = int64(len(rest))
		s.off = size
		it.lostFrom, it.lostTo = s.expect, s.expect // the next segment's first record says
		return it, true, nil
	}
	h, _ := parseFixed(rest[j:])
	it.bytes = int64(j)
	s.off += int64(j)
	if s.expect != 0 {
		it.lostFrom, it.lostTo = s.expect, h.seq
		s.expect = h.seq
	}
	return it, true, nil
}

// bytes returns n bytes of the segment from off (not past size), reading
// a new buffer when the current one does not hold them.
func (s *scanner) bytes(off int64, n int, size int64) ([]byte, error) {
	if off >= s.bufOff && off+int64(n) <= s.bufOff+int64(len(s.buf)) {
		return s.buf[off-s.bufOff : off-s.bufOff+int64(n)], nil
	}
	want := min(max(int64(chunkSize), int64(n)), size-off)
	buf := make([]byte, want)
	got, err := s.f.ReadAt(buf, off)
	if got < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s at %d: %w", s.seg.path, off, err)
	}
	s.buf, s.bufOff = buf[:got], off
	return s.buf[:n], nil
}
