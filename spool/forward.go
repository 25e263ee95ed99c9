package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// forwarder moves the log's records to the fleet's server (the hub),
// unpacked into their messages, in order, and moves the spool's cursor
// past what the hub has; the segments behind the cursor are deleted. It
// is owned by its Spool: run (one goroutine) reads the log and submits
// groups of messages to the hub; the hub's completions (its goroutines)
// advance the cursor, strictly in submission order. close stops it; what
// the hub had not confirmed stays in the log for the next forwarder.
//
// Damage it meets becomes loss records it publishes itself, ahead of the
// messages after it, and counts (Stats): a record whose payload is damaged
// gives its events as a spool_damaged record with their exact range (and
// its own loss records as they were); records that cannot be read at all
// are found from what the records after them say the log covered before
// them (their meta's Prev), or, at the end of the log, from what the
// writer wrote (the marks): the sequence numbers covered there and never
// read are spool_damaged.
type forwarder struct {
	s      *Spool
	hub    sink.Forwarder
	enc    *sink.Encoder // the loss records it makes
	window int

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	urgent chan urgentReq // loss records to publish at once (Spool.direct)

	// run's own.
	sc         *scanner
	cursor     uint64 // records before it were forwarded: skipped
	cursorMsgs int    // messages of record cursor that were
	read       map[markKey]uint64
	sweepDue   bool  // damage seen whose ranges the end of the log may tell
	lastTime   int64 // the time of the last record read
	madeQ      []event.Loss

	mu       sync.Mutex
	inflight int       // messages submitted and not done
	groups   []*fgroup // submitted, not applied yet, in order
	room     chan struct{}
	stopped  bool // a group came back unsent: this forwarder is done
	stalled  time.Time
}

// urgentReq is a Spool.direct call.
type urgentReq struct {
	msgs   []sink.Msg
	result chan error
}

// fgroup is one Forward call.
type fgroup struct {
	msgs []sink.Msg
	recs []grec
	// made is the number of loss records at the front that no record
	// carries (the end-of-log check, refused messages); madeDone says what
	// they move and count once delivered.
	made     int
	madeDone effects
	bytes    int   // the records' bytes read into it
	time     int64 // the first record's
	result   chan error
	// Set by the completion.
	finished        bool
	refused, unsent []int
	err             error
}

// effects are what delivering a record's messages (or the made ones)
// changes: the forwarded marks, the damaged records and the events lost
// by reason it counts.
type effects struct {
	marks   map[markKey]uint64
	damaged uint64
	lost    map[string]uint64
}

func (e *effects) addLost(reason string, n uint64) {
	if e.lost == nil {
		e.lost = map[string]uint64{}
	}
	e.lost[reason] += n
}

func (e *effects) mark(k markKey, v uint64) {
	if e.marks == nil {
		e.marks = map[markKey]uint64{}
	}
	e.marks[k] = v
}

// grec is a record's messages in a group: the messages it contributes
// (loss records the forwarder made for it first, then its own), from
// index from to to of them, at g.msgs[at:].
type grec struct {
	seq      uint64
	meta     *meta
	made     int // of its messages, the first made are loss records the forwarder made
	from, to int
	at       int
	effects
}

// maxGroup and maxGroupBytes bound the messages of one Forward call (a
// record's are never split): batched messages are large.
const (
	maxGroup      = 4096
	maxGroupBytes = 8 << 20
)

func newForwarder(s *Spool, hub sink.Forwarder, cursor uint64, cursorMsgs int, forwarded map[markKey]uint64) *forwarder {
	f := &forwarder{s: s, hub: hub, enc: sink.NewEncoder(sink.EncoderConfig{Subject: s.cfg.Subject, LossSubject: s.cfg.LossSubject, CloudEvents: s.cfg.CloudEvents}), window: s.cfg.Window,
		done: make(chan struct{}), urgent: make(chan urgentReq), room: make(chan struct{}, 1),
		sc: &scanner{log: s.seg, seg: s.seg.find(cursor), tail: s.tail}, cursor: cursor, cursorMsgs: cursorMsgs, read: forwarded, sweepDue: true}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f
}

func (f *forwarder) run() {
	defer close(f.done)
	defer f.sc.close()
	errorLogged := false
	for {
		for f.pending() >= f.window {
			select {
			case <-f.room:
			case <-f.ctx.Done():
				return
			}
		}
		if f.isStopped() {
			return
		}
		select {
		case r := <-f.urgent:
			f.submit(&fgroup{msgs: r.msgs, made: len(r.msgs), result: r.result})
			continue
		default:
		}
		g, err := f.collect()
		if err != nil {
			if !errorLogged {
				f.s.log.Error("spool: reading the log", "err", err)
				errorLogged = true
			}
			f.s.storeFailed(err)
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		errorLogged = false
		if g == nil {
			select {
			case <-f.s.notify:
			case r := <-f.urgent:
				f.submit(&fgroup{msgs: r.msgs, made: len(r.msgs), result: r.result})
			case <-f.ctx.Done():
				return
			}
			continue
		}
		f.submit(g)
	}
}

func (f *forwarder) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight
}

func (f *forwarder) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

// collect reads what the log holds now into a group (nil: nothing).
func (f *forwarder) collect() (*fgroup, error) {
	g := &fgroup{}
	f.mu.Lock()
	madeQ := f.madeQ
	f.madeQ = nil
	f.mu.Unlock()
	if len(madeQ) > 0 {
		g.msgs = lossMsgs(f.enc, madeQ, f.s.hubMaxPayload())
		g.made = len(g.msgs)
	}
	var snap map[markKey]uint64 // the writer's marks when the log seemed read through
	var snapNext uint64         // and the next record's number
	for len(g.msgs) < maxGroup && g.bytes < maxGroupBytes {
		it, ok, err := f.sc.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			if !f.sweepDue || len(g.msgs) > 0 {
				break
			}
			if snap == nil {
				// Read once more after taking the marks: then every
				// record they cover, and every one numbered below
				// snapNext, has been read (or does not exist).
				snapNext = f.s.seg.next.Load()
				snap = f.s.writtenMarks()
				continue
			}
			f.sweep(g, snap, snapNext)
			break
		}
		switch it.kind {
		case itemLost:
			f.lostItem(g, &it)
		case itemDamaged:
			f.damagedItem(g, &it)
		case itemRecord:
			f.recordItem(g, &it)
		}
	}
	if len(g.msgs) == 0 && len(g.recs) == 0 {
		return nil, nil
	}
	return g, nil
}

// recordItem adds a whole record's messages (those not forwarded yet).
func (f *forwarder) recordItem(g *fgroup, it *item) {
	r := &it.rec
	if r.seq < f.cursor {
		return // forwarded before
	}
	f.lastTime = r.time
	g.bytes += r.size()
	rc := grec{seq: r.seq, meta: r.meta}
	made := f.infer(r.meta, r.time, &rc.effects)
	rc.made = len(made)
	f.advanceRead(r.meta, &rc.effects)
	f.addMsgs(g, &rc, made, func(add func(sink.Msg)) {
		_, _ = Unpack(r.payload, func(_ int, subject, hdr, data []byte) bool {
			add(sink.Msg{Subject: unsafe.String(unsafe.SliceData(subject), len(subject)), Hdr: hdr, Data: data})
			return true
		})
	})
}

// damagedItem adds the loss records of a record whose payload is damaged:
// its events as spool_damaged, its loss records as they were.
func (f *forwarder) damagedItem(g *fgroup, it *item) {
	r := &it.rec
	if r.seq < f.cursor {
		return
	}
	f.lastTime = r.time
	rc := grec{seq: r.seq, meta: r.meta}
	made := f.infer(r.meta, r.time, &rc.effects)
	var events uint64
	for i := range r.meta.Parts {
		p := &r.meta.Parts[i]
		if p.Kind == partLoss {
			made = append(made, r.meta.lossOf(p))
			continue
		}
		made = append(made, damagedOf(r.meta.Keys[p.Key], p.Instance, p.First, p.Last, r.time))
		events += p.events()
	}
	rc.addLost(event.ReasonSpoolDamaged, events)
	rc.damaged++
	f.s.log.Error("spool: a record's payload is damaged (its checksum fails); its events are published as a spool_damaged loss record, its loss records as they were",
		"file", it.file, "offset", it.off, "record", r.seq, "events", events)
	rc.made = len(made)
	f.advanceRead(r.meta, &rc.effects)
	f.addMsgs(g, &rc, made, nil)
}

// lostItem notes records that cannot be read: counted, logged; their
// ranges come from the records after them (infer) or the end of the log
// (sweep).
func (f *forwarder) lostItem(g *fgroup, it *item) {
	from := max(it.lostFrom, f.cursor)
	n := uint64(0)
	if it.lostTo > from {
		n = it.lostTo - from
		// The cursor passes them with what comes before.
		g.recs = append(g.recs, grec{seq: it.lostTo - 1, at: len(g.msgs)})
	}
	f.sweepDue = true
	if n == 0 && it.bytes == 0 {
		return
	}
	f.s.countLost(from, it.lostTo)
	f.s.log.Error("spool: bytes of the log that hold no readable record were skipped; what they held is published as spool_damaged loss records where the records around them tell",
		"file", it.file, "offset", it.off, "bytes", it.bytes, "records_lost", n, "first_record", from)
}

// infer returns the spool_damaged loss records for what the log covered
// before record m (its parts' Prev) and the forwarder never read: the
// records between were lost. The record's own ranges are not in them.
func (f *forwarder) infer(m *meta, t int64, e *effects) []event.Loss {
	var out []event.Loss
	for i := range m.Parts {
		p := &m.Parts[i]
		k := m.markKey(p)
		rd, known := f.read[k]
		if !known {
			continue
		}
		if p.Prev <= rd {
			continue
		}
		for _, r := range subtract(rd+1, p.Prev, m, k) {
			out = append(out, damagedOf(k.metaKey, k.Instance, r[0], r[1], t))
			e.addLost(event.ReasonSpoolDamaged, r[1]-r[0]+1)
		}
		f.read[k] = p.Prev
		e.mark(k, p.Prev)
	}
	return out
}

// subtract returns first..last without the ranges of m's parts of key k.
func subtract(first, last uint64, m *meta, k markKey) [][2]uint64 {
	out := [][2]uint64{{first, last}}
	for i := range m.Parts {
		p := &m.Parts[i]
		if p.Last == 0 || m.markKey(p) != k {
			continue
		}
		var next [][2]uint64
		for _, r := range out {
			if p.Last < r[0] || p.First > r[1] {
				next = append(next, r)
				continue
			}
			if p.First > r[0] {
				next = append(next, [2]uint64{r[0], p.First - 1})
			}
			if p.Last < r[1] {
				next = append(next, [2]uint64{p.Last + 1, r[1]})
			}
		}
		out = next
	}
	return out
}

// advanceRead moves the read marks past m's parts, and e's with them.
func (f *forwarder) advanceRead(m *meta, e *effects) {
	for i := range m.Parts {
		p := &m.Parts[i]
		k := m.markKey(p)
		f.read[k] = max(f.read[k], p.Last)
		e.mark(k, f.read[k])
	}
}

// sweep compares what the writer covered (snap, taken before the log was
// read through, when the next record was to be next) with what was read:
// the difference was lost with records no later record speaks for. The
// cursor then passes every number below next.
func (f *forwarder) sweep(g *fgroup, snap map[markKey]uint64, next uint64) {
	f.sweepDue = false
	rc := grec{seq: next - 1}
	var made []event.Loss
	keys := make([]markKey, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b markKey) int { return int64Cmp(a.Instance, b.Instance) })
	for _, k := range keys {
		w := snap[k]
		rd, known := f.read[k]
		if w <= rd {
			continue
		}
		if !known {
			f.s.log.Warn("spool: the log covered sequence numbers of an instance no record was read of; they may be lost, their first is not known",
				"family", k.Family, "group", k.Group, "instance", k.Instance, "up_to", w)
			f.read[k] = w
			continue
		}
		made = append(made, damagedOf(k.metaKey, k.Instance, rd+1, w, f.lastTime))
		rc.addLost(event.ReasonSpoolDamaged, w-rd)
		f.read[k] = w
		rc.mark(k, w)
	}
	for _, l := range made {
		f.s.log.Error("spool: records lost from the log (cut short, damaged or deleted): their events are published as a spool_damaged loss record",
			"family", l.Family, "group", l.Group, "instance", l.Instance, "first_seq", l.FirstSeq, "last_seq", l.LastSeq)
	}
	if rc.seq < f.cursor && len(made) == 0 {
		return
	}
	rc.made = len(made)
	f.addMsgs(g, &rc, made, nil)
}

// addMsgs adds a record's messages to g: the loss records made for it,
// then its own (from fill), skipping those forwarded before.
func (f *forwarder) addMsgs(g *fgroup, rc *grec, made []event.Loss, fill func(add func(sink.Msg))) {
	if g.time == 0 {
		g.time = f.lastTime
	}
	skip := 0
	if rc.seq == f.cursor {
		skip = f.cursorMsgs
	}
	rc.at = len(g.msgs)
	i := 0
	add := func(m sink.Msg) {
		if i >= skip {
			g.msgs = append(g.msgs, m)
		}
		i++
	}
	if len(made) > 0 {
		for _, m := range lossMsgs(f.enc, made, f.s.hubMaxPayload()) {
			add(m)
		}
	}
	if fill != nil {
		fill(add)
	}
	rc.from, rc.to = min(skip, i), i
	g.recs = append(g.recs, *rc)
}

// submit hands g to the hub.
func (f *forwarder) submit(g *fgroup) {
	f.mu.Lock()
	f.inflight += len(g.msgs)
	f.groups = append(f.groups, g)
	f.mu.Unlock()
	f.hub.Forward(f.ctx, g.msgs, func(refused, unsent []int, err error) { f.groupDone(g, refused, unsent, err) })
}

// groupDone takes a completion; completions apply in submission order.
func (f *forwarder) groupDone(g *fgroup, refused, unsent []int, err error) {
	f.mu.Lock()
	g.finished, g.refused, g.unsent, g.err = true, refused, unsent, err
	var ready []*fgroup
	for len(f.groups) > 0 && f.groups[0].finished {
		ready = append(ready, f.groups[0])
		f.groups[0] = nil // the array keeps no group (and its records) alive
		f.groups = f.groups[1:]
	}
	f.mu.Unlock()
	for _, g := range ready {
		f.apply(g)
	}
}

// apply moves the cursor past what the hub has of g, counts, and frees
// the window.
func (f *forwarder) apply(g *fgroup) {
	s := f.s
	f.mu.Lock()
	stopped := f.stopped
	f.inflight -= len(g.msgs)
	f.mu.Unlock()
	defer func() {
		select {
		case f.room <- struct{}{}:
		default:
		}
	}()
	if g.result != nil {
		if len(g.unsent)+len(g.refused) > 0 {
			g.result <- fmt.Errorf("not delivered: %v", g.err)
		} else {
			g.result <- nil
		}
		return
	}
	if stopped {
		return // an earlier group came back unsent: the next forwarder starts there
	}
	firstUnsent := len(g.msgs)
	if len(g.unsent) > 0 {
		firstUnsent = slices.Min(g.unsent)
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		f.cancel()
		if !s.isClosed() {
			s.log.Warn("spool: the fleet's server's sink gave up; what it has not confirmed stays in the spool for the next forwarder", "err", g.err)
		}
	}
	s.forwarded.Add(uint64(len(g.msgs) - len(g.refused) - len(g.unsent)))
	if len(g.refused) > 0 {
		f.refused(g)
	}
	if firstUnsent < g.made {
		return
	}
	apply := []*effects{&g.madeDone}
	// The cursor: past every record whose messages all went, into the
	// first one that did not.
	var cursor uint64
	cursorMsgs := 0
	for i := range g.recs {
		rc := &g.recs[i]
		n := rc.to - rc.from
		if rc.at+n <= firstUnsent {
			cursor, cursorMsgs = rc.seq+1, 0
			apply = append(apply, &rc.effects)
			continue
		}
		if rc.at < firstUnsent {
			cursor, cursorMsgs = rc.seq, rc.from+(firstUnsent-rc.at)
		}
		break
	}
	marks := map[markKey]uint64{}
	for _, e := range apply {
		s.damaged.Add(e.damaged)
		for r, n := range e.lost {
			s.addLost(r, n)
		}
		for k, v := range e.marks {
			marks[k] = max(marks[k], v)
		}
	}
	if cursor != 0 || len(marks) > 0 {
		s.forwardedTo(cursor, cursorMsgs, marks)
	}
}

// queueMade queues loss records for the next group.
func (f *forwarder) queueMade(l []event.Loss) {
	f.mu.Lock()
	f.madeQ = append(f.madeQ, l...)
	f.mu.Unlock()
	select {
	case f.s.notify <- struct{}{}:
	default:
	}
}

// refused turns the messages the hub refused for good into loss records
// (publish_failed) of their events, published with the next group, and
// logs them.
func (f *forwarder) refused(g *fgroup) {
	reason := event.ReasonPublishFailed
	if errors.Is(g.err, sink.ErrPermissionDenied) {
		reason = event.ReasonPublishDenied
	}
	var made []event.Loss
	for _, i := range g.refused {
		if i < g.made {
			continue // a loss record the forwarder made: logged below
		}
		for _, rc := range g.recs {
			if i < rc.at || i >= rc.at+(rc.to-rc.from) {
				continue
			}
			idx := rc.from + (i - rc.at) - rc.made
			if idx < 0 {
				break // a loss record the forwarder made for the record
			}
			rc.meta.partsOf(idx, func(p part) {
				if p.Kind == partEvents {
					made = append(made, event.Loss{Host: rc.meta.Keys[p.Key].Host, BootID: rc.meta.Keys[p.Key].BootID,
						Family: rc.meta.Keys[p.Key].Family, Group: rc.meta.Keys[p.Key].Group, Reason: reason,
						Count: p.events(), FirstSeq: p.First, LastSeq: p.Last, Instance: p.Instance, TimeNS: time.Now().UnixNano()})
				}
			})
			break
		}
	}
	var events uint64
	for _, l := range made {
		events += l.Count
	}
	f.s.refused.Add(uint64(len(g.refused)))
	f.s.addLost(reason, events)
	m := g.msgs[g.refused[0]]
	f.s.log.Error("spool: the fleet's server refuses messages for good; they are dropped from the spool, their events counted as "+reason+" and published as loss records",
		"messages", len(g.refused), "events", events, "first_subject", m.Subject, "first_id", string(sink.MsgIDOf(m.Hdr)), "err", g.err)
	if len(made) > 0 {
		f.queueMade(made)
	}
}

// stalledSince says since when forwarding fails (zero: it does not), as
// the hub sink says it, and logs the changes.
func (f *forwarder) stalledSince() time.Time {
	failing := false
	switch h := f.hub.(type) {
	case *sink.JetStream:
		failing = h.Stats().Stalled
	case *sink.NATS:
		failing = h.Failing()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case failing && f.stalled.IsZero():
		f.stalled = time.Now()
		f.s.log.Warn("spool: forwarding stalled; events are kept in the spool")
	case !failing && !f.stalled.IsZero():
		f.s.log.Info("spool: forwarding again", "stalled_for", time.Since(f.stalled).Round(time.Millisecond))
		f.stalled = time.Time{}
	}
	return f.stalled
}

// oldest is the time of the oldest record submitted and not done (0:
// none).
func (f *forwarder) oldest() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.groups {
		if g.time != 0 {
			return g.time
		}
	}
	return 0
}

// urgentSend publishes msgs at once, ahead of what waits in the log, and
// returns once the hub has them.
func (f *forwarder) urgentSend(ctx context.Context, msgs []sink.Msg) error {
	r := urgentReq{msgs: msgs, result: make(chan error, 1)}
	select {
	case f.urgent <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-f.done:
		return errors.New("not forwarding")
	}
	select {
	case err := <-r.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops reading and forwarding; groups submitted and not done are
// given up on by the hub sink itself.
func (f *forwarder) close() {
	f.cancel()
	<-f.done
}

// waitIdle waits, while the hub takes messages, until no message it
// submitted waits for the hub, or ctx ends.
func (f *forwarder) waitIdle(ctx context.Context) {
	for f.pending() > 0 && ctx.Err() == nil && f.stalledSince().IsZero() {
		select {
		case <-f.room:
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// dead says whether run has returned on its own (the hub gave up on a
// group): a new forwarder must take over.
func (f *forwarder) dead() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}
