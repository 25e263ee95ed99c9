package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

// Queue policies: what a reader does when the queue is full.
const (
	// PolicyBlock stops reading until there is room; the socket's receive
	// buffer absorbs the burst and overruns beyond it are counted.
	PolicyBlock = "block"
	// PolicyDropNewest drops the event that did not fit.
	PolicyDropNewest = "drop-newest"
	// PolicyDropOldest drops the oldest queued event to make room.
	PolicyDropOldest = "drop-oldest"
)

// Policies lists the queue policies.
var Policies = []string{PolicyBlock, PolicyDropNewest, PolicyDropOldest}

// queue is the bounded queue between the readers (many senders) and the
// batcher (one receiver). Its owner closes it once every reader has returned.
type queue struct {
	ch     chan event.Event
	policy string
	ledger *ledger
	now    func() int64
}

func newQueue(size int, policy string, l *ledger) (*queue, error) {
	switch policy {
	case PolicyBlock, PolicyDropNewest, PolicyDropOldest:
	default:
		return nil, fmt.Errorf("queue policy %q: want one of %v", policy, Policies)
	}
	if size < 1 {
		return nil, fmt.Errorf("queue size %d: want at least 1", size)
	}
	return &queue{ch: make(chan event.Event, size), policy: policy, ledger: l, now: func() int64 { return time.Now().UnixNano() }}, nil
}

// push puts e on the queue following the policy. It returns false only when
// ctx ended while it was blocked; e is then not queued and the caller owns it.
func (q *queue) push(ctx context.Context, e *event.Event) bool {
	select {
	case q.ch <- *e:
		return true
	default:
	}
	switch q.policy {
	case PolicyDropNewest:
		q.dropped(e)
		return true
	case PolicyDropOldest:
		for {
			select {
			case old := <-q.ch:
				q.dropped(&old)
			default:
			}
			select {
			case q.ch <- *e:
				return true
			default:
			}
		}
	default:
		select {
		case q.ch <- *e:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

func (q *queue) dropped(e *event.Event) {
	q.ledger.add(event.LossOf(e, event.ReasonQueueFull, q.now()), true)
}

// depth is the number of queued events.
func (q *queue) depth() int { return len(q.ch) }
