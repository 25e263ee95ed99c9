package bridge

import (
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

// lossSink takes loss records: the ledger.
type lossSink interface {
	add(rec event.Loss, publish bool)
}

// dropCounter reads the kernel's count of datagrams dropped on a socket
// (SO_MEMINFO's SK_MEMINFO_DROPS); it wraps at 2^32.
type dropCounter interface {
	drops() (uint32, error)
}

// resumePoint is what Config.Resume said for a subscription.
type resumePoint struct {
	ok       bool
	bootID   string
	instance uint64
	seq      uint64
}

// sequencer numbers one subscription's events and places its losses in the
// sequence. It is told four things, in the order the reader sees them: an
// event (Event), the kernel's drop counter (Drops reads it; Empty passes
// the value read when the socket was found empty), a marker that a new
// registration of the family begins (Marker), and a message that could not
// be decoded (Malformed). From them it stamps each event's sequence number,
// source and instance, and hands loss records to its lossSink: sequence
// gaps, overruns with their range when it can tell it, malformed messages.
//
// A family whose events carry the module's own sequence number (SEQ) has
// its drops placed where the sequence shows them: at the next gap, or, when
// the socket is found empty, right after the last event read (the dropped
// events are then the newest). A family without one is numbered by the
// bridge, and its drops are published at once, without a range. Drops
// read before the first event say nothing yet: they wait for the events to
// tell which kind of family it is and where they go, and Final publishes
// what no event placed (so that no drop is counted twice, once without a
// range and once by the gap that shows it).
//
// It is used by the reader's goroutine only; SocketDrops may be read by any.
type sequencer struct {
	tmpl        event.Loss // Host, BootID, Family and Group of every record
	runInstance uint64     // the instance of bridge-numbered events: the bridge's start
	losses      lossSink
	counter     dropCounter

	socketDrops atomic.Uint64 // the kernel's drops seen, for Stats

	kernelSeq bool   // the family has shown a kernel sequence
	numbered  bool   // the family has shown an event (kernelSeq says which kind)
	haveSeq   bool   // lastSeq is meaningful
	fresh     bool   // a marker said the next registration's sequence starts at 1
	lastSeq   uint64 // last kernel sequence seen
	bridgeSeq uint64 // counter for families without a sequence
	instance  uint64 // identifies the family registration the sequence belongs to
	resume    resumePoint
	// Drop attribution: the counter as last read, drops read but not yet
	// published, and drops published ahead of the sequence gap that will
	// show them.
	dropsSeen      uint32
	pendingDrops   uint64
	aheadReported  uint64
	malformedAhead uint64 // malformed messages the next gap accounts for
}

// record makes a loss record of this subscription. A range belongs to the
// current instance.
func (s *sequencer) record(reason string, count, first, last uint64, now int64) event.Loss {
	l := s.tmpl
	l.Reason, l.Count, l.FirstSeq, l.LastSeq, l.TimeNS = reason, count, first, last, now
	if first != 0 {
		l.Instance = s.instance
	}
	return l
}

// Malformed counts a message that could not be decoded. In a family with a
// sequence it is also a hole the next event shows: that gap takes it first,
// so it is not counted twice.
func (s *sequencer) Malformed(now time.Time) {
	s.losses.add(s.record(event.ReasonMalformed, 1, 0, 0, now.UnixNano()), true)
	if s.kernelSeq {
		s.malformedAhead++
	}
}

// Marker starts a new registration of the family: its sequence starts at
// 1, so the first event of it shows any gap from 1. Drops still unplaced
// stay pending: the next gap or empty socket places them (drops of the old
// registration's tail are normally placed before the marker, when the
// socket was found empty; if not, the counts stay exact and only their
// range is the new registration's).
func (s *sequencer) Marker(now time.Time) {
	s.Drops(now)
	s.aheadReported, s.malformedAhead = 0, 0
	s.haveSeq, s.fresh, s.lastSeq = false, true, 0
	s.instance = s.nextInstance(now)
}

// nextInstance is the receive time in µs, made larger than the previous
// instance when both fall in the same µs. In µs an instance is a JSON
// number every language holds exactly (below 2^53 until the year 2255).
func (s *sequencer) nextInstance(now time.Time) uint64 {
	return max(uint64(now.UnixMicro()), s.instance+1)
}

// Event stamps ev's sequence and accounts for any gap before it. ev.Seq is
// the module's sequence number, 0 when the family has none.
func (s *sequencer) Event(ev *event.Event, now time.Time) {
	s.numbered = true
	if ev.Seq == 0 {
		if !s.kernelSeq {
			// Drops read before this first event: a family without a
			// sequence, so they have no place.
			s.publishPendingDrops(now, false)
		}
		s.bridgeSeq++
		ev.Seq, ev.SeqSource, ev.Instance = s.bridgeSeq, event.SeqBridge, s.runInstance
		return
	}
	ev.SeqSource = event.SeqKernel
	s.kernelSeq = true
	switch {
	case !s.haveSeq && s.fresh:
		// The first event of a registration we saw begin.
		if ev.Seq > 1 {
			s.gap(1, ev.Seq-1, now)
		}
	case !s.haveSeq:
		s.instance = s.nextInstance(now)
		if rp := &s.resume; rp.ok && rp.bootID == s.tmpl.BootID && ev.Seq > rp.seq {
			// The registration the last run saw went on without us.
			s.instance = event.InstanceOf(rp.instance) // a resume point of format 1 is in ns
			if ev.Seq > rp.seq+1 {
				s.gap(rp.seq+1, ev.Seq-1, now)
			}
		}
	case ev.Seq == s.lastSeq+1:
		if s.aheadReported > 0 || s.malformedAhead > 0 {
			// What was placed after lastSeq was not this sequence's (the
			// drop counter also counts other datagrams): nothing to place.
			s.aheadReported, s.malformedAhead = 0, 0
		}
	case ev.Seq > s.lastSeq+1:
		s.gap(s.lastSeq+1, ev.Seq-1, now)
	default:
		// The sequence went back without a marker: a new registration whose
		// notifications we did not see.
		s.Marker(now)
		if ev.Seq > 1 {
			s.gap(1, ev.Seq-1, now)
		}
	}
	s.haveSeq, s.fresh, s.lastSeq = true, false, ev.Seq
	s.resume.ok = false
	ev.Instance = s.instance
}

// gap accounts for the missing sequence numbers first..last: first as drops
// already published ahead of it, then as the kernel's drops not yet placed,
// and the rest as a sequence gap. The drop counter is read when the gap shows,
// so it may include drops that a later gap will show; the counts stay exact,
// only a module's own loss racing an overrun could be labelled as the other.
func (s *sequencer) gap(first, last uint64, now time.Time) {
	s.Drops(now)
	n := last - first + 1
	ns := now.UnixNano()
	// Messages counted as malformed were holes in this sequence too.
	if a := min(n, s.malformedAhead); a > 0 {
		s.malformedAhead -= a
		first += a
		n -= a
	}
	// Drops happen in order: those published ahead are the oldest.
	if a := min(n, s.aheadReported); a > 0 {
		s.aheadReported -= a
		first += a
		n -= a
	}
	if a := min(n, s.pendingDrops); a > 0 {
		s.losses.add(s.record(event.ReasonOverrun, a, first, first+a-1, ns), true)
		s.pendingDrops -= a
		first += a
		n -= a
	}
	if n > 0 {
		s.losses.add(s.record(event.ReasonSeqGap, n, first, last, ns), true)
	}
}

// Drops reads the kernel's drop counter. Drops on a socket whose family
// has shown events without a sequence are published at once; otherwise
// they wait for the gap that places them, or for the socket to be found
// empty (Empty).
func (s *sequencer) Drops(now time.Time) {
	d, err := s.counter.drops()
	if err != nil {
		return
	}
	s.countDrops(d)
	if s.numbered && !s.kernelSeq {
		s.publishPendingDrops(now, false)
	}
}

// Final publishes the drops nothing placed (the socket has left its group
// and is drained: no event will show them), without a range when no event
// told where they go.
func (s *sequencer) Final(now time.Time) {
	s.publishPendingDrops(now, true)
	if s.pendingDrops > 0 {
		s.losses.add(s.record(event.ReasonOverrun, s.pendingDrops, 0, 0, now.UnixNano()), true)
		s.pendingDrops = 0
	}
}

// Empty takes the drop counter d as read when the socket was found empty:
// every drop it counts happened before that moment, so a dropped event
// that no gap has placed yet is newer than every event read until then.
func (s *sequencer) Empty(d uint32, now time.Time) {
	s.countDrops(d)
	s.publishPendingDrops(now, true)
}

// countDrops takes the kernel's drop counter d (which wraps at 2^32).
func (s *sequencer) countDrops(d uint32) {
	if delta := d - s.dropsSeen; delta != 0 {
		s.dropsSeen = d
		s.socketDrops.Add(uint64(delta))
		s.pendingDrops += uint64(delta)
	}
}

// publishPendingDrops publishes the drops no gap has placed yet. ranged says
// they are the events right after the last one read (the socket was found
// empty): they get that range, and the gap that shows them later is not
// counted again.
func (s *sequencer) publishPendingDrops(now time.Time, ranged bool) {
	if s.pendingDrops == 0 {
		return
	}
	if ranged && !s.haveSeq && (s.kernelSeq || !s.numbered) {
		// No event of this registration read yet: its first event's gap
		// places them (or Final).
		return
	}
	var first, last uint64
	if ranged && s.haveSeq {
		first = s.lastSeq + s.aheadReported + 1
		last = first + s.pendingDrops - 1
		s.aheadReported += s.pendingDrops
	}
	s.losses.add(s.record(event.ReasonOverrun, s.pendingDrops, first, last, now.UnixNano()), true)
	s.pendingDrops = 0
}
