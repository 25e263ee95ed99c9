package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// batcher is the queue's one receiver: it cuts batches by count, bytes and
// linger time, puts pending loss records in front, and hands each batch to the
// sink, waiting for it (which is how backpressure reaches the queue).
type batcher struct {
	q         *queue
	ledger    *ledger
	sink      sink.Sink
	maxEvents int
	maxBytes  int
	linger    time.Duration
	log       *slog.Logger

	gaveUp        bool          // logged the first failure past the deadline
	delivered     atomic.Uint64 // events the sink delivered
	lossDelivered atomic.Uint64 // loss records the sink delivered
	lossFailed    atomic.Uint64 // loss records the sink gave up on
	batches       atomic.Uint64
	// observe, if set, is called after each Deliver with the batch and how long it took.
	observe func(b *sink.Batch, took time.Duration, err error)
}

// estimateSize is a cheap upper-bound guess of an event's encoded size.
func estimateSize(e *event.Event) int {
	n := 320 + len(e.Host) + len(e.Family) + len(e.Group) + len(e.Msg)
	for i := range e.Attrs {
		n += 24 + (len(e.Attrs[i].Data)+2)/3*4
	}
	return n
}

// run consumes the queue until it is closed and empty. Deliveries use
// deliverCtx, which the owner cancels when the shutdown deadline passes; from
// then on every remaining event is counted as publish_failed.
func (b *batcher) run(deliverCtx context.Context) {
	batch := &sink.Batch{Events: make([]event.Event, 0, b.maxEvents)}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	open := true
	for open {
		// Wait for the first event, or for loss records alone.
		select {
		case e, ok := <-b.q.ch:
			if !ok {
				open = false
				break
			}
			batch.Events = append(batch.Events, e)
		case <-b.ledger.notify:
		}
		size := 0
		if len(batch.Events) > 0 {
			size = estimateSize(&batch.Events[0])
		}
		// Fill until the batch is full or the first event has waited the
		// linger time. The non-blocking receive first is the fast path
		// under load (a select with the timer costs twice as much).
		if open && len(batch.Events) > 0 {
			timer.Reset(b.linger)
		fill:
			for len(batch.Events) < b.maxEvents && size < b.maxBytes {
				var e event.Event
				var ok bool
				select {
				case e, ok = <-b.q.ch:
				default:
					select {
					case e, ok = <-b.q.ch:
					case <-timer.C:
						break fill
					}
				}
				if !ok {
					open = false
					break
				}
				batch.Events = append(batch.Events, e)
				size += estimateSize(&e)
			}
			timer.Stop()
		}
		b.flush(deliverCtx, batch)
	}
	// Loss records noted while draining.
	b.flush(deliverCtx, batch)
}

// flush delivers the batch with the pending loss records in front, accounts
// for the result and empties the batch for reuse.
func (b *batcher) flush(ctx context.Context, batch *sink.Batch) {
	batch.Losses = b.ledger.take(batch.Losses[:0])
	if batch.Len() == 0 {
		return
	}
	start := time.Now()
	err := b.sink.Deliver(ctx, batch)
	if b.observe != nil {
		b.observe(batch, time.Since(start), err)
	}
	b.batches.Add(1)
	failedEvents, failedLosses := 0, 0
	if err != nil {
		var de *sink.DeliveryError
		if !errors.As(err, &de) {
			de = sink.AllUndelivered(batch, err)
		}
		failedEvents, failedLosses = len(de.UndeliveredEvents), len(de.UndeliveredLosses)
		now := time.Now().UnixNano()
		for _, i := range de.UndeliveredEvents {
			// Published later if the sink recovers; counted now either way.
			b.ledger.add(event.LossOf(&batch.Events[i], event.ReasonPublishFailed, now), ctx.Err() == nil)
		}
		b.lossFailed.Add(uint64(failedLosses))
		if ctx.Err() == nil || !b.gaveUp {
			// Past the deadline every batch fails: say so once; Run logs the totals.
			b.log.Error("sink gave up on records", "events", failedEvents, "loss_records", failedLosses, "err", err)
			b.gaveUp = ctx.Err() != nil
		}
	}
	b.delivered.Add(uint64(len(batch.Events) - failedEvents))
	b.lossDelivered.Add(uint64(len(batch.Losses) - failedLosses))
	clear(batch.Events)
	batch.Events = batch.Events[:0]
	clear(batch.Losses)
	batch.Losses = batch.Losses[:0]
}
