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

	gaveUp        atomic.Bool   // logged the first failure past the deadline
	fullLogged    atomic.Bool   // logged that the spool is full
	deniedLogged  atomic.Int64  // when the last refusal for permissions was logged (ns)
	delivered     atomic.Uint64 // events the sink delivered
	lossDelivered atomic.Uint64 // loss records the sink delivered
	lossFailed    atomic.Uint64 // loss records the sink gave up on
	batches       atomic.Uint64
	// observe, if set, is called after each Deliver with the batch and how long it took.
	observe func(b *sink.Batch, took time.Duration, err error)
}

// lingerSlices and minLingerSlice set how often a lingering batch looks at
// the queue: five times in its linger, at most every 100 µs. A batch that
// fills up goes at most a slice late.
//
// A reader whose read found the socket nearly empty pauses a slice of the
// linger too (at most maxReadPause), so that at low rates it reads several
// events a wake-up.
const (
	lingerSlices   = 5
	minLingerSlice = 100 * time.Microsecond
	maxReadPause   = 5 * time.Millisecond
)

// estimateSize is a cheap upper-bound guess of an event's encoded size.
func estimateSize(e *event.Event) int {
	n := 320 + len(e.Host) + len(e.Family) + len(e.Group) + len(e.Msg)
	for i := range e.Attrs {
		n += 24 + (len(e.Attrs[i].Data)+2)/3*4
	}
	return n
}

// pipelined is a sink that keeps a window of batches in flight
// (sink.JetStream): Submit returns once it has copied the batch, and done
// reports the batch delivered, in submission order, from the sink's
// goroutines; Flush waits for them all and gives up at its context's end.
type pipelined interface {
	Submit(ctx context.Context, b *sink.Batch, done func(*sink.Batch, error))
	Flush(ctx context.Context) error
}

// run consumes the queue until it is closed and empty. Deliveries use
// deliverCtx, which the owner cancels when the shutdown deadline passes; from
// then on every remaining event is counted as publish_failed. With a
// pipelined sink, run returns once every batch it submitted is done.
func (b *batcher) run(deliverCtx context.Context) {
	// Loss records still waiting when it returns, after the last
	// completions (the spool had no room for them to the end), are counted
	// as failed; their events are counted already.
	defer func() { b.lossFailed.Add(uint64(b.ledger.abandon())) }()
	if p, ok := b.sink.(pipelined); ok {
		defer func() { _ = p.Flush(deliverCtx) }()
	}
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
		// linger time. What is queued is taken without waiting; when the
		// queue is empty the batcher sleeps a slice of the linger rather
		// than wait on the queue, so that a reader's push does not wake it
		// for each event (at 10k events/s that was 10k wake-ups a second,
		// most of the bridge's CPU).
		if open && len(batch.Events) > 0 {
			deadline := time.Now().Add(b.linger)
			tick := max(b.linger/lingerSlices, minLingerSlice)
		fill:
			for len(batch.Events) < b.maxEvents && size < b.maxBytes {
				select {
				case e, ok := <-b.q.ch:
					if !ok {
						open = false
						break fill
					}
					batch.Events = append(batch.Events, e)
					size += estimateSize(&batch.Events[len(batch.Events)-1])
					continue
				default:
				}
				left := time.Until(deadline)
				if left <= 0 {
					break
				}
				timer.Reset(min(left, tick))
				<-timer.C
			}
		}
		b.flush(deliverCtx, batch)
	}
	// Loss records noted while draining.
	b.flush(deliverCtx, batch)
}

// flush delivers the batch with the pending loss records in front, accounts
// for the result and empties the batch for reuse. A pipelined sink takes a
// copy and reports the result later (account, from its goroutine).
func (b *batcher) flush(ctx context.Context, batch *sink.Batch) {
	batch.Losses = b.ledger.take(batch.Losses[:0])
	if batch.Len() == 0 {
		return
	}
	start := time.Now()
	if p, ok := b.sink.(pipelined); ok {
		p.Submit(ctx, batch, func(done *sink.Batch, err error) { b.account(ctx, done, time.Since(start), err) })
	} else {
		err := b.sink.Deliver(ctx, batch)
		b.account(ctx, batch, time.Since(start), err)
	}
	clear(batch.Events)
	batch.Events = batch.Events[:0]
	clear(batch.Losses)
	batch.Losses = batch.Losses[:0]
}

// account counts a delivered batch's records, and the loss of those the
// sink gave up on: publish_failed, or spool_full when the node's spool
// refused them for want of room (loss records it refused wait for room).
// It may run on a sink's goroutine, concurrently with the batcher's.
func (b *batcher) account(ctx context.Context, batch *sink.Batch, took time.Duration, err error) {
	if b.observe != nil {
		b.observe(batch, took, err)
	}
	b.batches.Add(1)
	failedEvents, failedLosses, requeued := 0, 0, 0
	if err != nil {
		var de *sink.DeliveryError
		if !errors.As(err, &de) {
			de = sink.AllUndelivered(batch, err)
		}
		failedEvents, failedLosses = len(de.UndeliveredEvents), len(de.UndeliveredLosses)
		reason := event.ReasonPublishFailed
		full := errors.Is(err, sink.ErrSpoolFull)
		switch {
		case full:
			reason = event.ReasonSpoolFull
		case errors.Is(err, sink.ErrPermissionDenied):
			reason = event.ReasonPublishDenied
		}
		now := time.Now().UnixNano()
		for _, i := range de.UndeliveredEvents {
			// Published later if the sink recovers; counted now either way.
			b.ledger.add(event.LossOf(&batch.Events[i], reason, now), ctx.Err() == nil)
		}
		if full && ctx.Err() == nil {
			// Loss records the spool had no room for are not lost: they
			// go with a later batch, once the forwarder has made room.
			for _, i := range de.UndeliveredLosses {
				b.ledger.requeue(batch.Losses[i])
			}
			requeued, failedLosses = failedLosses, 0
		} else {
			b.lossFailed.Add(uint64(failedLosses))
		}
		switch {
		case full:
			if !b.fullLogged.Swap(true) {
				b.log.Warn("the spool is full: new events are counted as spool_full until the forwarder makes room", "err", err)
			}
		case errors.Is(err, sink.ErrPermissionDenied):
			// Every batch fails alike while the identity may not publish:
			// say so once a minute (each is counted; natsconn logs the
			// subjects).
			if now := time.Now().UnixNano(); now-b.deniedLogged.Load() >= int64(time.Minute) {
				b.deniedLogged.Store(now)
				b.log.Error("the server refuses the records for permissions; they are counted as publish_denied (logged once a minute)",
					"events", failedEvents, "loss_records", failedLosses, "err", err)
			}
		case ctx.Err() == nil || !b.gaveUp.Load():
			// Past the deadline every batch fails: say so once; Run logs the totals.
			b.log.Error("sink gave up on records", "events", failedEvents, "loss_records", failedLosses, "err", err)
			b.gaveUp.Store(ctx.Err() != nil)
		}
	} else if b.fullLogged.Load() && len(batch.Events) > 0 {
		if b.fullLogged.Swap(false) {
			b.log.Info("the spool has room again")
		}
	}
	b.delivered.Add(uint64(len(batch.Events) - failedEvents))
	b.lossDelivered.Add(uint64(len(batch.Losses) - failedLosses - requeued))
}
