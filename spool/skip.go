package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go/jetstream"
)

// maxScan bounds the hub's messages skipForwarded reads.
const maxScan = 1 << 18

// position is a message's place in the spool: its pack's sequence in SPOOL
// and its index in the pack.
type position struct {
	seq uint64
	idx int
}

// clockSkew is how far the node's clock may be from the hub's: the
// times of SPOOL's packs and of the hub's messages are compared. minSpan
// is the least time a message is taken to be retried for. Variables for
// the tests.
var (
	clockSkew = 10 * time.Second
	minSpan   = 10 * time.Second
)

// skipForwarded finds what the hub already stores of what is spooled, so
// that a new forwarder does not send it again even past the hub's duplicate
// window: it purges the packs the hub has whole from the start of the
// spool, and returns the places of the other messages it has (nil: none).
// An error (the hub not answering) means the forwarder cannot start yet.
//
// The hub can hold messages of any pack still in SPOOL (a group is
// acknowledged only once the hub has all of it, and an outage can split
// one over minutes), and none stored before the oldest such pack was
// spooled. When that is recent enough, every message the forwarder sends
// again falls in the hub's duplicate window, which drops it: nothing is
// skipped. Otherwise the tags of this node's messages the hub stored since
// then are read, and what they name is skipped; the rest is sent again.
func (s *Spool) skipForwarded(ctx context.Context, st *store, hubStream jetstream.Stream) (map[position]bool, error) {
	if hubStream == nil {
		return nil, nil
	}
	info, err := st.stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	oldest := info.State.FirstTime.Add(-clockSkew)
	last, at, ok, err := s.lastForwarded(ctx, hubStream)
	if err != nil || !ok {
		return nil, err
	}
	span := max(s.cfg.Sink.RetrySpan(), minSpan)
	if dup := hubStream.CachedInfo().Config.Duplicates; time.Since(oldest) < dup-span {
		return nil, nil
	}
	from := at.Add(-2*span - clockSkew)
	if oldest.Before(from) {
		from = oldest
	}
	have, complete, err := s.hubTags(ctx, hubStream, from, info.State.FirstSeq)
	if err != nil {
		return nil, fmt.Errorf("read what the hub stores of the spool: %w", err)
	}
	if !complete {
		s.log.Warn("the hub holds too many of this node's messages to read them all: what was not read is sent again, and what of it is past the hub's duplicate window is stored twice",
			"read", maxScan, "since", from.Format(time.RFC3339))
	}
	// Purge the packs, from the first, the hub holds whole.
	keep := info.State.FirstSeq
walk:
	for q := info.State.FirstSeq; q <= last.seq && q != 0; q++ {
		m, err := st.stream.GetMsg(ctx, q)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			keep = q + 1
			continue // acknowledged since
		}
		if err != nil {
			return nil, err
		}
		n, _ := sink.Unpack(m.Data, func(int, []byte, []byte, []byte) bool { return true })
		for i := 0; i < n; i++ {
			if !have[position{q, i}] {
				break walk
			}
		}
		keep = q + 1
	}
	if keep > info.State.FirstSeq {
		if err := st.stream.Purge(ctx, jetstream.WithPurgeSequence(keep)); err != nil {
			return nil, fmt.Errorf("purge what the hub stores: %w", err)
		}
	}
	s.log.Info("the hub already stores part of the spool; forwarding the rest", "purged_before", keep,
		"last_spool_seq", last.seq, "last_message", last.idx, "seen_in_hub", len(have))
	return have, nil
}

// lastForwarded is the place of the hub's last message of this node, when
// it came from this spool, and when the hub stored it.
func (s *Spool) lastForwarded(ctx context.Context, hubStream jetstream.Stream) (position, time.Time, bool, error) {
	var last position
	var at time.Time
	ok := false
	for _, f := range s.cfg.ResumeFilters {
		m, err := hubStream.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return position{}, time.Time{}, false, err
		}
		inc, q, i, tagged := parseTag(m.Header.Get(sink.TagHeader))
		if tagged && inc == s.incarnation && (!ok || q > last.seq || q == last.seq && i > last.idx) {
			last, at, ok = position{q, i}, m.Time, true
		}
	}
	return last, at, ok, nil
}

// hubTags reads the places of this spool's messages from packs at or
// after firstSeq that the hub stored since from (this node's subjects
// only, headers only), at most maxScan of them (complete false: there were
// more); the messages of packs already acknowledged are read past. It
// gives up when ctx ends, and when the hub refuses the consumer it reads
// with (nats.go would otherwise make it again, forever, inside Fetch).
func (s *Spool) hubTags(ctx context.Context, hubStream jetstream.Stream, from time.Time, firstSeq uint64) (have map[position]bool, complete bool, err error) {
	c, err := hubStream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: s.cfg.ResumeFilters,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from, HeadersOnly: true, MaxResetAttempts: 1})
	if err != nil {
		return nil, false, err
	}
	have = map[position]bool{}
	for len(have) < maxScan {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		batch, err := c.Fetch(1024, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, false, err
		}
		got, pending := 0, uint64(1)
		for m := range batch.Messages() {
			got++
			if inc, q, i, ok := parseTag(m.Headers().Get(sink.TagHeader)); ok && inc == s.incarnation && q >= firstSeq {
				have[position{q, i}] = true
			}
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, false, err
		}
		if got == 0 || pending == 0 {
			return have, true, nil
		}
	}
	return have, false, nil
}
