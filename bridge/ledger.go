package bridge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

// maxPendingLosses bounds the loss records waiting for the sink; past it,
// records of the same subscription and reason merge and lose their range.
const maxPendingLosses = 4096

// ledger counts every lost event by reason and keeps the loss records that
// have not been handed to the sink yet. Loss records never wait for queue
// space: the batcher takes them at each batch it cuts, so a full queue cannot
// hide its own drops. Safe for concurrent use.
type ledger struct {
	counts [len(reasonIndex)]atomic.Uint64

	mu       sync.Mutex
	pending  []event.Loss
	lastTime int64 // TimeNS of the last record queued
	// notify has room for one wake-up: the batcher cuts a batch for losses
	// even when no event follows them.
	notify chan struct{}
	// retryArmed: a wake-up for requeued records is scheduled.
	retryArmed atomic.Bool
}

var reasonIndex = [...]string{event.ReasonOverrun, event.ReasonSeqGap, event.ReasonQueueFull,
	event.ReasonSenderRejected, event.ReasonMalformed, event.ReasonPublishFailed, event.ReasonSpoolFull}

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
	l.pending = mergeLoss(l.pending, rec)
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
	l.pending = mergeLoss(l.pending, rec)
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

func sameKey(a, b *event.Loss) bool {
	return a.Reason == b.Reason && a.Family == b.Family && a.Group == b.Group && a.Instance == b.Instance
}

// mergeLoss appends rec to p, extending the last record instead when rec
// continues its sequence range (or both have none), and merging into any
// record of the same key once p is full.
func mergeLoss(p []event.Loss, rec event.Loss) []event.Loss {
	if n := len(p); n > 0 {
		last := &p[n-1]
		if sameKey(last, &rec) {
			switch {
			case last.LastSeq == 0 && rec.FirstSeq == 0:
				last.Count += rec.Count
				return p
			case last.LastSeq != 0 && rec.FirstSeq == last.LastSeq+1:
				last.Count += rec.Count
				last.LastSeq = rec.LastSeq
				return p
			}
		}
	}
	if len(p) >= maxPendingLosses {
		for i := range p {
			if sameKey(&p[i], &rec) {
				p[i].Count += rec.Count
				p[i].FirstSeq, p[i].LastSeq = 0, 0
				return p
			}
		}
	}
	return append(p, rec)
}

// take moves the pending records to dst and returns it.
func (l *ledger) take(dst []event.Loss) []event.Loss {
	l.mu.Lock()
	dst = append(dst, l.pending...)
	clear(l.pending)
	l.pending = l.pending[:0]
	l.mu.Unlock()
	return dst
}

// abandon drops the waiting records and returns how many there were.
func (l *ledger) abandon() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.pending)
	clear(l.pending)
	l.pending = l.pending[:0]
	return n
}

// waiting returns how many records wait for the sink (not yet in a batch).
func (l *ledger) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
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
