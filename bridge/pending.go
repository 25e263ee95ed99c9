package bridge

import (
	"cmp"
	"slices"

	"github.com/genlbridge/genlbridge/event"
)

// pendingLosses holds the loss records waiting for the sink as a set of
// sequence ranges per key (subscription, reason, instance): a record whose
// range touches one already there extends it, whatever order they come
// in, so that a long loss (a spool full for minutes, its refused batches
// requeued out of order) stays a few exact records. Records without a
// range add up per key. Not safe for concurrent use (the ledger locks).
type pendingLosses struct {
	ranged map[lossKey][]lossRange // sorted, disjoint, never touching
	counts map[lossKey]*lossRange  // count-only (first, last 0)
	n      int                     // records held
}

// lossKey is what a record's range is a range of.
type lossKey struct {
	host, boot, family, group, reason string
	instance                          uint64
}

// lossRange is a run of lost sequence numbers (or, count-only, a count)
// and the time of the earliest record in it.
type lossRange struct {
	first, last, count uint64
	time               int64
}

func keyOf(r *event.Loss) lossKey {
	return lossKey{r.Host, r.BootID, r.Family, r.Group, r.Reason, r.Instance}
}

// add merges rec in.
func (p *pendingLosses) add(rec event.Loss) {
	if p.ranged == nil {
		p.ranged, p.counts = map[lossKey][]lossRange{}, map[lossKey]*lossRange{}
	}
	k := keyOf(&rec)
	if rec.FirstSeq == 0 || rec.LastSeq < rec.FirstSeq || p.n >= maxPendingLosses && !p.touches(k, rec.FirstSeq, rec.LastSeq) {
		k.instance = 0 // a count-only record has no instance
		if c := p.counts[k]; c != nil {
			c.count += rec.Count
			c.time = min(c.time, rec.TimeNS)
			return
		}
		p.counts[k] = &lossRange{count: rec.Count, time: rec.TimeNS}
		p.n++
		return
	}
	rs := p.ranged[k]
	// The first range that ends at or after rec's start - 1.
	i, _ := slices.BinarySearchFunc(rs, rec.FirstSeq, func(r lossRange, first uint64) int {
		return cmp.Compare(r.last+1, first)
	})
	nr := lossRange{first: rec.FirstSeq, last: rec.LastSeq, time: rec.TimeNS}
	j := i
	for j < len(rs) && rs[j].first <= nr.last+1 {
		nr.first, nr.last = min(nr.first, rs[j].first), max(nr.last, rs[j].last)
		nr.time = min(nr.time, rs[j].time)
		j++
	}
	p.n += 1 - (j - i)
	p.ranged[k] = slices.Replace(rs, i, j, nr)
}

// touches says whether first..last extends or overlaps a range of k.
func (p *pendingLosses) touches(k lossKey, first, last uint64) bool {
	rs := p.ranged[k]
	i, _ := slices.BinarySearchFunc(rs, first, func(r lossRange, first uint64) int {
		return cmp.Compare(r.last+1, first)
	})
	return i < len(rs) && rs[i].first <= last+1
}

// take appends the records to dst, oldest first, and empties the set.
func (p *pendingLosses) take(dst []event.Loss) []event.Loss {
	start := len(dst)
	for k, rs := range p.ranged {
		for _, r := range rs {
			dst = append(dst, event.Loss{Host: k.host, BootID: k.boot, Family: k.family, Group: k.group, Reason: k.reason,
				Count: r.last - r.first + 1, FirstSeq: r.first, LastSeq: r.last, Instance: k.instance, TimeNS: r.time})
		}
	}
	for k, c := range p.counts {
		dst = append(dst, event.Loss{Host: k.host, BootID: k.boot, Family: k.family, Group: k.group, Reason: k.reason,
			Count: c.count, TimeNS: c.time})
	}
	slices.SortFunc(dst[start:], func(a, b event.Loss) int {
		return cmp.Or(cmp.Compare(a.TimeNS, b.TimeNS), cmp.Compare(a.FirstSeq, b.FirstSeq))
	})
	clear(p.ranged)
	clear(p.counts)
	p.n = 0
	return dst
}
