// Package audit proves from the records alone that a stream of genlbridge
// events is complete: per (host, boot id, family, group, instance), which
// sequence numbers arrived, which arrived twice, which are missing and
// whether a loss record accounts for each missing one (and for what
// reason), and whether loss records claim events that arrived or claim the
// same numbers twice.
//
// Records may come in any order, as a JetStream consumer sees them after
// republishes; an Auditor keeps, per instance, the runs of sequence
// numbers it saw (a few runs, whatever the number of events). Only the
// span a stream holds can be judged: numbers before the first one seen of
// an instance (events from before the bridge joined, or before the audited
// time range) are no hole.
//
// An Auditor is used by one goroutine at a time.
package audit

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/genlbridge/genlbridge/event"
)

// Key is what one sequence counts within.
type Key struct {
	Host, BootID, Family, Group string
	Instance                    uint64
}

func (k Key) String() string {
	return fmt.Sprintf("%s %s/%s boot %s instance %d", k.Host, k.Family, k.Group, k.BootID, k.Instance)
}

// sub is a subscription on a host in one boot: where count-only loss
// records (without a range) belong.
type sub struct{ Host, BootID, Family, Group string }

// Range is an inclusive run of sequence numbers.
type Range struct{ First, Last uint64 }

func (r Range) n() uint64 { return r.Last - r.First + 1 }

// LossRange is a loss record's range.
type LossRange struct {
	Range
	Reason string
	Count  uint64
}

// instance is what the Auditor keeps of one Key.
type instance struct {
	kernel bool    // seq_src kernel (else bridge)
	runs   []Range // sequence numbers seen, sorted, disjoint, not adjacent
	dups   []Range // numbers seen more than once (each run as found)
	losses []LossRange
	events uint64
}

// Auditor takes records and reports on them.
type Auditor struct {
	inst      map[Key]*instance
	countOnly map[sub]map[string]uint64 // reason -> events lost without a range
	events    uint64
	losses    uint64
	bad       []string // records that could not be read
}

// New returns an empty Auditor.
func New() *Auditor {
	return &Auditor{inst: map[Key]*instance{}, countOnly: map[sub]map[string]uint64{}}
}

func (a *Auditor) instance(k Key) *instance {
	in := a.inst[k]
	if in == nil {
		in = &instance{}
		a.inst[k] = in
	}
	return in
}

// Event takes one event.
func (a *Auditor) Event(e *event.Event) {
	a.events++
	in := a.instance(Key{e.Host, e.BootID, e.Family, e.Group, e.Instance})
	in.kernel = e.SeqSource == event.SeqKernel
	in.events++
	if dup := in.add(e.Seq); dup {
		in.dups = addRun(in.dups, e.Seq)
	}
}

// Loss takes one loss record. A range that runs backwards, reaches the
// last number there is, or whose count is not its length is a malformed
// record: noted unreadable (it fails the audit), not counted.
func (a *Auditor) Loss(l *event.Loss) {
	if l.FirstSeq != 0 || l.LastSeq != 0 {
		if l.FirstSeq == 0 || l.LastSeq < l.FirstSeq || l.LastSeq == math.MaxUint64 || l.LastSeq-l.FirstSeq+1 != l.Count {
			a.Unreadable(fmt.Sprintf("loss record %s/%s %s boot %s instance %d reason %s: range %d-%d with count %d",
				l.Family, l.Group, l.Host, l.BootID, l.Instance, l.Reason, l.FirstSeq, l.LastSeq, l.Count))
			return
		}
	}
	a.losses += l.Count
	if l.FirstSeq == 0 && l.LastSeq == 0 {
		s := sub{l.Host, l.BootID, l.Family, l.Group}
		if a.countOnly[s] == nil {
			a.countOnly[s] = map[string]uint64{}
		}
		a.countOnly[s][l.Reason] += l.Count
		return
	}
	in := a.instance(Key{l.Host, l.BootID, l.Family, l.Group, l.Instance})
	in.kernel = true // only the module's numbers have ranges
	in.losses = append(in.losses, LossRange{Range{l.FirstSeq, l.LastSeq}, l.Reason, l.Count})
}

// Envelope takes a record of either type.
func (a *Auditor) Envelope(v *event.Envelope) {
	if v.Type == "loss" {
		l := v.Loss()
		a.Loss(&l)
		return
	}
	a.Event(&v.Event)
}

// Unreadable notes a record that could not be decoded (it fails the audit).
func (a *Auditor) Unreadable(what string) { a.bad = append(a.bad, what) }

// add records seq; it reports whether seq was seen before.
func (in *instance) add(seq uint64) bool {
	runs := in.runs
	// The common case: the next number of the last run.
	if n := len(runs); n > 0 && runs[n-1].Last+1 == seq {
		runs[n-1].Last = seq
		return false
	}
	i := sort.Search(len(runs), func(i int) bool { return runs[i].Last >= seq })
	if i < len(runs) && runs[i].First <= seq {
		return true
	}
	in.runs = insertRun(runs, i, seq)
	return false
}

// insertRun puts seq (in no run) before runs[i], merging neighbours.
func insertRun(runs []Range, i int, seq uint64) []Range {
	joinPrev := i > 0 && runs[i-1].Last+1 == seq
	joinNext := i < len(runs) && seq+1 == runs[i].First
	switch {
	case joinPrev && joinNext:
		runs[i-1].Last = runs[i].Last
		return slices.Delete(runs, i, i+1)
	case joinPrev:
		runs[i-1].Last = seq
	case joinNext:
		runs[i].First = seq
	default:
		runs = slices.Insert(runs, i, Range{seq, seq})
	}
	return runs
}

// addRun adds seq to a list of runs (for duplicates).
func addRun(runs []Range, seq uint64) []Range {
	i := sort.Search(len(runs), func(i int) bool { return runs[i].Last >= seq })
	if i < len(runs) && runs[i].First <= seq {
		return runs
	}
	return insertRun(runs, i, seq)
}

// Instance is the report of one Key.
type Instance struct {
	Key
	Kernel bool // seq_src kernel: the module's numbers
	// First and Last are the lowest and highest number seen, as an event
	// or in a loss record's range; Events counts the events.
	First, Last uint64
	Events      uint64
	// Duplicates are numbers that arrived more than once.
	Duplicates []Range
	// Covered are the missing numbers loss records account for, by reason.
	Covered map[string]uint64
	// Holes are missing numbers no loss record with a range accounts for.
	// Of a bridge-numbered instance, and of the module's when count-only
	// records of the subscription are left, they may be among what
	// count-only records report: Report.Unplaced says how many are.
	Holes []Range
	// Overlaps are loss ranges that claim numbers that arrived as events
	// (counted twice), and OverlappingLosses numbers that two loss records
	// claim.
	Overlaps          []LossRange
	OverlappingLosses []Range
}

// Report is what the records prove.
type Report struct {
	Events, Lost uint64 // events seen, and events loss records report
	Instances    []Instance
	// Unplaced are the events count-only loss records report (no range),
	// by subscription (host family/group) and reason; UncoveredHoles the
	// missing numbers neither a ranged record nor those counts account
	// for.
	Unplaced       map[string]map[string]uint64
	UncoveredHoles uint64
	Unreadable     []string
}

// OK reports whether nothing is missing without a loss record and nothing
// is counted twice.
func (r *Report) OK() bool {
	if r.UncoveredHoles > 0 || len(r.Unreadable) > 0 {
		return false
	}
	for i := range r.Instances {
		in := &r.Instances[i]
		if len(in.Duplicates) > 0 || len(in.Overlaps) > 0 || len(in.OverlappingLosses) > 0 {
			return false
		}
	}
	return true
}

// Report judges what was taken so far.
func (a *Auditor) Report() Report {
	r := Report{Events: a.events, Lost: a.losses, Unplaced: map[string]map[string]uint64{}, Unreadable: slices.Clone(a.bad)}
	keys := make([]Key, 0, len(a.inst))
	for k := range a.inst {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y Key) int {
		return cmp.Or(cmp.Compare(x.Host, y.Host), cmp.Compare(x.Family, y.Family), cmp.Compare(x.Group, y.Group),
			cmp.Compare(x.BootID, y.BootID), cmp.Compare(x.Instance, y.Instance))
	})
	holes := map[sub]uint64{} // holes no ranged record covers, by subscription
	for _, k := range keys {
		in := a.inst[k]
		rep := Instance{Key: k, Kernel: in.kernel, Events: in.events, Duplicates: in.dups, Covered: map[string]uint64{}}
		losses := slices.Clone(in.losses)
		slices.SortFunc(losses, func(x, y LossRange) int { return cmp.Compare(x.First, y.First) })
		// The span: every number seen or claimed.
		first, last := uint64(0), uint64(0)
		if len(in.runs) > 0 {
			first, last = in.runs[0].First, in.runs[len(in.runs)-1].Last
		}
		for _, l := range losses {
			if first == 0 || l.First < first {
				first = l.First
			}
			last = max(last, l.Last)
		}
		rep.First, rep.Last = first, last
		// Loss ranges against events, and against each other (sorted by
		// First: one overlaps an earlier one when it starts before the
		// furthest end so far).
		var reach uint64
		for i, l := range losses {
			if overlapsRuns(in.runs, l.Range) {
				rep.Overlaps = append(rep.Overlaps, l)
			}
			if i > 0 && l.First <= reach {
				rep.OverlappingLosses = append(rep.OverlappingLosses, Range{l.First, min(l.Last, reach)})
			}
			reach = max(reach, l.Last)
		}
		// The gaps between the runs seen, and how loss ranges cover them.
		for _, g := range gaps(in.runs, first, last) {
			rep.Holes = append(rep.Holes, subtract(g, losses)...)
			for _, l := range losses {
				if lo, hi := max(g.First, l.First), min(g.Last, l.Last); lo <= hi {
					rep.Covered[l.Reason] += hi - lo + 1
				}
			}
		}
		for _, h := range rep.Holes {
			holes[sub{k.Host, k.BootID, k.Family, k.Group}] += h.n()
		}
		r.Instances = append(r.Instances, rep)
	}
	// Count-only records pay for holes of their subscription.
	for s, byReason := range a.countOnly {
		name := s.Host + " " + s.Family + "/" + s.Group
		if r.Unplaced[name] == nil {
			r.Unplaced[name] = map[string]uint64{}
		}
		var pool uint64
		for reason, n := range byReason {
			r.Unplaced[name][reason] += n
			pool += n
		}
		paid := min(pool, holes[s])
		holes[s] -= paid
	}
	for _, n := range holes {
		r.UncoveredHoles += n
	}
	return r
}

// overlapsRuns reports whether any number of l is in runs.
func overlapsRuns(runs []Range, l Range) bool {
	i := sort.Search(len(runs), func(i int) bool { return runs[i].Last >= l.First })
	return i < len(runs) && runs[i].First <= l.Last
}

// gaps returns the numbers of first..last in no run.
func gaps(runs []Range, first, last uint64) []Range {
	var out []Range
	next := first
	for _, r := range runs {
		if r.First > next {
			out = append(out, Range{next, r.First - 1})
		}
		next = max(next, r.Last+1)
	}
	if first != 0 && next <= last {
		out = append(out, Range{next, last})
	}
	return out
}

// subtract returns the parts of g no loss range (sorted by First) covers.
func subtract(g Range, losses []LossRange) []Range {
	var out []Range
	next := g.First
	for _, l := range losses {
		if l.Last < next || l.First > g.Last {
			continue
		}
		if l.First > next {
			out = append(out, Range{next, l.First - 1})
		}
		next = max(next, l.Last+1)
		if next > g.Last {
			return out
		}
	}
	if next <= g.Last {
		out = append(out, Range{next, g.Last})
	}
	return out
}
