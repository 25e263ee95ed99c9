package audit

import (
	"time"

	"github.com/genlbridge/genlbridge/event"
)

// Live finds holes while records arrive, for tail and replay: a number an
// instance skipped that no loss record accounts for within Grace (a loss
// record may come after the event past the hole, and an event republished
// late may fill it). It keeps, per instance, the highest number seen and
// the holes still pending: memory bounded by the holes, not the events.
// Used by one goroutine at a time.
type Live struct {
	// Grace is how long a hole waits for its loss record or its events
	// (default 2 s).
	Grace time.Duration

	last    map[Key]uint64
	pending []Hole
}

// Hole is a run of numbers an instance skipped.
type Hole struct {
	Key
	Range
	Since time.Time // when it was seen
}

// NewLive returns a Live with the default grace.
func NewLive() *Live { return &Live{Grace: 2 * time.Second, last: map[Key]uint64{}} }

// Envelope takes a record seen at now.
func (l *Live) Envelope(v *event.Envelope, now time.Time) {
	if v.Type == "loss" {
		l.loss(v, now)
		return
	}
	k := Key{v.Host, v.BootID, v.Family, v.Group, v.Instance}
	last, seen := l.last[k]
	switch {
	case !seen || v.Seq == last+1:
	case v.Seq > last+1:
		l.pending = append(l.pending, Hole{Key: k, Range: Range{last + 1, v.Seq - 1}, Since: now})
	default:
		l.cover(k, Range{v.Seq, v.Seq}) // late: it may fill a hole
	}
	if !seen || v.Seq > last {
		l.last[k] = v.Seq
	}
}

func (l *Live) loss(v *event.Envelope, now time.Time) {
	if v.FirstSeq != 0 || v.LastSeq != 0 {
		k := Key{v.Host, v.BootID, v.Family, v.Group, v.Instance}
		l.cover(k, Range{v.FirstSeq, v.LastSeq})
		// A loss ahead of the events: what it names is no hole later.
		if v.LastSeq > l.last[k] {
			l.last[k] = v.LastSeq
		}
		return
	}
	// A count-only record pays for the oldest holes of its subscription.
	n := v.Count
	for i := 0; i < len(l.pending) && n > 0; i++ {
		h := &l.pending[i]
		if h.Host != v.Host || h.BootID != v.BootID || h.Family != v.Family || h.Group != v.Group {
			continue
		}
		take := min(n, h.n())
		n -= take
		h.First += take
		if h.First > h.Last {
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			i--
		}
	}
}

// cover removes r from k's pending holes.
func (l *Live) cover(k Key, r Range) {
	out := l.pending[:0]
	for _, h := range l.pending {
		if h.Key != k || r.Last < h.First || r.First > h.Last {
			out = append(out, h)
			continue
		}
		if h.First < r.First {
			out = append(out, Hole{Key: k, Range: Range{h.First, r.First - 1}, Since: h.Since})
		}
		if r.Last < h.Last {
			out = append(out, Hole{Key: k, Range: Range{r.Last + 1, h.Last}, Since: h.Since})
		}
	}
	l.pending = out
}

// Due returns the holes that waited Grace by now, and forgets them.
func (l *Live) Due(now time.Time) []Hole {
	var due []Hole
	out := l.pending[:0]
	for _, h := range l.pending {
		if now.Sub(h.Since) >= l.Grace {
			due = append(due, h)
		} else {
			out = append(out, h)
		}
	}
	l.pending = out
	return due
}

// Pending returns the holes still waiting (for the end of a replay).
func (l *Live) Pending() []Hole { return append([]Hole(nil), l.pending...) }
