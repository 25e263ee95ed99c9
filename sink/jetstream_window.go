package sink

import (
	"context"
	"strconv"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// The JetStream sink's window: the messages of the batch being delivered
// (slots), how many are in flight, and the waits and failures that move them.

// slot is one message of the batch being delivered.
type slot struct {
	msg   nats.Msg
	id    []string // the Nats-Msg-Id header's value
	state uint8
	first time.Time // first published
}

const (
	slotIdle     = iota // to be published (again)
	slotInFlight        // published, acknowledgement pending
	slotAcked
	slotRejected // refused by the client for good (too big, bad subject)
)

// watch fails every message in flight when the connection drops: their
// acknowledgements are lost with it. It returns when Close removes the
// status listener.
func (s *JetStream) watch() {
	defer close(s.watching)
	for st := range s.status {
		err := nats.ErrDisconnected
		if st == nats.CLOSED {
			err = nats.ErrConnectionClosed
		}
		s.failInFlight(err)
	}
}

// failInFlight marks every message in flight as failed with err.
func (s *JetStream) failInFlight(err error) {
	changed := false
	s.mu.Lock()
	for i := range s.slots {
		if s.slots[i].state == slotInFlight {
			s.slots[i].state = slotIdle
			s.inFlight--
			s.lastErr = err
			changed = true
		}
	}
	s.mu.Unlock()
	if changed {
		s.signal()
	}
}

func (s *JetStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// prepare starts a new batch generation and makes one slot per encoded
// message. Core publishing keeps no reference to a message after PublishMsg
// returns, so slots, reply subjects and the encoder's buffer are reused.
func (s *JetStream) prepare() {
	n := len(s.enc.msgs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if cap(s.slots) < n {
		s.slots = make([]slot, max(n, 2*cap(s.slots)))
		for i := range s.slots {
			sl := &s.slots[i]
			sl.id = []string{""}
			sl.msg.Header = nats.Header{"Nats-Msg-Id": sl.id}
		}
	}
	s.slots = s.slots[:n]
	// Reply subjects and ids point into buffers that stay unchanged until
	// the next batch; they are only read during PublishMsg. The reply buffer
	// is grown first so that appending never moves it.
	const maxDigits = 13 // a uint64 in base 36
	if need := n * (len(s.prefix) + 2*maxDigits + 1); cap(s.replies) < need {
		s.replies = make([]byte, 0, need)
	}
	s.replies = s.replies[:0]
	for i := range s.slots {
		m, sl := &s.enc.msgs[i], &s.slots[i]
		start := len(s.replies)
		s.replies = append(s.replies, s.prefix...)
		s.replies = strconv.AppendUint(s.replies, s.gen, 36)
		s.replies = append(s.replies, '.')
		s.replies = strconv.AppendUint(s.replies, uint64(i), 36)
		sl.msg.Reply = unsafe.String(&s.replies[start], len(s.replies)-start)
		sl.msg.Subject = m.subject
		sl.msg.Data = s.enc.data(m)
		id := s.enc.id(m)
		sl.id[0] = unsafe.String(&id[0], len(id))
		sl.state, sl.first = slotIdle, time.Time{}
	}
	s.inFlight, s.lastErr, s.rejected = 0, nil, nil
}

// waitInFlight waits until at most n messages are in flight and returns
// with s.mu held, or returns ctx's error without it. When no acknowledgement
// arrives for AckTimeout, every message in flight counts as failed.
func (s *JetStream) waitInFlight(ctx context.Context, n int) error {
	s.mu.Lock()
	if s.inFlight <= n {
		return nil
	}
	s.timer.Reset(s.cfg.AckTimeout)
	defer s.timer.Stop()
	for s.inFlight > n {
		s.mu.Unlock()
		select {
		case <-s.wake:
			s.timer.Reset(s.cfg.AckTimeout)
		case <-s.timer.C:
			s.failInFlight(errAckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	return nil
}
