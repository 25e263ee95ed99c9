package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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
//
// It reads with direct gets alone (the stream allows them: allow_direct),
// the last message by subject, then batches from a stream sequence on,
// next by subject: no consumer, so a node's permissions grant no consumer
// (whose push delivery could send its records anywhere in the account).
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
	// hosts' messages lie between them on a shared stream): a batch's end
	// says how many of the subject are left from where it stopped.
	want := uint64(s.cfg.ResumeWindow)
	for span := want; ; span *= 4 {
		start := first
		if end-first+1 > span {
			start = end - span + 1
		}
		best := last
		var evs []event.Event
		read, err := s.directRead(ctx, subject, start, end, func(data []byte) {
			evs, _ = storedEvents(data, evs[:0])
			for _, e := range evs {
				if e.BootID == last.BootID && e.Instance == last.Instance && e.SeqSource == event.SeqKernel && e.Seq > best.Seq {
					best = e
				}
			}
		})
		if err != nil {
			return last, true, fmt.Errorf("read back %s: %w", subject, err)
		}
		if read < want && start > first {
			continue
		}
		return best, true, nil
	}
}

// directBatch is how many messages one direct get asks for.
const directBatch = 256

// directRead reads the messages on subject from stream sequence start to
// end with batched direct gets ($JS.API.DIRECT.GET.<stream>, next by
// subject), calling fn with each one's data, and returns how many it read.
// Called with resumeMu held.
func (s *JetStream) directRead(ctx context.Context, subject string, start, end uint64, fn func(data []byte)) (uint64, error) {
	inbox := s.nc.NewInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + s.cfg.Stream.Name
	var read uint64
	for seq := start; seq <= end; {
		req, _ := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj"`
			Batch   int    `json:"batch"`
		}{seq, subject, directBatch})
		if err := s.nc.PublishRequest(api, inbox, req); err != nil {
			return read, err
		}
		got := 0
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return read, err
			}
			st := m.Header.Get("Status")
			if st == "204" { // the end of the batch
				break
			}
			if st == "404" { // nothing more on the subject
				return read, nil
			}
			if st != "" {
				return read, fmt.Errorf("direct get: status %s %s", st, m.Header.Get("Description"))
			}
			n, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if err != nil {
				return read, fmt.Errorf("direct get: a message without its sequence: %q", m.Header.Get("Nats-Sequence"))
			}
			if n > end {
				continue // later ones: past what was asked
			}
			fn(m.Data)
			read++
			got++
			seq = n + 1
		}
		if got == 0 {
			return read, nil
		}
	}
	return read, nil
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
