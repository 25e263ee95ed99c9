package spool

import "sync"

// tailCache keeps the records last written, as they were written, so that
// a forwarder that keeps up takes them from memory instead of reading them
// back from the disk: the writer puts, the forwarder's scanner gets by
// place (segment and offset). Bounded in bytes; the oldest go first. Safe
// for concurrent use.
type tailCache struct {
	mu    sync.Mutex
	ents  []tailEnt
	first int // index of the oldest entry in ents
	bytes int
	max   int
}

type tailEnt struct {
	seg  *segment
	off  int64
	data []byte
}

// tailBytes bounds the cache.
const tailBytes = 8 << 20

func newTailCache(max int) *tailCache { return &tailCache{max: max} }

// put keeps a copy of rec, the record written at off of seg.
func (c *tailCache) put(seg *segment, off int64, rec []byte) {
	if len(rec) > c.max {
		return
	}
	data := append([]byte(nil), rec...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ents = append(c.ents, tailEnt{seg: seg, off: off, data: data})
	c.bytes += len(data)
	for c.bytes > c.max {
		c.bytes -= len(c.ents[c.first].data)
		c.ents[c.first] = tailEnt{}
		c.first++
	}
	if c.first > len(c.ents)/2 && c.first > 64 {
		c.ents = append(c.ents[:0], c.ents[c.first:]...)
		c.first = 0
	}
}

// get returns the record at off of seg, if the cache holds it. The bytes
// are never changed: they may be kept.
func (c *tailCache) get(seg *segment, off int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents := c.ents[c.first:]
	// Records are put in order: search from the newest back.
	for i := len(ents) - 1; i >= 0; i-- {
		e := &ents[i]
		if e.seg == seg {
			switch {
			case e.off == off:
				return e.data, true
			case e.off < off:
				return nil, false
			}
		}
	}
	return nil, false
}
