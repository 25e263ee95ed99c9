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
	"unsafe"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go/jetstream"
)

// consumerName is SPOOL's durable consumer, the forwarder's.
const consumerName = "forward"

// forwarder moves SPOOL's packs to the hub, unpacked, in order,
// acknowledging them locally once the hub has their messages. It is owned
// by its Spool: one goroutine (run) reads SPOOL and submits groups to the
// hub, another (its reader) feeds it; the hub's completions ack them.
// close stops it; what is not acknowledged stays in SPOOL.
type forwarder struct {
	s    *Spool
	st   *store // the store it reads
	hub  sink.Forwarder
	cons jetstream.Consumer
	it   jetstream.MessagesContext

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	inFlight  atomic.Int64  // messages submitted to the hub, not done
	room      chan struct{} // signalled when completions free the window
	forwarded atomic.Uint64 // messages the hub has
	refused   atomic.Uint64 // messages the hub refused for good
	damaged   atomic.Uint64 // packs that did not unpack whole

	// skipSeq and skipIdx: the pack the hub has up to that message of
	// (skipForwarded); its messages up to skipIdx are not forwarded again.
	skipSeq uint64
	skipIdx int

	mu      sync.Mutex
	stalled time.Time // when the hub last stopped taking messages (zero: it takes them)
	lastErr error
}

// newForwarder skips, with a JetStream hub, what the hub already stores
// of this spool, (re)creates the durable consumer from the first message
// left, and starts forwarding.
func newForwarder(ctx context.Context, s *Spool, st *store, hub sink.Forwarder, hubStream jetstream.Stream) (*forwarder, error) {
	skipSeq, skipIdx, err := s.skipForwarded(ctx, st, hubStream)
	if err != nil {
		s.log.Warn("cannot tell what the hub already stores of the spool; forwarding all of it (the hub's duplicate window drops repeats)", "err", err)
	}
	// A fresh consumer: what an earlier run had delivered and not
	// acknowledged comes again now, not after an ack wait.
	if err := st.stream.DeleteConsumer(ctx, consumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("spool: reset consumer: %w", err)
	}
	cons, err := st.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerName,
		AckPolicy:     jetstream.AckExplicitPolicy, // a work queue's: each pack is acknowledged
		AckWait:       time.Hour,                   // the forwarder acks once the hub has; an outage is no reason to deliver again
		MaxDeliver:    -1,
		MaxAckPending: 2 * s.cfg.Window,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Its state is rebuilt from SPOOL at every start (acknowledged
		// packs are gone from a work queue): nothing of it on disk, so it
		// can be made on a full one.
		MemoryStorage: true,
	})
	if err != nil {
		return nil, fmt.Errorf("spool: consumer: %w", err)
	}
	f := &forwarder{s: s, st: st, hub: hub, cons: cons, done: make(chan struct{}), room: make(chan struct{}, 1), skipSeq: skipSeq, skipIdx: skipIdx}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// A pack holds up to a batch's bytes: the pull is bounded in bytes.
	if f.it, err = cons.Messages(jetstream.PullMaxBytes(4 << 20)); err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	go f.run()
	return f, nil
}

// skipForwarded asks the hub's stream for the last message this node's
// filters match; when it came from this spool (its tag says so), the packs
// before its pack are stored there, and are purged here, and the messages
// of its pack up to it are too: it returns that pack's sequence and the
// message's index in it (0, -1: nothing to skip).
func (s *Spool) skipForwarded(ctx context.Context, st *store, hubStream jetstream.Stream) (uint64, int, error) {
	if hubStream == nil {
		return 0, -1, nil
	}
	var seq uint64
	idx := -1
	for _, f := range s.cfg.ResumeFilters {
		m, err := hubStream.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, -1, err
		}
		inc, q, i, ok := parseTag(m.Header.Get(sink.TagHeader))
		if ok && inc == s.incarnation && (q > seq || q == seq && i > idx) {
			seq, idx = q, i
		}
	}
	if seq == 0 {
		return 0, -1, nil
	}
	if err := st.stream.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		return 0, -1, fmt.Errorf("purge what the hub stores: %w", err)
	}
	s.log.Info("the hub already stores the spool up to here; forwarding what follows", "spool_seq", seq, "message", idx)
	return seq, idx, nil
}

// parseTag reads a forwarded message's tag: "<incarnation>:<pack's
// sequence in SPOOL>:<index in the pack>".
func parseTag(v string) (incarnation string, seq uint64, idx int, ok bool) {
	inc, rest, found := strings.Cut(v, ":")
	q, i, found2 := strings.Cut(rest, ":")
	if !found || !found2 {
		return "", 0, 0, false
	}
	n, err1 := strconv.ParseUint(q, 10, 64)
	k, err2 := strconv.Atoi(i)
	if err1 != nil || err2 != nil || k < 0 {
		return "", 0, 0, false
	}
	return inc, n, k, true
}

// group is what one Forward call carries: the messages of whole packs,
// and the packs' local messages, acknowledged once the hub has the group.
type group struct {
	packs  []jetstream.Msg
	msgs   []sink.Msg
	packOf []int // the pack of each message, an index into packs
	tags   []byte
	tagEnd []int
}

// maxGroup bounds the messages of one Forward call.
const maxGroup = 4096

// run reads SPOOL and forwards what it reads: as much as is there at once,
// in one group, so that a backlog goes in large groups and a live event at
// once.
func (f *forwarder) run() {
	defer close(f.done)
	next := make(chan jetstream.Msg, 8)
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
		f.add(g, m)
	more:
		for len(g.msgs) < maxGroup && f.inFlight.Load()+int64(len(g.msgs)) < window {
			select {
			case m, ok := <-next:
				if !ok {
					break more
				}
				f.add(g, m)
			default:
				break more
			}
		}
		g.seal()
		f.inFlight.Add(int64(len(g.msgs)))
		// Even a group left empty (skipped, damaged) goes through the hub
		// sink, which reports it done in its turn.
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

// add unpacks a pack into the group, leaving out what the hub already
// has (its messages up to skipIdx, for the pack skipForwarded found). A
// pack damaged past some point gives the messages before the damage; it
// is counted, and logged with its place.
func (f *forwarder) add(g *group, m jetstream.Msg) {
	p := len(g.packs)
	g.packs = append(g.packs, m)
	md, err := m.Metadata()
	if err != nil {
		f.damaged.Add(1)
		f.s.log.Error("spool: a message without its metadata; dropped", "subject", m.Subject(), "err", err)
		return
	}
	seq := md.Sequence.Stream
	skip := -1
	if seq == f.skipSeq {
		skip = f.skipIdx
	}
	n, err := sink.Unpack(m.Data(), func(i int, subject, id, data []byte) bool {
		if i <= skip {
			return true
		}
		g.tags = append(g.tags, f.s.incarnation...)
		g.tags = append(g.tags, ':')
		g.tags = strconv.AppendUint(g.tags, seq, 10)
		g.tags = append(g.tags, ':')
		g.tags = strconv.AppendInt(g.tags, int64(i), 10)
		g.tagEnd = append(g.tagEnd, len(g.tags))
		g.msgs = append(g.msgs, sink.Msg{Subject: unsafe.String(unsafe.SliceData(subject), len(subject)),
			ID: unsafe.String(unsafe.SliceData(id), len(id)), Data: data})
		g.packOf = append(g.packOf, p)
		return true
	})
	if err != nil {
		f.damaged.Add(1)
		f.s.log.Error("spool: a damaged pack; what follows the damage is dropped", "spool_seq", seq, "messages_before_it", n, "err", err)
	}
}

// seal sets the messages' tags once every pack is added (the tags' bytes
// no longer move).
func (g *group) seal() {
	start := 0
	for i, end := range g.tagEnd {
		t := g.tags[start:end]
		g.msgs[i].Tag = unsafe.String(unsafe.SliceData(t), len(t))
		start = end
	}
}

// groupDone acknowledges locally what the hub has. What the hub sink gave
// up on because the forwarder stops stays in SPOOL: only the packs before
// the first such message are acknowledged (the next run forwards the rest;
// the hub drops what it has). What the hub refuses for good (a message too
// large for it, a permanent error) is counted, logged, and dropped with
// the group.
func (f *forwarder) groupDone(g *group, failed []int, err error) {
	ackUpTo := len(g.packs) - 1
	if len(failed) > 0 {
		if f.ctx.Err() != nil {
			ackUpTo = g.packOf[failed[0]] - 1
		} else {
			f.refused.Add(uint64(len(failed)))
			m := &g.msgs[failed[0]]
			f.s.log.Error("spool: the fleet's server refuses messages for good; they are dropped from the spool and counted (genlbridge_spool_refused_total)",
				"messages", len(failed), "first_subject", m.Subject, "first_id", m.ID, "err", err)
		}
	}
	for _, p := range g.packs[:ackUpTo+1] {
		if aerr := p.Ack(); aerr != nil && f.ctx.Err() == nil {
			f.s.log.Warn("spool: acknowledging a forwarded pack", "err", aerr)
		}
	}
	f.forwarded.Add(uint64(len(g.msgs) - len(failed)))
	f.inFlight.Add(-int64(len(g.msgs)))
	select {
	case f.room <- struct{}{}:
	default:
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
