// Package sink delivers batches of events and loss records to where they go:
// core NATS subjects, a JetStream stream, or standard output for debugging.
//
// A Sink is driven by one goroutine at a time (the bridge's batcher): Deliver
// is not called concurrently with itself, and Close is called once, after the
// last Deliver has returned. A Batch belongs to the sink for the duration of
// Deliver and must not be kept after it returns.
//
// Deliver owns the delivery of the whole batch: it retries transient failures
// with backoff for as long as its context allows (blocking the caller is how
// backpressure reaches the bridge's queue) and never drops an event silently.
// When it gives up it returns a *DeliveryError that says exactly which records
// were not delivered, so the caller can count them.
package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
)

// Batch is what the bridge hands to a sink in one call.
type Batch struct {
	// Losses come first: they describe holes before or among the events.
	Losses []event.Loss
	Events []event.Event
}

// Len is the number of records in the batch.
func (b *Batch) Len() int { return len(b.Losses) + len(b.Events) }

// Sink delivers batches. See the package documentation for the contract.
type Sink interface {
	// Deliver delivers every record of b before it returns nil. On failure it
	// returns a *DeliveryError (possibly wrapping ctx.Err()).
	Deliver(ctx context.Context, b *Batch) error
	// Close flushes what is buffered, within ctx, and releases the sink's
	// resources. Every Deliver has returned by then, so nothing of a batch
	// is left to count; an error says the final flush failed.
	Close(ctx context.Context) error
}

// DeliveryError reports the records a sink gave up on.
type DeliveryError struct {
	// UndeliveredEvents are indexes into Batch.Events.
	UndeliveredEvents []int
	// UndeliveredLosses are indexes into Batch.Losses.
	UndeliveredLosses []int
	// Err is the last error seen.
	Err error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("%d events and %d loss records not delivered: %v", len(e.UndeliveredEvents), len(e.UndeliveredLosses), e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// AllUndelivered builds a DeliveryError that names every record of b.
func AllUndelivered(b *Batch, err error) *DeliveryError {
	de := &DeliveryError{Err: err, UndeliveredEvents: make([]int, len(b.Events)), UndeliveredLosses: make([]int, len(b.Losses))}
	for i := range de.UndeliveredEvents {
		de.UndeliveredEvents[i] = i
	}
	for i := range de.UndeliveredLosses {
		de.UndeliveredLosses[i] = i
	}
	return de
}

// Backoff is a capped exponential retry delay.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next delay and doubles the following one, up to Max.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	}
	d := b.cur
	b.cur *= 2
	if b.cur > b.Max {
		b.cur = b.Max
	}
	return d
}

// Reset starts over at Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits for the next delay or until ctx is done, returning ctx.Err() then.
func (b *Backoff) Sleep(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent says whether a publish error will repeat however often the
// message is published again: it is too big for the server, or its subject
// is invalid. Such a message is given up on at once.
func permanent(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject)
}

// closedForGood says whether nc will never deliver again: the client closed
// it (e.g. after repeated authorization errors). Deliver then gives up at
// once instead of retrying until its deadline. The error values do not
// tell: a flush cut short by a mere disconnect also returns
// nats.ErrConnectionClosed.
func closedForGood(nc *nats.Conn) bool { return nc.IsClosed() }

// Msg is a message prepared elsewhere (read back from the spool):
// published as it is, with its Nats-Msg-Id. The bytes (and strings) belong
// to the caller until Forward's done.
type Msg struct {
	Subject string
	// Hdr is the message's whole header block (its Nats-Msg-Id, which
	// MsgIDOf reads, and the ce- headers), as the Encoder wrote it.
	Hdr  []byte
	Data []byte
}

// Forwarder publishes prepared messages to the fleet's server: the
// JetStream sink (a window of acknowledged publishes) or the core NATS sink
// (published and confirmed by a flush). done is called once per call, in
// call order, when every message is delivered or given up on: refused are
// the indexes of messages refused for good (too large for the server, a
// subject it rejects, an error reply the sink takes as final), unsent
// those given up on for another reason (the sink closed, ctx ended, the
// connection closed for good), which were not delivered and may be sent
// again later; err says why the last of them failed. Forward may block
// while the sink has no room.
type Forwarder interface {
	Forward(ctx context.Context, msgs []Msg, done func(refused, unsent []int, err error))
}

// ErrSpoolFull is the error of records the node's spool refused for want
// of room (its byte limit, or its disk): the bridge counts their events as
// spool_full.
var ErrSpoolFull = errors.New("the spool is full")

// ErrClosed is returned by Deliver after Close.
var ErrClosed = errors.New("sink closed")

// ErrPermissionDenied is the error of messages the server refused for
// permissions (the identity may not publish on their subject): given up on
// at once, their events counted as publish_denied.
var ErrPermissionDenied = errors.New("the server refused the publish for permissions")

// Denier is a sink that can hear of the server's permission denials (from
// natsconn.Denials): it gives up at once on what it published, or
// publishes, on that subject.
type Denier interface {
	Denied(subject string)
}
