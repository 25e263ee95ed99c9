package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Resume is bridge.Config.Resume read from the spool: the boot id,
// instance and kernel sequence of the highest event of host's family/group
// among the last ones spooled (the last one spooled need not be the
// highest: see sink.JetStream.HighestEvent). ok is false when the spool
// holds none; then the hub knows where the previous run stopped.
func (s *Spool) Resume(host, family, group string) (bootID string, instance, seq uint64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := s.current()
	if st == nil {
		return "", 0, 0, false
	}
	t := s.cfg.Sink.Subject
	filter := t.Subject(family, group, host, "")
	if t.HasOp() {
		filter = t.Filter(family, group, host, "")
	}
	last, err := st.stream.GetLastMsgForSubject(ctx, filter)
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			s.log.Warn("cannot read the spool's last event", "family", family, "group", group, "err", err)
		}
		return "", 0, 0, false
	}
	evs := events(last.Data)
	if len(evs) == 0 || evs[len(evs)-1].SeqSource != event.SeqKernel {
		return "", 0, 0, false
	}
	best := evs[len(evs)-1]
	// Walk back over the last messages (the window's worth of this
	// subscription) for a higher sequence of the same instance.
	want := max(s.cfg.Window, s.cfg.Sink.ResumeWindow, 1024)
	first := uint64(1)
	if info, err := st.stream.Info(ctx); err == nil {
		first = info.State.FirstSeq
	}
	seen := 0
	for q := last.Sequence; q >= first && q > 0 && seen < want && ctx.Err() == nil; q-- {
		m, err := st.stream.GetMsg(ctx, q)
		if err != nil || !server.SubjectMatchesFilter(m.Subject, filter) {
			continue
		}
		seen++
		for _, e := range events(m.Data) {
			if e.BootID == best.BootID && e.Instance == best.Instance && e.SeqSource == event.SeqKernel && e.Seq > best.Seq {
				best = e
			}
		}
	}
	return best.BootID, best.Instance, best.Seq, true
}

// events are the events of one pack (its messages: one record each, or
// the lines of a batched one); loss records and what does not parse are
// left out.
func events(pack []byte) []event.Event {
	var out []event.Event
	_, _ = sink.Unpack(pack, func(_ int, _, _, data []byte) bool {
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
			var env event.Envelope
			if json.Unmarshal(line, &env) == nil && env.Type == "event" {
				out = append(out, env.Event)
			}
		}
		return true
	})
	return out
}
