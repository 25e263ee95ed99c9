// Package spool keeps a node's events on its own disk while the fleet's
// NATS server cannot take them, and forwards them once it can: nothing is
// lost through an outage longer than the socket buffer holds, with bounded
// disk, and nothing is lost silently when the disk fills, a file is
// damaged, or the power goes.
//
// The spool is a log of records in segment files under Config.Dir (log.go,
// record.go): the bridge delivers to Writer, which writes each batch as
// one record, its messages encoded once as the fleet's server is to get
// them, with a meta that says what they carry (meta.go). A batch counts
// as delivered once its record is on the disk (Config.Sync). A forwarder
// reads the records in order and publishes their messages to the hub given
// to Forward (the JetStream sink, acknowledged, or the core NATS sink,
// confirmed by a flush), and moves the spool's cursor past what the hub
// has; a segment is deleted once all of it is forwarded. A record sent
// again after a restart (the cursor is saved about once a second) carries
// the same Nats-Msg-Ids, so the hub stream's duplicate window drops it.
//
// The spool never takes more than Config.MaxBytes (its segments' sizes,
// exactly, forwarded records waiting for their segment included) nor
// writes on a disk without room: what it cannot take is refused at once
// (the bridge counts its events as spool_full, with their ranges), and it
// takes events again as soon as it has room, while forwarding frees it.
// Damage found while forwarding is published as spool_damaged loss
// records and counted (forward.go).
//
// A Spool is made by Open and stopped by Close; its methods are safe for
// concurrent use. One bridge at a time uses a directory (a lock file);
// Inspect reads one without changing it.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/sink"
)

// Config of a spool.
type Config struct {
	// Dir holds the log, the state file and the lock.
	Dir string
	// MaxBytes bounds what the spool takes on the disk.
	MaxBytes int64
	// Sync is how often the log is synced to the disk: 0 (always) before
	// a batch counts as delivered; else at most this long after it is
	// written (a power cut may lose what was written since).
	Sync time.Duration
	// Subject, LossSubject and Batched make the messages the fleet's
	// server gets, as its sink would (see sink.NATSConfig).
	Subject, LossSubject sink.Template
	Batched              bool
	// CloudEvents: the messages carry the CloudEvents headers
	// (sink.EncoderConfig).
	CloudEvents bool
	// HubMaxPayload says the payload limit of the fleet's server, asked at
	// every batch (0: not known yet): batched messages are split below it
	// (by default, and while it is not known, 1 MiB, nats-server's).
	HubMaxPayload func() int
	// Window bounds the messages forwarded and not yet confirmed by the
	// hub (default 4096).
	Window int
	// SegmentBytes is the size of a segment file (default: a 64th of
	// MaxBytes, from 256 KiB to 16 MiB).
	SegmentBytes int64
	// BootID is the running boot's (default: the kernel's).
	BootID string
	Logger *slog.Logger
}

// Spool is an open spool.
type Spool struct {
	cfg         Config
	log         *slog.Logger
	lock        *os.File
	seg         *segLog
	w           *Writer
	sy          *syncer
	incarnation string
	lossReserve int64
	notify      chan struct{} // a record was appended (or loss records queued): wakes the forwarder
	tail        *tailCache    // the records last written, for a forwarder that keeps up

	// marksMu guards the marks, the cursor and what the state file says.
	marksMu    sync.Mutex
	marks      map[markKey]*markState
	cursor     uint64 // the first record not wholly forwarded
	cursorMsgs int    // its messages that were
	synced     uint64 // every record up to it is on the disk
	stateDirty bool
	cursorTime struct{ seq, time uint64 } // the time of record seq, read back

	mu     sync.Mutex
	fwd    *forwarder
	hub    sink.Forwarder
	closed bool
	quit   chan struct{}
	done   chan struct{}

	// The disk: free bytes as last read (less what was written since),
	// and when they were read.
	diskFree   atomic.Int64
	diskFreeAt atomic.Int64
	refusing   atomic.Bool // the last write failed (disk full or failing)
	// freeBytes reads the disk's free bytes (a test may fill the disk so).
	freeBytes atomic.Pointer[func(dir string) (uint64, bool)]

	forwarded, refused, damaged atomic.Uint64
	lostCounted                 atomic.Uint64 // records counted lost up to this sequence number
	lostMu                      sync.Mutex
	lost                        map[string]uint64
	storeErrors                 atomic.Uint64
	lastErr                     atomic.Value // string
}

// errLocked is a spool directory another bridge uses.
var errLocked = errors.New("another genlbridge uses this spool directory (its lock is held)")

// The log lines that say the disk failed and has room again.
const (
	logDiskFailing = "spool: its disk is full or failing: new events are counted as spool_full until it has room; what it holds is kept and forwarded"
	logRoomAgain   = "spool: its disk has room again: new events are spooled"
)

// diskMargin is the room left free on the spool's disk.
const diskMargin = 1 << 20

// Open opens (or creates) the spool in cfg.Dir: it reads the state and the
// end of the log, cuts off a record whose write was interrupted, and takes
// events at once. It forwards them once Forward has given it the hub.
func Open(cfg Config) (*Spool, error) {
	opt := cfg
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Window <= 0 {
		opt.Window = 4096
	}
	if opt.MaxBytes <= 0 {
		return nil, errors.New("spool: no byte limit")
	}
	if opt.Sync < 0 {
		return nil, errors.New("spool: a negative sync interval")
	}
	if opt.BootID == "" {
		opt.BootID = bootID()
	}
	hubMax := opt.HubMaxPayload
	opt.HubMaxPayload = func() int {
		if hubMax != nil {
			if m := hubMax(); m > 0 {
				return m
			}
		}
		return 1 << 20
	}
	cfg = opt
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	lock, err := lockDir(cfg.Dir, true)
	if err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", cfg.Dir, err)
	}
	s, err := open(cfg, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func open(cfg Config, lock *os.File) (*Spool, error) {
	log := cfg.Logger
	st, stOK, stErr := readState(cfg.Dir)
	if stErr != nil {
		log.Warn("spool: its state file cannot be read; forwarding starts at the oldest record (the hub drops what it has within its duplicate window)", "err", stErr)
	}
	if st.Incarnation == "" {
		id := make([]byte, 8)
		_, _ = rand.Read(id)
		st.Incarnation = hex.EncodeToString(id)
	}
	segs, err := listSegments(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	var held int64
	for _, sg := range segs {
		held += sg.size
	}
	// The disk must hold the limit: what the spool holds plus what is
	// free, less room for its other files and the disk's margin, so that
	// the spool fills its limit before its disk.
	if free, ok := freeBytes(cfg.Dir); ok {
		room := max(int64(min(free, 1<<62))+held-3*diskMargin, 1<<20)
		if cfg.MaxBytes > room {
			log.Warn("GENLBRIDGE_SPOOL_MAX_BYTES is more than the spool's disk holds: the spool's limit is what it holds",
				"max_bytes", cfg.MaxBytes, "limit", room, "dir", cfg.Dir)
			cfg.MaxBytes = room
		}
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = min(max(cfg.MaxBytes/64, 256<<10), 16<<20)
	}
	sl, ts, err := openLog(cfg.Dir, cfg.SegmentBytes, max(st.Next, st.Cursor), st.Synced)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{cfg: cfg, log: log, lock: lock, seg: sl, incarnation: st.Incarnation, notify: make(chan struct{}, 1), tail: newTailCache(tailBytes),
		marks: map[markKey]*markState{}, cursor: st.Cursor, cursorMsgs: st.CursorMsgs, synced: st.Synced,
		lossReserve: min(max(cfg.MaxBytes/64, 64<<10), 1<<20), quit: make(chan struct{}), done: make(chan struct{}),
		lost: map[string]uint64{}}
	fb := freeBytes
	s.freeBytes.Store(&fb)
	s.w = &Writer{s: s, enc: sink.NewEncoder(sink.EncoderConfig{Subject: cfg.Subject, LossSubject: cfg.LossSubject, Batched: cfg.Batched, CloudEvents: cfg.CloudEvents})}
	for _, m := range st.Marks {
		s.marks[markKey{metaKey{m.Host, m.BootID, m.Family, m.Group}, m.Instance}] = &markState{kernel: m.Kernel,
			written: m.Written, synced: m.Written, forwarded: m.Forwarded, record: m.Record}
	}
	// What the records after the last saved state covered.
	from := uint64(0)
	if stOK {
		from = st.Synced + 1
	}
	if err := s.scanMarks(from); err != nil {
		sl.close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if first := sl.first(); first != nil && s.cursor < first.base {
		s.cursor, s.cursorMsgs = first.base, 0
	}
	if s.cursor == 0 {
		s.cursor = 1
	}
	switch {
	case ts.cut == 0:
	case stOK && ts.cutSeq != 0 && ts.cutSeq <= st.Synced:
		log.Error("spool: the end of the log is damaged (records it had on the disk are gone); they are published as spool_damaged loss records",
			"bytes_cut", ts.cut, "first_record", ts.cutSeq, "synced_to", st.Synced)
		s.storeErrors.Add(1)
	default:
		log.Info("spool: an interrupted write at the end of the log was cut off (its batch had not been counted delivered)", "bytes", ts.cut)
	}
	if stOK && !st.Clean && st.Sync != "" && st.Sync != syncName(0) && st.BootID != "" && st.BootID != cfg.BootID {
		log.Warn("spool: the machine restarted without the spool being closed; with GENLBRIDGE_SPOOL_SYNC="+st.Sync+
			" the events it had taken in the last "+st.Sync+" before may be lost, with no loss record", "previous_boot", st.BootID)
	}
	s.sy = newSyncer(s, cfg.Sync)
	s.refreshDisk()
	s.writeStateNow(false) // not clean until Close says so
	go s.sy.run()
	go s.watch()
	stats := s.Stats()
	log.Info("spool open", "dir", cfg.Dir, "max_bytes", cfg.MaxBytes, "sync", syncName(cfg.Sync), "records", stats.Messages,
		"bytes", stats.Bytes, "segment_bytes", cfg.SegmentBytes)
	return s, nil
}

// syncName is the GENLBRIDGE_SPOOL_SYNC value of d.
func syncName(d time.Duration) string {
	if d == 0 {
		return "always"
	}
	return d.String()
}

// scanMarks notes what the records numbered from on cover.
func (s *Spool) scanMarks(from uint64) error {
	sc := newScanner(s.seg, from)
	defer sc.close()
	for {
		it, ok, err := sc.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if it.kind != itemLost && it.rec.seq >= from {
			s.marksMu.Lock()
			s.noteLocked(it.rec.meta, it.rec.seq)
			s.marksMu.Unlock()
		}
	}
}

// Sink is where the bridge delivers.
func (s *Spool) Sink() *Writer { return s.w }

// Forward starts forwarding to hub, the sink to the fleet's server. It is
// called once; after Close it returns an error.
func (s *Spool) Forward(hub sink.Forwarder) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("spool: closed")
	case s.hub != nil:
		return errors.New("spool: already forwarding")
	}
	s.hub = hub
	s.startLocked()
	st := s.statsLocked()
	s.log.Info("spool: forwarding to the fleet's server", "records", st.Messages, "bytes", st.Bytes)
	return nil
}

// startLocked starts a forwarder from the cursor. Called with mu held.
func (s *Spool) startLocked() {
	s.marksMu.Lock()
	cursor, msgs := s.cursor, s.cursorMsgs
	fwd := make(map[markKey]uint64, len(s.marks))
	for k, m := range s.marks {
		if m.forwarded > 0 {
			fwd[k] = m.forwarded
		}
	}
	s.marksMu.Unlock()
	s.fwd = newForwarder(s, s.hub, cursor, msgs, fwd)
}

func (s *Spool) forwarder() *forwarder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fwd
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// appended wakes the forwarder.
func (s *Spool) appended() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Spool) hubMaxPayload() int { return s.cfg.HubMaxPayload() }

// room returns nil when n more bytes may be written: within the limit
// (loss records alone may use a reserve events may not) and on a disk
// with room.
func (s *Spool) room(n int, lossOnly bool) error {
	limit := s.cfg.MaxBytes
	if !lossOnly {
		limit -= s.lossReserve
	}
	if s.seg.size()+int64(n) > limit {
		return fmt.Errorf("%w: its limit of %d bytes (GENLBRIDGE_SPOOL_MAX_BYTES) is reached", sink.ErrSpoolFull, s.cfg.MaxBytes)
	}
	free := s.diskFree.Load()
	if free >= 0 && (free < int64(n)+diskMargin || time.Since(time.Unix(0, s.diskFreeAt.Load())) > time.Second || free < 8*diskMargin) {
		free = s.refreshDisk()
	}
	if free >= 0 && free < int64(n)+diskMargin {
		err := fmt.Errorf("%w: its disk has %d bytes free", sink.ErrSpoolFull, free)
		if !s.refusing.Swap(true) {
			s.storeErrors.Add(1)
			s.lastErr.Store(err.Error())
			s.log.Error(logDiskFailing, "err", err, "dir", s.cfg.Dir)
		}
		return err
	}
	return nil
}

// refreshDisk reads the disk's free bytes (-1: not known).
func (s *Spool) refreshDisk() int64 {
	free, ok := (*s.freeBytes.Load())(s.cfg.Dir)
	v := int64(-1)
	if ok {
		v = int64(min(free, 1<<62))
	}
	s.diskFree.Store(v)
	s.diskFreeAt.Store(time.Now().UnixNano())
	return v
}

// wroteBytes notes a successful write of n bytes.
func (s *Spool) wroteBytes(n int) {
	if s.diskFree.Load() >= 0 {
		s.diskFree.Add(-int64(n))
	}
	if s.refusing.Swap(false) {
		s.log.Info(logRoomAgain)
	}
}

// storeFailed notes a write (or sync, or read) that failed: counted,
// logged when the spool starts refusing. (A disk found without room
// before writing is counted once, when the spool starts refusing.)
func (s *Spool) storeFailed(err error) {
	s.storeErrors.Add(1)
	s.lastErr.Store(err.Error())
	if !s.refusing.Swap(true) {
		s.log.Error(logDiskFailing, "err", err, "dir", s.cfg.Dir)
	}
}

// forwardedTo moves the cursor and the forwarded marks, and deletes the
// segments behind the cursor.
func (s *Spool) forwardedTo(cursor uint64, msgs int, marks map[markKey]uint64) {
	s.marksMu.Lock()
	if cursor > s.cursor || cursor == s.cursor && msgs > s.cursorMsgs {
		s.cursor, s.cursorMsgs = cursor, msgs
	}
	for k, v := range marks {
		if m := s.marks[k]; m != nil {
			m.forwarded = max(m.forwarded, v)
		} else {
			s.marks[k] = &markState{forwarded: v, written: v, synced: v}
		}
	}
	s.stateDirty = true
	cursor = s.cursor
	s.marksMu.Unlock()
	if _, err := s.seg.dropBefore(cursor); err != nil {
		s.log.Warn("spool: deleting forwarded segments", "err", err)
	}
}

// countLost counts the records from..to-1 as lost once.
func (s *Spool) countLost(from, to uint64) {
	for {
		done := s.lostCounted.Load()
		lo := max(from, done)
		if to <= lo {
			return
		}
		if s.lostCounted.CompareAndSwap(done, to) {
			s.damaged.Add(to - lo)
			return
		}
	}
}

func (s *Spool) addLost(reason string, n uint64) {
	if n == 0 {
		return
	}
	s.lostMu.Lock()
	s.lost[reason] += n
	s.lostMu.Unlock()
}

// writtenMarks is what the log covered of each instance, now.
func (s *Spool) writtenMarks() map[markKey]uint64 {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	out := make(map[markKey]uint64, len(s.marks))
	for k, m := range s.marks {
		out[k] = m.written
	}
	return out
}

func (s *Spool) stateChanged() bool {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	return s.stateDirty
}

// writeStateNow writes the state file; clean (at Close) also syncs it.
func (s *Spool) writeStateNow(clean bool) {
	s.marksMu.Lock()
	st := state{Incarnation: s.incarnation, Cursor: s.cursor, CursorMsgs: s.cursorMsgs, Synced: s.synced,
		Next: s.seg.next.Load(), Clean: clean, BootID: s.cfg.BootID, Sync: syncName(s.cfg.Sync)}
	for k, m := range s.marks {
		st.Marks = append(st.Marks, stateMark{Host: k.Host, BootID: k.BootID, Family: k.Family, Group: k.Group, Instance: k.Instance,
			Kernel: m.kernel, Written: m.synced, Forwarded: m.forwarded, Record: m.record})
	}
	s.stateDirty = false
	s.marksMu.Unlock()
	if err := writeState(s.cfg.Dir, &st, clean); err != nil {
		s.log.Warn("spool: saving where forwarding is", "err", err)
	}
}

// Resume is bridge.Config.Resume read from the spool: the boot id,
// instance and highest sequence number the spool covered (events, or
// loss records) of host's family/group in its latest instance, when its
// events are numbered by the kernel. ok is false when the spool holds
// none; then the hub knows where the previous run stopped. It is answered
// from memory.
func (s *Spool) Resume(host, family, group string) (bootID string, instance, seq uint64, ok bool) {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	var best *markState
	var bestKey markKey
	for k, m := range s.marks {
		if k.Host == host && k.Family == family && k.Group == group && (best == nil || m.record > best.record) {
			best, bestKey = m, k
		}
	}
	if best == nil || !best.kernel || best.written == 0 {
		return "", 0, 0, false
	}
	return bestKey.BootID, bestKey.Instance, best.written, true
}

// Stats is what the spool holds and does.
type Stats struct {
	// Messages is the records (one a batch) not wholly forwarded; Bytes
	// what the spool takes on the disk, MaxBytes its limit.
	Messages, Bytes uint64
	MaxBytes        int64
	// OldestAge is how long the oldest record not forwarded has waited
	// (0: none).
	OldestAge time.Duration
	// Forwarded counts messages the hub acknowledged (or, core NATS,
	// confirmed), a message sent again (after a restart) again; Refused
	// those it refused for good (their events counted publish_failed);
	// Damaged the records found damaged or missing on the disk.
	Forwarded, Refused, Damaged uint64
	// Lost counts events the spool had taken and lost, by reason
	// (spool_damaged, publish_failed).
	Lost map[string]uint64
	// Forwarding is false while forwarding fails (the hub is unreachable,
	// refuses, or is silent) and the spool is not empty.
	Forwarding bool
	// StalledSince is when forwarding last started to fail (zero while it works).
	StalledSince time.Time
	// StoreErrors counts failed writes, syncs and reads of the disk, and
	// the times it was found full.
	StoreErrors uint64
	LastError   string
	// StoreFailed says the last write failed (the disk full or failing):
	// new events are refused until one succeeds.
	StoreFailed bool
}

// Stats reads the spool's state. Safe at any time.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Spool) statsLocked() Stats {
	st := Stats{MaxBytes: s.cfg.MaxBytes, StoreErrors: s.storeErrors.Load(), Bytes: uint64(s.seg.size()),
		Forwarded: s.forwarded.Load(), Refused: s.refused.Load(), Damaged: s.damaged.Load(), StoreFailed: s.refusing.Load(),
		Lost: map[string]uint64{}}
	if e, ok := s.lastErr.Load().(string); ok {
		st.LastError = e
	}
	s.lostMu.Lock()
	for r, n := range s.lost {
		st.Lost[r] = n
	}
	s.lostMu.Unlock()
	s.marksMu.Lock()
	cursor := s.cursor
	s.marksMu.Unlock()
	if next := s.seg.next.Load(); next > cursor {
		st.Messages = next - cursor
	}
	var oldest int64
	if s.fwd != nil {
		oldest = s.fwd.oldest()
	}
	if oldest == 0 && st.Messages > 0 {
		oldest = s.timeOf(cursor)
	}
	if oldest != 0 && st.Messages > 0 {
		st.OldestAge = max(0, time.Since(time.Unix(0, oldest)))
	}
	if f := s.fwd; f != nil && !f.dead() {
		since := f.stalledSince()
		st.Forwarding = since.IsZero() || st.Messages == 0
		st.StalledSince = since
	} else {
		st.Forwarding = st.Messages == 0
	}
	return st
}

// timeOf is the time record seq (or the first one after it) was written,
// read back once per seq.
func (s *Spool) timeOf(seq uint64) int64 {
	if s.cursorTime.seq == seq && s.cursorTime.time != 0 {
		return int64(s.cursorTime.time)
	}
	sc := newScanner(s.seg, seq)
	defer sc.close()
	for range 1 << 20 {
		it, ok, err := sc.next()
		if err != nil || !ok {
			return 0
		}
		if it.kind != itemLost && it.rec.seq >= seq {
			s.cursorTime.seq, s.cursorTime.time = seq, uint64(it.rec.time)
			return it.rec.time
		}
	}
	return 0
}

// Ready returns nil while the spool takes events and forwards them (or
// has nothing to forward), else why not: what /readyz says.
func (s *Spool) Ready() error {
	st := s.Stats()
	if st.StoreFailed {
		return fmt.Errorf("spool: its disk is full or failing (%s); new events are counted as spool_full", st.LastError)
	}
	if st.Forwarding {
		return nil
	}
	if st.StalledSince.IsZero() {
		return fmt.Errorf("spool: not forwarding (the fleet's server has not been reachable), %d records (%d bytes) waiting",
			st.Messages, st.Bytes)
	}
	return fmt.Errorf("spool: forwarding stalled for %s, %d records (%d bytes) waiting", time.Since(st.StalledSince).Round(time.Second), st.Messages, st.Bytes)
}

// watchEvery is how often the spool looks at its forwarder and its disk:
// the logs say within it when forwarding stops or resumes (/readyz and
// the metrics say it at once).
const watchEvery = 5 * time.Second

// watch is the spool's own goroutine, stopped by Close: it starts a new
// forwarder when the last one stopped (the hub's sink gave up), logs
// forwarding stopping and resuming, and takes a disk that has room again
// as working.
func (s *Spool) watch() {
	defer close(s.done)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.fwd != nil && s.fwd.dead() && !s.closed {
			s.log.Warn("spool: the forwarder stopped; starting another")
			s.startLocked()
		}
		f := s.fwd
		s.mu.Unlock()
		if f != nil {
			f.stalledSince() // logs the changes
		}
		if s.refusing.Load() {
			if free := s.refreshDisk(); (free < 0 || free > 4*diskMargin) && s.refusing.Swap(false) {
				s.log.Info(logRoomAgain, "free_bytes", free)
			}
		}
	}
}

// Close stops the forwarder (what it has not forwarded stays spooled, for
// the next start), syncs the log and saves the state.
func (s *Spool) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	f := s.fwd
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	if f != nil {
		f.close()
		// What the hub has in hand may still be confirmed: the cursor
		// saved below then says so, and the next start sends less again.
		f.waitIdle(ctx)
	}
	s.sy.stop()
	err := s.seg.close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// bootID is the running kernel's boot id.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
