package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

	inFlight atomic.Int64  // messages submitted to the hub, not done
	room     chan struct{} // signalled when completions free the window

	// skip holds the places of messages the hub has (skipForwarded): they
	// are not forwarded again. Read by run's goroutine only.
	skip map[position]bool

	mu      sync.Mutex
	stalled time.Time // when the hub last stopped taking messages (zero: it takes them)
	lastErr error
}

// newForwarder skips, with a JetStream hub, what the hub already stores
// of this spool, (re)creates the durable consumer from the first message
// left, and starts forwarding.
func newForwarder(ctx context.Context, s *Spool, st *store, hub sink.Forwarder, hubStream jetstream.Stream) (*forwarder, error) {
	skip, err := s.skipForwarded(ctx, st, hubStream)
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		// The hub answers, and refuses (permissions, a consumer limit):
		// asking again would leave the spool filling up for good.
		s.log.Warn("the hub refuses to say what it already stores of the spool; forwarding all of it (what it has past its duplicate window is stored twice)", "err", err)
	case err != nil:
		// Not reachable yet: the start is tried again.
		return nil, fmt.Errorf("spool: what the hub already stores: %w", err)
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
	f := &forwarder{s: s, st: st, hub: hub, cons: cons, done: make(chan struct{}), room: make(chan struct{}, 1), skip: skip}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// The pull is bounded in bytes, and holds the largest pack (the local
	// server's payload limit) twice.
	if f.it, err = cons.Messages(jetstream.PullMaxBytes(2 * int(st.nc.MaxPayload()))); err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	go f.run()
	return f, nil
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
	packs   []jetstream.Msg
	msgs    []sink.Msg
	packOf  []int // the pack of each message, an index into packs
	tags    []byte
	tagEnd  []int
	damaged []damage // packs that did not unpack whole
}

// damage is a pack that did not unpack whole: counted and logged once it
// is acknowledged (dropped), not at every attempt.
type damage struct {
	pack   int    // index into packs
	seq    uint64 // its sequence in SPOOL (0: unknown)
	before int    // messages before the damage
	err    error
}

// maxGroup bounds the messages of one Forward call.
const maxGroup = 4096

// run reads SPOOL and forwards what it reads: as much as is there at once,
// in one group, so that a backlog goes in large groups and a live event at
// once.
func (f *forwarder) run() {
	defer close(f.done)
	next := make(chan jetstream.Msg, 8)
	read := make(chan struct{}) // closed when the reader returns
	defer func() { f.cancel(); <-read }()
	go func() {
		defer close(read)
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
		f.hub.Forward(f.ctx, g.msgs, func(refused, unsent []int, err error) { f.groupDone(g, refused, unsent, err) })
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
// has (skip). A pack damaged past some point gives the messages before the
// damage; groupDone counts it, and logs it with its place.
func (f *forwarder) add(g *group, m jetstream.Msg) {
	p := len(g.packs)
	g.packs = append(g.packs, m)
	md, err := m.Metadata()
	if err != nil {
		g.damaged = append(g.damaged, damage{pack: p, err: fmt.Errorf("no metadata: %w", err)})
		return
	}
	seq := md.Sequence.Stream
	n, err := sink.Unpack(m.Data(), func(i int, subject, id, data []byte) bool {
		if f.skip[position{seq, i}] {
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
		g.damaged = append(g.damaged, damage{pack: p, seq: seq, before: n, err: err})
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

// groupDone acknowledges locally what the hub has: the packs before the
// first message it did not send (given up on because the forwarder or the
// hub sink stops, or its connection closed for good), which stay in SPOOL
// for the next forwarder (the hub drops what it has of them). What it
// refused for good (a message too large for it, a permanent error) cannot
// go: it is dropped with its pack, and counted then, as is a damaged pack;
// what stays in SPOOL is counted when a later forwarder drops it. An
// acknowledgement that fails (the store failing meanwhile) leaves its pack
// spooled, to be sent, and counted, again.
func (f *forwarder) groupDone(g *group, refused, unsent []int, err error) {
	ackUpTo := len(g.packs) - 1
	if len(unsent) > 0 {
		ackUpTo = g.packOf[slices.Min(unsent)] - 1
	}
	dropped, first := 0, -1
	for _, i := range refused {
		if g.packOf[i] <= ackUpTo {
			dropped++
			if first < 0 || i < first {
				first = i
			}
		}
	}
	if dropped > 0 {
		f.s.refused.Add(uint64(dropped))
		m := &g.msgs[first]
		f.s.log.Error("spool: the fleet's server refuses messages for good; they are dropped from the spool and counted (genlbridge_spool_refused_total)",
			"messages", dropped, "first_subject", m.Subject, "first_id", m.ID, "err", err)
	}
	for _, d := range g.damaged {
		if d.pack <= ackUpTo {
			f.s.damaged.Add(1)
			f.s.log.Error("spool: a damaged pack; what follows the damage is dropped", "spool_seq", d.seq, "messages_before_it", d.before, "err", d.err)
		}
	}
	for _, p := range g.packs[:ackUpTo+1] {
		if aerr := p.Ack(); aerr != nil && f.ctx.Err() == nil {
			f.s.log.Warn("spool: acknowledging a forwarded pack", "err", aerr)
		}
	}
	f.s.forwarded.Add(uint64(len(g.msgs) - len(refused) - len(unsent)))
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

// dead says whether run has returned on its own (its stream's connection
// closed under it): a new forwarder must take over.
func (f *forwarder) dead() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}
