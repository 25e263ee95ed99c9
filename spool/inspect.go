package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// Report is what Inspect finds in a spool directory: what it holds, per
// subscription, where forwarding stands, and the damage (every record's
// checksums are checked).
type Report struct {
	Dir string `json:"dir"`
	// Running says a bridge holds the directory's lock: what is read may
	// change while it is read.
	Running bool `json:"running"`
	// State is the state file (nil: none, or it does not parse).
	State      *StateReport  `json:"state,omitempty"`
	StateError string        `json:"state_error,omitempty"`
	Segments   []SegmentInfo `json:"segments"`
	Bytes      int64         `json:"bytes"`
	// Records and Events are what the log holds; Pending of them are not
	// wholly forwarded (at or after the cursor).
	Records        uint64               `json:"records"`
	Events         uint64               `json:"events"`
	PendingRecords uint64               `json:"pending_records"`
	PendingEvents  uint64               `json:"pending_events"`
	Oldest         time.Time            `json:"oldest,omitzero"`
	Newest         time.Time            `json:"newest,omitzero"`
	OldestPending  time.Time            `json:"oldest_pending,omitzero"`
	Subscriptions  []SubscriptionReport `json:"subscriptions"`
	Damage         []DamageReport       `json:"damage,omitempty"`
	RecordList     []RecordInfo         `json:"record_list,omitempty"`
}

// StateReport is what the state file says.
type StateReport struct {
	Incarnation string `json:"incarnation"`
	Cursor      uint64 `json:"cursor"`
	CursorMsgs  int    `json:"cursor_msgs,omitempty"`
	Synced      uint64 `json:"synced"`
	Next        uint64 `json:"next"`
	Clean       bool   `json:"clean"`
	Sync        string `json:"sync"`
	BootID      string `json:"boot_id"`
}

// SegmentInfo is one segment file.
type SegmentInfo struct {
	Path  string `json:"path"`
	First uint64 `json:"first_record"`
	Bytes int64  `json:"bytes"`
}

// SubscriptionReport is what the log holds of one subscription's
// instance.
type SubscriptionReport struct {
	Host     string `json:"host"`
	BootID   string `json:"boot_id"`
	Family   string `json:"family"`
	Group    string `json:"group"`
	Instance uint64 `json:"instance"`
	Kernel   bool   `json:"kernel_seq"`
	// Records holding its events or loss records, the events, the loss
	// records; Pending of the events are not forwarded.
	Records     uint64 `json:"records"`
	Events      uint64 `json:"events"`
	LossRecords uint64 `json:"loss_records"`
	Pending     uint64 `json:"pending_events"`
	// Ranges are the sequence numbers its events cover, merged where
	// they touch (at most maxRanges, the rest counted in MoreRanges).
	Ranges     [][2]uint64 `json:"ranges"`
	MoreRanges int         `json:"more_ranges,omitempty"`
	// Lost are the ranges of its loss records, by reason.
	Lost   map[string]uint64 `json:"lost,omitempty"`
	Oldest time.Time         `json:"oldest"`
	Newest time.Time         `json:"newest"`
	// Forwarded is the highest sequence number forwarded, as the state
	// says (0: not known).
	Forwarded uint64 `json:"forwarded"`
}

// DamageReport is damage Verify found: where, and what it held.
type DamageReport struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Bytes  int64  `json:"bytes,omitempty"`
	// What: "payload" (a record whose payload does not check; its meta
	// says what it held), "unreadable" (bytes that hold no readable
	// record), "missing" (record numbers no segment holds).
	What string `json:"what"`
	// FirstRecord and LastRecord number the records lost (0: not known).
	FirstRecord uint64 `json:"first_record,omitempty"`
	LastRecord  uint64 `json:"last_record,omitempty"`
	// Ranges are the events' sequence ranges lost, where known.
	Ranges []DamagedRange `json:"ranges,omitempty"`
}

// DamagedRange is a subscription's run of lost sequence numbers.
type DamagedRange struct {
	Family   string `json:"family"`
	Group    string `json:"group"`
	Instance uint64 `json:"instance"`
	First    uint64 `json:"first_seq"`
	Last     uint64 `json:"last_seq"`
	// Reason is the loss record's, for one that was lost; empty for events.
	Reason string `json:"reason,omitempty"`
}

// RecordInfo is where a record is (Options.Records).
type RecordInfo struct {
	File          string `json:"file"`
	Offset        int64  `json:"offset"`
	Seq           uint64 `json:"record"`
	Bytes         int    `json:"bytes"`
	PayloadOffset int64  `json:"payload_offset"`
	PayloadBytes  int    `json:"payload_bytes"`
}

// Options of Inspect.
type Options struct {
	// Records lists every record's place.
	Records bool
}

const maxRanges = 64

// Inspect reads the spool in dir without changing it (every record, its
// checksums checked), whether or not a bridge runs on it (Report.Running
// says).
func Inspect(dir string, o Options) (*Report, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	r := &Report{Dir: dir}
	switch lock, err := lockDir(dir, false); {
	case errors.Is(err, errLocked):
		r.Running = true
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("spool directory %s: %w (run as the bridge's user, or root)", dir, err)
	case err != nil:
		return nil, err
	default:
		defer lock.Close()
	}
	st, ok, err := readState(dir)
	if err != nil {
		r.StateError = err.Error()
	}
	fwd := map[markKey]uint64{}
	if ok {
		r.State = &StateReport{Incarnation: st.Incarnation, Cursor: st.Cursor, CursorMsgs: st.CursorMsgs, Synced: st.Synced,
			Next: st.Next, Clean: st.Clean, Sync: st.Sync, BootID: st.BootID}
		for _, m := range st.Marks {
			fwd[markKey{metaKey{m.Host, m.BootID, m.Family, m.Group}, m.Instance}] = m.Forwarded
		}
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		r.Segments = append(r.Segments, SegmentInfo{Path: s.path, First: s.base, Bytes: s.size})
		r.Bytes += s.size
	}
	l := &segLog{dir: dir, segs: segs}
	if n := len(segs); n > 0 {
		l.next.Store(segs[n-1].base + 1)
	}
	cursor := uint64(0)
	if r.State != nil {
		cursor = r.State.Cursor
	}
	subs := map[markKey]*SubscriptionReport{}
	var order []markKey
	sub := func(m *meta, p *part) *SubscriptionReport {
		k := m.markKey(p)
		if s := subs[k]; s != nil {
			return s
		}
		s := &SubscriptionReport{Host: k.Host, BootID: k.BootID, Family: k.Family, Group: k.Group, Instance: k.Instance, Forwarded: fwd[k]}
		subs[k] = s
		order = append(order, k)
		return s
	}
	read := map[markKey]uint64{}
	sc := &scanner{log: l, seg: l.first()}
	defer sc.close()
	for {
		// Every segment is sealed to the scanner: read each to its end.
		it, ok, err := sc.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch it.kind {
		case itemLost:
			d := DamageReport{File: it.file, Offset: it.off, Bytes: it.bytes, What: "unreadable"}
			if it.bytes == 0 {
				d.What = "missing"
			}
			if it.lostTo > it.lostFrom {
				d.FirstRecord, d.LastRecord = it.lostFrom, it.lostTo-1
			}
			if d.Bytes > 0 || d.LastRecord > 0 {
				r.Damage = append(r.Damage, d)
			}
			continue
		case itemDamaged:
			r.Damage = append(r.Damage, damageOf(&it))
		}
		rec := &it.rec
		// Damage that meta did not survive, found from what this record
		// says came before it.
		for i := range rec.meta.Parts {
			p := &rec.meta.Parts[i]
			k := rec.meta.markKey(p)
			if rd, known := read[k]; known && p.Prev > rd && len(r.Damage) > 0 {
				for _, g := range subtract(rd+1, p.Prev, rec.meta, k) {
					last := &r.Damage[len(r.Damage)-1]
					last.Ranges = append(last.Ranges, DamagedRange{Family: k.Family, Group: k.Group, Instance: k.Instance, First: g[0], Last: g[1]})
				}
			}
			read[k] = max(read[k], p.Last, p.Prev)
		}
		r.Records++
		t := time.Unix(0, rec.time).UTC()
		if r.Oldest.IsZero() || t.Before(r.Oldest) {
			r.Oldest = t
		}
		if t.After(r.Newest) {
			r.Newest = t
		}
		pending := rec.seq >= cursor
		if pending {
			r.PendingRecords++
			if r.OldestPending.IsZero() {
				r.OldestPending = t
			}
		}
		if o.Records {
			r.RecordList = append(r.RecordList, RecordInfo{File: it.file, Offset: rec.off, Seq: rec.seq, Bytes: rec.size(),
				PayloadOffset: rec.off + int64(headerSize+rec.metaLen), PayloadBytes: rec.payloadLen})
		}
		seen := map[*SubscriptionReport]bool{}
		for i := range rec.meta.Parts {
			p := &rec.meta.Parts[i]
			s := sub(rec.meta, p)
			if !seen[s] {
				seen[s] = true
				s.Records++
				if s.Oldest.IsZero() {
					s.Oldest = t
				}
				s.Newest = t
			}
			if p.Kind == partLoss {
				s.LossRecords++
				if s.Lost == nil {
					s.Lost = map[string]uint64{}
				}
				s.Lost[p.Reason] += p.Count
				continue
			}
			s.Kernel = p.Kernel
			n := p.events()
			s.Events += n
			r.Events += n
			if pending {
				s.Pending += n
				r.PendingEvents += n
			}
			s.Ranges = addRange(s.Ranges, p.First, p.Last)
		}
	}
	for _, k := range order {
		s := subs[k]
		if len(s.Ranges) > maxRanges {
			s.MoreRanges = len(s.Ranges) - maxRanges
			s.Ranges = s.Ranges[:maxRanges]
		}
		r.Subscriptions = append(r.Subscriptions, *s)
	}
	return r, nil
}

// damageOf is the report of a record whose payload does not check.
func damageOf(it *item) DamageReport {
	d := DamageReport{File: it.file, Offset: it.off, Bytes: int64(it.rec.size()), What: "payload", FirstRecord: it.rec.seq, LastRecord: it.rec.seq}
	m := it.rec.meta
	for i := range m.Parts {
		p := &m.Parts[i]
		k := m.Keys[p.Key]
		dr := DamagedRange{Family: k.Family, Group: k.Group, Instance: p.Instance, First: p.First, Last: p.Last}
		if p.Kind == partLoss {
			dr.Reason = p.Reason
		}
		d.Ranges = append(d.Ranges, dr)
	}
	return d
}

// addRange adds first..last to sorted ranges, merging where they touch.
func addRange(rs [][2]uint64, first, last uint64) [][2]uint64 {
	if n := len(rs); n > 0 && rs[n-1][1]+1 == first {
		rs[n-1][1] = last
		return rs
	}
	rs = append(rs, [2]uint64{first, last})
	slices.SortFunc(rs, func(a, b [2]uint64) int { return int64Cmp(a[0], b[0]) })
	out := rs[:1]
	for _, x := range rs[1:] {
		if y := &out[len(out)-1]; x[0] <= y[1]+1 {
			y[1] = max(y[1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

// Damaged says whether Inspect found damage.
func (r *Report) Damaged() bool { return len(r.Damage) > 0 }
