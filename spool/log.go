package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// segLog is the spool's log on disk: records (record.go) appended to
// segment files named by the sequence number of their first record
// (00000000000000000042.seg). The last segment is the active one, which
// the writer appends to; a full one is sealed and a new one begun. The
// forwarder reads them in order and deletes a segment once every record
// of it is forwarded: the spool's bytes are its segments' sizes, exactly,
// so its limit covers what it really takes on the disk (forwarded records
// stay until their whole segment is, which the limit counts).
//
// One goroutine appends (the writer); the forwarder reads and deletes
// sealed segments; anyone may read the sizes. mu guards the segment list
// and sizes.
type segLog struct {
	dir     string
	segSize int64

	mu    sync.Mutex
	segs  []*segment // oldest first; the last is the active one
	bytes int64      // the segments' sizes
	// sealed are segments sealed since the last sync, with their files
	// still open: the syncer syncs and closes them. newFiles: a segment
	// was made since, whose directory entry the sync must make durable.
	sealed   []*os.File
	newFiles bool

	next   atomic.Uint64 // the next record's sequence number
	active *os.File      // the last segment's file, the writer's
	// broken: the last append could not be undone (the file could not be
	// cut back): the next append begins a new segment.
	broken bool
}

// segment is one file of the log.
type segment struct {
	base uint64 // the sequence number of its first record
	path string
	size int64 // bytes that hold records (reads stop here)
}

const segSuffix = ".seg"

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// listSegments returns dir's segments, oldest first, with their sizes.
func listSegments(dir string) ([]*segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(dir, name), size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b *segment) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	return segs, nil
}

// tailScan is what openLog found at the end of the last segment.
type tailScan struct {
	// last is the sequence number of the last valid record (0: none).
	last uint64
	// cut is how many bytes after the last valid record were cut off
	// (a record whose write was interrupted, or damage).
	cut int64
	// cutSeq is the sequence number the cut bytes began with, when
	// their header could be read (0: not).
	cutSeq uint64
}

// openLog opens the log in dir: the last segment is read through, and
// what follows its last whole record is cut off, so that appends go on
// after it (what was cut is returned: a torn write, or damage, which the
// caller tells apart). Damage before the last whole record stays, for the
// forwarder to find and report. synced is the last record known to have
// been on the disk: a last record numbered past it whose payload does not
// check is a write the power cut short, and is cut off too. minNext is the
// least sequence number the next record may have (numbers the spool used
// before, whose records are gone).
func openLog(dir string, segSize int64, minNext, synced uint64) (*segLog, tailScan, error) {
	l := &segLog{dir: dir, segSize: segSize}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, tailScan{}, fmt.Errorf("read the spool directory: %w", err)
	}
	l.segs = segs
	var ts tailScan
	next := uint64(1)
	if n := len(segs); n > 0 {
		last := segs[n-1]
		f, err := os.OpenFile(last.path, os.O_RDWR, 0)
		if err != nil {
			return nil, tailScan{}, fmt.Errorf("open %s: %w", last.path, err)
		}
		valid, lastSeq, cutSeq, err := scanTail(f, last.size, synced)
		if err != nil {
			f.Close()
			return nil, tailScan{}, fmt.Errorf("read %s: %w", last.path, err)
		}
		if valid < last.size {
			ts.cut, ts.cutSeq = last.size-valid, cutSeq
			if err := f.Truncate(valid); err != nil {
				f.Close()
				return nil, tailScan{}, fmt.Errorf("cut %s back to its last whole record: %w", last.path, err)
			}
			last.size = valid
		}
		if _, err := f.Seek(valid, io.SeekStart); err != nil {
			f.Close()
			return nil, tailScan{}, err
		}
		ts.last = lastSeq
		next = last.base
		if lastSeq != 0 {
			next = lastSeq + 1
		}
		l.active = f
	}
	for _, s := range segs {
		l.bytes += s.size
	}
	if minNext > next {
		// Numbers were used that no record holds any more: the next
		// record begins a segment of its own, so that a segment's
		// records stay consecutive.
		next = minNext
		if l.active != nil {
			l.broken = true
		}
	}
	l.next.Store(next)
	return l, ts, nil
}

// scanTail reads f's records from the start up to size and returns where
// the last whole one ends (past damage in between, which it skips to the
// next valid header), its sequence number and, when bytes follow that do
// not form a whole record, the sequence number their header claims (0
// when it cannot be read).
func scanTail(f *os.File, size int64, synced uint64) (valid int64, lastSeq, cutSeq uint64, err error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return 0, 0, 0, err
	}
	off := 0
	for off < len(b) {
		h, perr := parseFixed(b[off:])
		whole := perr == nil && off+h.size() <= len(b) && checkHeader(b[off:], &h) == nil
		if whole && !checkPayload(b[off+headerSize+h.metaLen:off+h.size()], &h) && off+h.size() == len(b) && h.seq > synced {
			// The last record, never synced, cut short by a power cut.
			return int64(off), lastSeq, h.seq, nil
		}
		if whole {
			lastSeq = h.seq
			off += h.size()
			continue
		}
		j := findHeader(b, off+1, lastSeq+1)
		if j < 0 {
			if perr == nil {
				cutSeq = h.seq
			}
			return int64(off), lastSeq, cutSeq, nil
		}
		off = j // damage in between: the forwarder reports it
	}
	return int64(off), lastSeq, 0, nil
}

// errDiskFull is a write that failed for want of room on the disk.
var errDiskFull = errors.New("no space left on the spool's disk")

// append writes rec (its sequence number l.next) to the active segment,
// beginning a new one when the active one is full, and returns where it
// went. A failed write is undone (the file cut back), so the log holds
// whole records only. It is called by one goroutine at a time.
func (l *segLog) append(rec []byte) (*segment, int64, error) {
	seq := l.next.Load()
	if l.active == nil || l.broken || l.activeSize() > 0 && l.activeSize()+int64(len(rec)) > l.segSize {
		if err := l.roll(seq); err != nil {
			return nil, 0, err
		}
	}
	before := l.activeSize()
	n, err := l.active.Write(rec)
	if err != nil || n != len(rec) {
		if err == nil {
			err = io.ErrShortWrite
		}
		if terr := l.active.Truncate(before); terr != nil {
			// The bytes stay; zero the header so that no reader takes
			// them for a record, and go on in a new segment.
			_, _ = l.active.WriteAt(make([]byte, headerSize), before)
			l.broken = true
		}
		_, _ = l.active.Seek(before, io.SeekStart)
		if isNoSpace(err) {
			return nil, 0, fmt.Errorf("%w (%v)", errDiskFull, err)
		}
		return nil, 0, fmt.Errorf("write the spool: %w", err)
	}
	l.mu.Lock()
	seg := l.segs[len(l.segs)-1]
	seg.size += int64(n)
	l.bytes += int64(n)
	l.mu.Unlock()
	l.next.Store(seq + 1)
	return seg, before, nil
}

func (l *segLog) activeSize() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.segs[len(l.segs)-1].size
}

// roll seals the active segment (the syncer syncs and closes it) and
// begins one whose first record is seq.
func (l *segLog) roll(seq uint64) error {
	path := filepath.Join(l.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("%w (%v)", errDiskFull, err)
		}
		return fmt.Errorf("begin a spool segment: %w", err)
	}
	l.mu.Lock()
	if l.active != nil {
		l.sealed = append(l.sealed, l.active)
	}
	if n := len(l.segs); n > 0 && l.segs[n-1].size == 0 && l.segs[n-1].path != path {
		// An empty segment (a start that wrote nothing): gone.
		_ = os.Remove(l.segs[n-1].path)
		l.segs = l.segs[:n-1]
	}
	l.segs = append(l.segs, &segment{base: seq, path: path})
	l.active = f
	l.broken = false
	l.newFiles = true
	l.mu.Unlock()
	return nil
}

// syncFiles syncs the active segment and those sealed since the last
// call, and closes the sealed ones; and the directory, when a segment was
// made since (a new file's name is on the disk only once its directory
// is synced). It is the syncer's.
func (l *segLog) syncFiles() error {
	l.mu.Lock()
	sealed, newFiles := l.sealed, l.newFiles
	l.sealed, l.newFiles = nil, false
	active := l.active
	l.mu.Unlock()
	var errs []error
	for _, f := range sealed {
		errs = append(errs, fdatasync(f), f.Close())
	}
	if active != nil {
		errs = append(errs, fdatasync(active))
	}
	if newFiles {
		d, err := os.Open(l.dir)
		if err == nil {
			err = d.Sync()
			d.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// extent returns how many bytes of s hold records and whether s is sealed
// (no more records come to it; a deleted segment is).
func (l *segLog) extent(s *segment) (size int64, sealed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.size, len(l.segs) == 0 || l.segs[len(l.segs)-1] != s
}

// after returns the segment after s (nil: s is the last). s may be gone
// from the list already: the forwarder deletes a segment once every
// record of it is forwarded, which can be before its reader has looked
// past its end.
func (l *segLog) after(s *segment) *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.segs {
		if x.base > s.base {
			return x
		}
	}
	return nil
}

// find returns the segment that holds seq, or the first after it (nil:
// none).
func (l *segLog) find(seq uint64) *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	var at *segment
	for _, s := range l.segs {
		if s.base <= seq {
			at = s
			continue
		}
		if at == nil {
			return s
		}
		break
	}
	if at == nil && len(l.segs) > 0 {
		return l.segs[0]
	}
	return at
}

// dropBefore deletes the sealed segments every record of which has a
// sequence number below seq (forwarded), and returns how many.
func (l *segLog) dropBefore(seq uint64) (int, error) {
	l.mu.Lock()
	var gone []*segment
	for len(l.segs) > 1 && l.segs[1].base <= seq {
		gone = append(gone, l.segs[0])
		l.bytes -= l.segs[0].size
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	var errs []error
	for _, s := range gone {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return len(gone), errors.Join(errs...)
}

// size is the bytes the log takes.
func (l *segLog) size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// first returns the first segment (nil: none).
func (l *segLog) first() *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return nil
	}
	return l.segs[0]
}

// close syncs and closes the files.
func (l *segLog) close() error {
	err := l.syncFiles()
	if l.active != nil {
		err = errors.Join(err, l.active.Close())
		l.active = nil
	}
	return err
}
