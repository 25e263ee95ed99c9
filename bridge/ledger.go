package bridge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

// maxPendingLosses bounds the loss records waiting for the sink (ranges
// that do not touch; touching ones merge, whatever order they come in).
// Past it, a record of a key that has ranges pending merges into its
// count-only record and loses its range: the counts stay exact. With the
// ranges of a key merging whenever they touch, a long spool_full (one
// range a subscription) stays far below it.
const maxPendingLosses = 1 << 16

// ledger counts every lost event by reason and keeps the loss records that
// have not been handed to the sink yet. Loss records never wait for queue
// space: the batcher takes them at each batch it cuts, so a full queue cannot
// hide its own drops. Safe for concurrent use.
type ledger struct {
	counts [len(reasonIndex)]atomic.Uint64

	mu       sync.Mutex
	pending  pendingLosses
	lastTime int64 // TimeNS of the last record queued
	// notify has room for one wake-up: the batcher cuts a batch for losses
	// even when no event follows them.
	notify chan struct{}
	// retryArmed: a wake-up for requeued records is scheduled.
	retryArmed atomic.Bool
}

var reasonIndex = [...]string{event.ReasonOverrun, event.ReasonSeqGap, event.ReasonQueueFull,
	event.ReasonSenderRejected, event.ReasonMalformed, event.ReasonPublishFailed, event.ReasonPublishDenied, event.ReasonSpoolFull}

func newLedger() *ledger { return &ledger{notify: make(chan struct{}, 1)} }

func reasonID(r string) int {
	for i, s := range reasonIndex {
		if s == r {
			return i
		}
	}
	panic("bridge: unknown loss reason " + r)
}

// add counts l.Count lost events and queues the record for publishing. With
// publish false it only counts (for records that could not be published).
func (l *ledger) add(rec event.Loss, publish bool) {
	if rec.Count == 0 {
		return
	}
	l.counts[reasonID(rec.Reason)].Add(rec.Count)
	if !publish {
		return
	}
	l.mu.Lock()
	// A record's time is part of its Nats-Msg-Id: keep it unique, so that
	// JetStream cannot take two records for one.
	if rec.TimeNS <= l.lastTime {
		rec.TimeNS = l.lastTime + 1
	}
	l.lastTime = rec.TimeNS
	l.pending.add(rec)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// requeue queues a record again without counting it: the sink could not
// take it yet (the spool was full), and its events are counted already. The
// batcher is woken to try again in requeueRetry, should no event come to
// carry it.
func (l *ledger) requeue(rec event.Loss) {
	l.mu.Lock()
	l.pending.add(rec)
	l.mu.Unlock()
	if l.retryArmed.CompareAndSwap(false, true) {
		time.AfterFunc(requeueRetry, func() {
			l.retryArmed.Store(false)
			select {
			case l.notify <- struct{}{}:
			default:
			}
		})
	}
}

// requeueRetry is how soon requeued loss records are tried again.
const requeueRetry = 500 * time.Millisecond

// take moves the pending records to dst and returns it.
func (l *ledger) take(dst []event.Loss) []event.Loss {
	l.mu.Lock()
	dst = l.pending.take(dst)
	l.mu.Unlock()
	return dst
}

// abandon drops the waiting records and returns how many there were.
func (l *ledger) abandon() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending.take(nil))
}

// waiting returns how many records wait for the sink (not yet in a batch).
func (l *ledger) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending.n
}

// count returns how many events were lost for reason.
func (l *ledger) count(reason string) uint64 { return l.counts[reasonID(reason)].Load() }

// countsByReason returns every reason's count.
func (l *ledger) countsByReason() map[string]uint64 {
	m := make(map[string]uint64, len(reasonIndex))
	for i, r := range reasonIndex {
		m[r] = l.counts[i].Load()
	}
	return m
}
