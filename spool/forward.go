package spool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumerName is SPOOL's durable consumer, the forwarder's.
const consumerName = "forward"

// forwarder moves SPOOL's messages to the hub, in order, acknowledging each
// locally once the hub has it. It is owned by its Spool: one goroutine
// (run) reads SPOOL and submits groups to the hub; the hub's completions
// ack them. close stops it; what is not acknowledged stays in SPOOL.
type forwarder struct {
	s    *Spool
	hub  sink.Forwarder
	cons jetstream.Consumer
	it   jetstream.MessagesContext

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	inFlight  atomic.Int64  // messages submitted to the hub, not done
	room      chan struct{} // signalled when completions free the window
	forwarded atomic.Uint64

	mu      sync.Mutex
	stalled time.Time // when the hub last stopped taking messages (zero: it takes them)
	lastErr error
}

// newForwarder skips, with a JetStream hub, what the hub already stores
// of this spool, (re)creates the durable consumer from the first message
// left, and starts forwarding.
func newForwarder(ctx context.Context, s *Spool, hub sink.Forwarder, hubStream jetstream.Stream) (*forwarder, error) {
	if err := s.skipForwarded(ctx, hubStream); err != nil {
		s.log.Warn("cannot tell what the hub already stores of the spool; forwarding all of it (the hub's duplicate window drops repeats)", "err", err)
	}
	// A fresh consumer: what an earlier run had delivered and not
	// acknowledged comes again now, not after an ack wait.
	if err := s.stream.DeleteConsumer(ctx, consumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("spool: reset consumer: %w", err)
	}
	cons, err := s.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Hour, // the forwarder acks once the hub has; an outage is no reason to deliver again
		MaxDeliver:    -1,
		MaxAckPending: 2 * s.cfg.Window,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("spool: consumer: %w", err)
	}
	f := &forwarder{s: s, hub: hub, cons: cons, done: make(chan struct{}), room: make(chan struct{}, 1)}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	if f.it, err = cons.Messages(jetstream.PullMaxMessages(min(1024, s.cfg.Window))); err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	go f.run()
	go f.watch()
	return f, nil
}

// watchEvery is how often watch looks: the logs say within it when
// forwarding stops or resumes (/readyz and the metrics say it at once).
const watchEvery = 5 * time.Second

// watch looks, every watchEvery, at whether forwarding works and whether
// the local store still runs, and logs the changes.
func (f *forwarder) watch() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	jsDown := false
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		f.stalledSince()
		if up := f.s.srv.JetStreamEnabled(); up == jsDown {
			jsDown = !up
			if jsDown {
				f.s.storeError("the spool's JetStream is disabled (its store failed: a full disk?)")
				f.s.log.Error("the spool's store stopped (a full disk?): new events are counted as spool_full until it works again")
			} else {
				f.s.log.Info("the spool's store works again")
			}
		}
	}
}

// skipForwarded asks the hub's stream for the last message this node's
// filters match; when it came from this spool, every message of SPOOL up
// to its sequence is stored there, and is purged here.
func (s *Spool) skipForwarded(ctx context.Context, hubStream jetstream.Stream) error {
	if hubStream == nil {
		return nil
	}
	var upto uint64
	for _, f := range s.cfg.ResumeFilters {
		m, err := hubStream.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		inc, seq, ok := parseHeader(m.Header.Get(Header))
		if ok && inc == s.incarnation {
			upto = max(upto, seq)
		}
	}
	if upto == 0 {
		return nil
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSequence(upto+1)); err != nil {
		return fmt.Errorf("purge what the hub stores: %w", err)
	}
	s.log.Info("the hub already stores the spool up to here; forwarding from the next", "spool_seq", upto)
	return nil
}

func parseHeader(v string) (incarnation string, seq uint64, ok bool) {
	inc, s, found := strings.Cut(v, ":")
	if !found {
		return "", 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return inc, n, err == nil
}

// group is what one Forward call carries: the local messages to ack.
type group struct {
	local []jetstream.Msg
	msgs  []sink.Msg
}

// run reads SPOOL and forwards what it reads: as much as is there at once,
// in one group, so that a backlog goes in large groups and a live event at
// once.
func (f *forwarder) run() {
	defer close(f.done)
	next := make(chan jetstream.Msg, 1024)
	go func() {
		defer close(next)
		for {
			m, err := f.it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || f.ctx.Err() != nil {
					return
				}
				f.s.log.Warn("spool: reading the stream", "err", err)
				select {
				case <-f.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			select {
			case next <- m:
			case <-f.ctx.Done():
				return
			}
		}
	}()
	window := int64(f.s.cfg.Window)
	for {
		m, ok := <-next
		if !ok {
			return
		}
		g := &group{}
		g.add(f.s.incarnation, m)
	more:
		for len(g.local) < 1024 && f.inFlight.Load()+int64(len(g.local)) < window {
			select {
			case m, ok := <-next:
				if !ok {
					break more
				}
				g.add(f.s.incarnation, m)
			default:
				break more
			}
		}
		f.inFlight.Add(int64(len(g.local)))
		f.hub.Forward(f.ctx, g.msgs, func(failed []int, err error) { f.groupDone(g, failed, err) })
		if f.ctx.Err() != nil {
			return
		}
		// The hub's completions free the window; wait for room.
		for f.inFlight.Load() >= window {
			select {
			case <-f.room:
			case <-f.ctx.Done():
				return
			}
		}
	}
}

func (g *group) add(incarnation string, m jetstream.Msg) {
	g.local = append(g.local, m)
	h := nats.Header{}
	for k, v := range m.Headers() {
		h[k] = v
	}
	if md, err := m.Metadata(); err == nil {
		h.Set(Header, incarnation+":"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	g.msgs = append(g.msgs, sink.Msg{Subject: m.Subject(), Header: h, Data: m.Data()})
}

// groupDone acknowledges locally what the hub has; what it gave up on (only
// when the forwarder stops) stays in SPOOL.
func (f *forwarder) groupDone(g *group, failed []int, err error) {
	skip := map[int]bool{}
	for _, i := range failed {
		skip[i] = true
	}
	for i, m := range g.local {
		if !skip[i] {
			_ = m.Ack()
		}
	}
	f.forwarded.Add(uint64(len(g.local) - len(failed)))
	f.inFlight.Add(-int64(len(g.local)))
	select {
	case f.room <- struct{}{}:
	default:
	}
	if err != nil && f.ctx.Err() == nil {
		// A message the hub refuses for good (too large for it): it
		// cannot go; it stays spooled and is logged.
		f.s.log.Error("spool: the hub refuses messages for good; they stay in the spool", "messages", len(failed), "err", err)
	}
}

// stalledSince says since when forwarding fails (zero: it does not), as
// the hub sink says it.
func (f *forwarder) stalledSince() time.Time {
	failing := false
	switch h := f.hub.(type) {
	case *sink.JetStream:
		failing = h.Stats().Stalled
	case *sink.NATS:
		failing = h.Failing()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case failing && f.stalled.IsZero():
		f.stalled = time.Now()
		f.s.log.Warn("spool: forwarding stalled; events are kept in the spool")
	case !failing && !f.stalled.IsZero():
		f.s.log.Info("spool: forwarding again", "stalled_for", time.Since(f.stalled).Round(time.Millisecond))
		f.stalled = time.Time{}
	}
	return f.stalled
}

// close stops reading and forwarding; groups submitted and not done are
// given up on by the hub sink's own Close.
func (f *forwarder) close() error {
	f.cancel()
	f.it.Stop()
	<-f.done
	return nil
}
