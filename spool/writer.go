package spool

import (
	"context"
	"errors"
	"fmt"

	"github.com/genlbridge/genlbridge/sink"
)

// errStoreDown is the error of the batches a failed store refuses: the
// bridge counts their events as spool_full.
var errStoreDown = fmt.Errorf("%w: its store failed (a full disk, an I/O error)", sink.ErrSpoolFull)

// Writer is the sink the bridge delivers to: the current store's sink into
// SPOOL. While the store has failed it refuses every batch at once with
// sink.ErrSpoolFull, and what the failed store held in flight comes back
// with that error too; a store that works again takes batches again.
//
// Its methods follow sink.Sink and the batcher's pipelined sink: Submit and
// Deliver from one goroutine at a time; done runs on a sink goroutine.
type Writer struct{ s *Spool }

// Submit hands b to the current store's sink, or refuses it while the
// store has failed.
func (w *Writer) Submit(ctx context.Context, b *sink.Batch, done func(*sink.Batch, error)) {
	st := w.s.current()
	if st == nil || w.s.broken.Load() {
		done(b, sink.AllUndelivered(b, errStoreDown))
		return
	}
	st.sink.Submit(ctx, b, func(b *sink.Batch, err error) { done(b, w.s.storeErr(err)) })
}

// Deliver is Submit, waiting for the result.
func (w *Writer) Deliver(ctx context.Context, b *sink.Batch) error {
	st := w.s.current()
	if st == nil || w.s.broken.Load() {
		return sink.AllUndelivered(b, errStoreDown)
	}
	return w.s.storeErr(st.sink.Deliver(ctx, b))
}

// Flush waits for what the current store's sink holds (see
// sink.JetStream.Flush).
func (w *Writer) Flush(ctx context.Context) error {
	if st := w.s.current(); st != nil {
		return st.sink.Flush(ctx)
	}
	return nil
}

// Close does nothing: the Spool closes its stores.
func (w *Writer) Close(context.Context) error { return nil }

// storeErr turns a failure while the store is down into the store's error
// (the records are counted as spool_full, not publish_failed).
func (s *Spool) storeErr(err error) error {
	if err == nil || !s.broken.Load() || errors.Is(err, sink.ErrSpoolFull) {
		return err
	}
	var de *sink.DeliveryError
	if errors.As(err, &de) {
		c := *de
		c.Err = fmt.Errorf("%w (%v)", errStoreDown, de.Err)
		return &c
	}
	return fmt.Errorf("%w (%v)", errStoreDown, err)
}
