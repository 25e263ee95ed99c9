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

// skipForwarded finds what the hub already stores of what is spooled, so
// that a new forwarder does not send it again even past the hub's duplicate
// window: it purges the packs the hub has whole from the start of the
// spool, and returns the places of the other messages it has (nil: none).
//
// The hub's last message of this node, if it is this spool's, says how far
// forwarding got, but not that everything before it is there: the window
// can have a message stored after later ones (republished after a failure)
// when the forwarder stopped between the two. So within the duplicate
// window nothing is skipped (the hub drops what it has, exactly); past it
// what is skipped is what the hub is seen to hold, by the tags of this
// node's messages stored around the last one, and the rest is sent again.
func (s *Spool) skipForwarded(ctx context.Context, st *store, hubStream jetstream.Stream) (map[position]bool, error) {
	if hubStream == nil {
		return nil, nil
	}
	last, at, ok, err := s.lastForwarded(ctx, hubStream)
	if err != nil || !ok {
		return nil, err
	}
	span := max(s.cfg.Sink.RetrySpan(), 10*time.Second)
	if dup := hubStream.CachedInfo().Config.Duplicates; time.Since(at) < dup-span {
		return nil, nil
	}
	have, err := s.hubTags(ctx, hubStream, at.Add(-2*span-10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("read what the hub stores of the spool: %w", err)
	}
	// Purge the packs, from the first, the hub holds whole.
	info, err := st.stream.Info(ctx)
	if err != nil {
		return nil, err
	}
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

// hubTags reads the places of this spool's messages the hub stored since
// from (this node's subjects only), at most maxScan of them.
func (s *Spool) hubTags(ctx context.Context, hubStream jetstream.Stream, from time.Time) (map[position]bool, error) {
	c, err := hubStream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: s.cfg.ResumeFilters,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return nil, err
	}
	have := map[position]bool{}
	for n := 0; n < maxScan; {
		batch, err := c.Fetch(1024, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		got, pending := 0, uint64(1)
		for m := range batch.Messages() {
			got++
			if inc, q, i, ok := parseTag(m.Headers().Get(sink.TagHeader)); ok && inc == s.incarnation {
				have[position{q, i}] = true
			}
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		n += got
		if got == 0 || pending == 0 {
			return have, nil
		}
	}
	return nil, fmt.Errorf("more than %d messages of this node in the hub since %s", maxScan, from.Format(time.RFC3339))
}
