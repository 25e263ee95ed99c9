package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go/jetstream"
)

// This file is the JetStream sink's read side: where the previous run of the
// bridge stopped, read back from the stream at start.

// LastEvent returns the last event stored on the subject of host's
// family/group (the last line of a batched message); ok is false when there
// is none.
func (s *JetStream) LastEvent(ctx context.Context, family, group, host string) (ev event.Event, ok bool, err error) {
	if s.stream == nil {
		return ev, false, errors.New("the stream cannot be read")
	}
	m, err := s.stream.GetLastMsgForSubject(ctx, s.eventFilter(family, group, host))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ev, false, nil
	}
	if err != nil {
		return ev, false, err
	}
	evs, err := storedEvents(m.Data, nil)
	if err != nil || len(evs) == 0 {
		return ev, false, fmt.Errorf("stream message %d on %s: %w", m.Sequence, m.Subject, err)
	}
	return evs[len(evs)-1], true, nil
}

// eventFilter is the subject of host's family/group's events: with {op} in
// the template, a filter that matches every op.
func (s *JetStream) eventFilter(family, group, host string) string {
	if s.cfg.Subject.HasOp() {
		return s.cfg.Subject.Filter(family, group, host, "")
	}
	return s.cfg.Subject.Subject(family, group, host, "")
}

// storedEvents appends the events of one stored message (one JSON record,
// or several lines of a batched message) to dst.
func storedEvents(data []byte, dst []event.Event) ([]event.Event, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		var env event.Envelope
		if err := json.Unmarshal(line, &env); err != nil || env.Type != "event" {
			return dst, fmt.Errorf("not an event: %.200q", line)
		}
		dst = append(dst, env.Event)
	}
	return dst, nil
}

// HighestEvent returns, among the last ResumeWindow events stored on the
// subject of host's family/group, the one with the highest sequence number
// in the boot and instance of the very last one. The very last event stored
// need not be the highest: a message whose acknowledgement failed is
// published again after later ones of its batch were stored, and lands
// behind them. ok is false when nothing is stored.
func (s *JetStream) HighestEvent(ctx context.Context, family, group, host string) (ev event.Event, ok bool, err error) {
	last, ok, err := s.LastEvent(ctx, family, group, host)
	if err != nil || !ok || last.SeqSource != event.SeqKernel {
		return last, ok, err
	}
	subject := s.eventFilter(family, group, host)
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	m, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return last, true, err
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return last, true, fmt.Errorf("stream info: %w", err)
	}
	end, first := m.Sequence, info.State.FirstSeq
	// Find a start that holds ResumeWindow messages of the subject (other
	// hosts' messages lie between them on a shared stream).
	want := uint64(s.cfg.ResumeWindow)
	for span := want; ; span *= 4 {
		start := first
		if end-first+1 > span {
			start = end - span + 1
		}
		c, err := s.readBackConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubject: subject, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
			AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute, MemoryStorage: true,
		})
		if err != nil {
			return last, true, fmt.Errorf("read back %s: %w", subject, err)
		}
		name := c.CachedInfo().Name
		pending := c.CachedInfo().NumPending
		if pending < want && start > first {
			_ = s.stream.DeleteConsumer(ctx, name)
			continue
		}
		best, err := highestOf(ctx, c, pending, end, last)
		_ = s.stream.DeleteConsumer(ctx, name)
		return best, true, err
	}
}

// readBackConsumer creates the consumer of cc, named ResumeConsumer when
// set (a consumer of that name left by an earlier run is deleted first).
// Called with resumeMu held.
func (s *JetStream) readBackConsumer(ctx context.Context, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if s.cfg.ResumeConsumer != "" {
		cc.Name = s.cfg.ResumeConsumer
		if err := s.stream.DeleteConsumer(ctx, cc.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
	}
	return s.stream.CreateConsumer(ctx, cc)
}

// highestOf reads n messages from c, up to stream sequence end, and
// returns the event of the highest sequence in last's boot and instance.
func highestOf(ctx context.Context, c jetstream.Consumer, n, end uint64, last event.Event) (event.Event, error) {
	best := last
	var evs []event.Event
	for read := uint64(0); read < n; {
		batch, err := c.FetchNoWait(int(min(n-read, 1024)))
		if err != nil {
			return best, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			evs, _ = storedEvents(msg.Data(), evs[:0])
			for _, e := range evs {
				if e.BootID == last.BootID && e.Instance == last.Instance && e.SeqSource == event.SeqKernel && e.Seq > best.Seq {
					best = e
				}
			}
			if md, err := msg.Metadata(); err == nil && md.Sequence.Stream >= end {
				return best, nil
			}
		}
		if err := batch.Error(); err != nil {
			return best, err
		}
		if got == 0 {
			if ctx.Err() != nil {
				return best, ctx.Err()
			}
			time.Sleep(10 * time.Millisecond) // not delivered yet
		}
		read += uint64(got)
	}
	return best, nil
}

// Resume says where the previous run stopped, in the shape of
// bridge.Config.Resume: the boot id, instance and kernel sequence of the
// highest event stored for host's family/group (see HighestEvent). ok is
// false when there is none, when its sequence is the bridge's own, or when
// the stream cannot be read (logged).
func (s *JetStream) Resume(host, family, group string) (bootID string, instance, seq uint64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.cfg.AckTimeout)
	defer cancel()
	ev, ok, err := s.HighestEvent(ctx, family, group, host)
	if err != nil {
		s.log.Warn("cannot read the last stored events; a gap while the bridge was down will not be reported",
			"family", family, "group", group, "host", host, "err", err)
		return "", 0, 0, false
	}
	if !ok || ev.SeqSource != event.SeqKernel {
		return "", 0, 0, false
	}
	return ev.BootID, ev.Instance, ev.Seq, true
}
