package spool

import (
	"context"
	"sync"
	"time"

	"github.com/genlbridge/genlbridge/sink"
)

// syncer is the spool's goroutine that puts the log on the disk and keeps
// the state file: with Config.Sync 0 (always) it syncs the records that
// wait for it, one fdatasync for all of them, and only then reports their
// batches delivered; it lets the first of them wait up to syncGather (or
// syncGatherMax batches) for others to share the sync: nothing waits to be
// forwarded meanwhile (the forwarder reads what is written), only the
// batcher's count of what is delivered; with an interval it syncs that often while records
// are written. About once a second while anything changed (records
// synced, forwarding progressed) it writes the state file. Its owner is
// the Spool (Close stops it).
type syncer struct {
	s        *Spool
	always   bool
	interval time.Duration

	kick chan struct{} // wakes the loop
	quit chan struct{}
	done chan struct{}

	// queue: batches written and waiting for the sync that makes them
	// delivered (always). flushes: Flush calls waiting for the queue to
	// empty.
	mu      sync.Mutex
	queue   []*pendingBatch
	since   time.Time // when the queue's first batch was enqueued
	flushes []chan struct{}
	dirty   bool // written since the last sync (interval)
	spare   []*pendingBatch
}

// pendingBatch is a batch whose record waits for a sync: the sink's copy
// of it, and whom to tell.
type pendingBatch struct {
	seq   uint64
	batch sink.Batch
	done  func(*sink.Batch, error)
}

// maxQueue bounds the batches waiting for a sync: Submit waits past it.
const maxQueue = 1024

// syncGather is how long the first batch waiting for a sync (always) waits
// for others, and syncGatherMax how many batches make a sync due at once:
// at 10,000 events/s in batches of ten, a sync every 10 ms instead of every
// batch.
const (
	syncGather    = 10 * time.Millisecond
	syncGatherMax = 256
)

// stateEvery is how often the state file is written while things change.
const stateEvery = time.Second

func newSyncer(s *Spool, interval time.Duration) *syncer {
	y := &syncer{s: s, always: interval == 0, interval: interval, kick: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	return y
}

func (y *syncer) wake() {
	select {
	case y.kick <- struct{}{}:
	default:
	}
}

// roomPoll is how often a full queue is looked at again.
const roomPoll = 10 * time.Millisecond

// waitRoom waits until the queue has room or ctx ends (false): the syncer
// is kept busy meanwhile.
func (y *syncer) waitRoom(ctx context.Context) bool {
	for {
		y.mu.Lock()
		n := len(y.queue)
		y.mu.Unlock()
		if n < maxQueue {
			return true
		}
		y.wake()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(roomPoll):
		}
	}
}

// enqueue hands the syncer a batch written as record seq: done is called
// once a sync covers it. The batch is copied.
func (y *syncer) enqueue(seq uint64, b *sink.Batch, done func(*sink.Batch, error)) {
	y.mu.Lock()
	var pb *pendingBatch
	if n := len(y.spare); n > 0 {
		pb = y.spare[n-1]
		y.spare = y.spare[:n-1]
	} else {
		pb = &pendingBatch{}
	}
	pb.seq, pb.done = seq, done
	pb.batch.Events = append(pb.batch.Events[:0], b.Events...)
	pb.batch.Losses = append(pb.batch.Losses[:0], b.Losses...)
	if len(y.queue) == 0 {
		y.since = time.Now()
	}
	y.queue = append(y.queue, pb)
	due := len(y.queue) == 1 || len(y.queue) >= syncGatherMax
	y.mu.Unlock()
	if due {
		y.wake() // the first arms the gathering wait; the last ends it
	}
}

// wrote notes a record written (interval syncing).
func (y *syncer) wrote() {
	y.mu.Lock()
	first := !y.dirty
	y.dirty = true
	y.mu.Unlock()
	if first {
		y.wake()
	}
}

// flush syncs now and returns once every batch enqueued before it is done.
func (y *syncer) flush() {
	ch := make(chan struct{})
	y.mu.Lock()
	y.flushes = append(y.flushes, ch)
	y.mu.Unlock()
	y.wake()
	select {
	case <-ch:
	case <-y.done:
	}
}

// run is the loop; stop ends it after a last sync.
func (y *syncer) run() {
	defer close(y.done)
	s := y.s
	var timer *time.Timer
	timerC := func() <-chan time.Time {
		if timer == nil {
			return nil
		}
		return timer.C
	}
	arm := func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
	}
	lastSync, lastState := time.Time{}, time.Now()
	stopping := false
	for {
		y.mu.Lock()
		queued, flushes, dirty, since := len(y.queue), len(y.flushes), y.dirty, y.since
		y.mu.Unlock()
		syncNow := flushes > 0 || stopping ||
			queued > 0 && (queued >= syncGatherMax || time.Since(since) >= syncGather) ||
			(!y.always && dirty && time.Since(lastSync) >= y.interval)
		if syncNow {
			y.syncOnce()
			lastSync = time.Now()
		}
		if stopping {
			s.writeStateNow(true)
			return
		}
		if s.stateChanged() && time.Since(lastState) >= stateEvery {
			s.writeStateNow(false)
			lastState = time.Now()
		}
		y.mu.Lock()
		more := len(y.flushes) > 0 || len(y.queue) >= syncGatherMax
		queued, dirty, since = len(y.queue), y.dirty, y.since
		y.mu.Unlock()
		if more {
			continue
		}
		// Sleep until woken, or until the gathering wait, the next
		// interval sync or the state write is due.
		var wait time.Duration
		if queued > 0 {
			wait = max(time.Microsecond, syncGather-time.Since(since))
		}
		if !y.always && dirty {
			w := max(time.Millisecond, y.interval-time.Since(lastSync))
			if wait == 0 || w < wait {
				wait = w
			}
		}
		if s.stateChanged() {
			w := max(time.Millisecond, stateEvery-time.Since(lastState))
			if wait == 0 || w < wait {
				wait = w
			}
		}
		if wait > 0 {
			arm(wait)
		}
		select {
		case <-y.kick:
		case <-timerC():
		case <-y.quit:
			stopping = true
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// syncOnce syncs what is written and completes what waited for it.
func (y *syncer) syncOnce() {
	s := y.s
	y.mu.Lock()
	queue, flushes := y.queue, y.flushes
	y.queue, y.flushes, y.dirty = nil, nil, false
	y.mu.Unlock()
	upTo := s.seg.next.Load() - 1
	s.marksMu.Lock()
	snap := make(map[markKey]uint64, len(s.marks))
	for k, m := range s.marks {
		snap[k] = m.written
	}
	s.marksMu.Unlock()
	if err := s.seg.syncFiles(); err != nil {
		// The records are written; whether the disk has them is not
		// known. Said and counted, not hidden.
		s.storeFailed(err)
	} else {
		s.marksMu.Lock()
		for k, v := range snap {
			if m := s.marks[k]; m != nil {
				m.synced = max(m.synced, v)
			}
		}
		if upTo > s.synced {
			s.synced = upTo
		}
		s.marksMu.Unlock()
	}
	for _, pb := range queue {
		pb.done(&pb.batch, nil)
		clear(pb.batch.Events)
		clear(pb.batch.Losses)
		pb.done = nil
	}
	y.mu.Lock()
	y.spare = append(y.spare, queue...)
	y.mu.Unlock()
	for _, ch := range flushes {
		close(ch)
	}
}

// stop syncs a last time, writes the state (synced) and ends the loop.
func (y *syncer) stop() {
	close(y.quit)
	<-y.done
}
