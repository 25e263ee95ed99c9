package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// outMsg is one message a window publishes: its subject, its header block
// (holding its Nats-Msg-Id) and its payload. The bytes belong to whoever
// submitted the message until its group is done.
type outMsg struct {
	subject string
	hdr     []byte
	data    []byte
}

// windowConfig configures a window.
type windowConfig struct {
	// Max bounds the messages published and not yet acknowledged, across
	// groups, and MaxBytes their payloads' bytes (batched messages are
	// large: a window of them must not hold the node's memory).
	Max      int
	MaxBytes int
	// AckTimeout: when no acknowledgement arrives for this long while
	// messages are in flight, they all count as failed and go again.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the backoff before publishing again
	// after a failure.
	RetryMin, RetryMax time.Duration
	// DuplicateWindow is the stream's: republishing later than this after
	// the first publish is counted (the stream may store a record twice).
	DuplicateWindow time.Duration
	// Batch publishes the messages as JetStream fast batches (the stream
	// allows it): a run of messages published at once is one batch,
	// acknowledged by the server every few messages and once at its end,
	// rather than a reply for each message. BatchMax bounds a run.
	Batch    bool
	BatchMax int
	Logger   *slog.Logger
}

// window publishes messages to JetStream with at most Max of them
// unacknowledged, whatever groups (batches) they were submitted in, and
// reports each group done, in submission order, once every message of it
// is acknowledged or given up on. One goroutine publishes, in message
// order; after a failure (an error reply, no stream listening, the
// connection dropping, no acknowledgement for AckTimeout) it backs off and
// publishes again from the oldest message not acknowledged, so that a
// server that restarts stores them in order, and the stream's duplicate
// window drops those it had stored already.
//
// Messages are plain core NATS requests whose reply subject names the
// message; acknowledgements come on one wildcard subscription, so a message
// costs no future, timer or map entry. With Batch, a run of messages
// published at once is a JetStream fast batch: each message's reply subject
// names its run and its place in it (nats-server's fast-ingest protocol,
// "<inbox>.<run>.<flow>.fail.<seq>.<op>.$FI"), the run ends with an
// end-of-batch commit, and the server's flow acknowledgements (every few
// messages) and the batch's own PubAck acknowledge the messages, so that a
// run of 500 costs a handful of replies; a run that fails (a gap, an error,
// silence) is published again as a new run, and the duplicate window drops
// what the server had stored of it. submit may be called from one
// goroutine at a time; the done function is called from the goroutine that
// completes a group (the subscription's, the publisher's, or abandon's),
// never with the window's lock held. close stops every goroutine.
type window struct {
	nc     *nats.Conn
	cfg    windowConfig
	log    *slog.Logger
	prefix string // reply subjects are prefix + message id (base 36)
	sub    *nats.Subscription
	status chan nats.Status
	done   func(tag any, failed, refused []int, err error)

	mu       sync.Mutex
	ring     []wslot // message id % len(ring)
	groups   []*wgroup
	bytes    int    // payload bytes of the messages admitted and not done
	head     uint64 // oldest message not done
	next     uint64 // lowest id that may need publishing
	tail     uint64 // next id to give out
	inFlight int
	lastAck  time.Time // last acknowledgement that changed a message
	failing  bool      // a failure is being retried
	retryAt  time.Time
	lastErr  error
	backoff  Backoff
	space    *sync.Cond // signalled when messages are done (room in the ring)
	stopped  bool

	failGen uint64 // counts failures; a message published since the last one that is acknowledged ends failing

	// Fast batches (cfg.Batch): the runs in flight by number, and the
	// next run's number. A run's batch id is runTag (the inbox's unique
	// token: a stream keys batches by id alone) and r<number in base 36>.
	runs   map[uint64]*wrun
	runNo  uint64
	runTag string

	wake   chan struct{}
	quit   chan struct{}
	exited chan struct{} // closed when the publisher has returned

	published    atomic.Uint64
	acked        atomic.Uint64
	republished  atomic.Uint64
	retries      atomic.Uint64
	duplicates   atomic.Uint64
	beyondWindow atomic.Uint64
	foreign      atomic.Uint64
	stalled      atomic.Bool // failing now (for readiness and metrics)
}

// wslot is one message in the ring.
type wslot struct {
	id      uint64
	subject string
	data    []byte
	hdr     []byte // its header block (the submitter's bytes)
	reply   []byte // the reply subject's bytes
	state   uint8
	gen     uint64    // failGen when it was last published
	first   time.Time // first published
	group   *wgroup
	index   int   // in its group
	run     *wrun // the fast batch it was last published in (Batch)
	rseq    int   // its place in that run, from 1
}

// wrun is a fast batch in flight: its number and its messages' ids (the
// ring's first..first+n-1 that were published in it, in order).
type wrun struct {
	no    uint64
	ids   []uint64
	acked int // messages the server said it persisted, from the first
	// last is the subject of its last message, which its end-of-batch
	// goes to (kept here: the slot lets go of it when the message is
	// done, which a flow acknowledgement may make it before the end).
	last string
}

// wgroup is one submitted group of messages.
type wgroup struct {
	tag      any
	first    uint64 // id of its first message
	n        int    // messages admitted so far
	total    int
	failed   []int // indexes given up on
	refused  []int // those of them refused for good (by the client or the server), in failed too
	err      error // why the last of them was
	admitted bool  // every message has an id
}

const (
	slotIdle     = iota // to be published (again)
	slotInFlight        // published, acknowledgement pending
	slotAcked
	slotRejected // given up on for good (refused by the client or the server)
)

var (
	errNoResponders = errors.New("no stream is listening on the subject")
	errAckTimeout   = errors.New("no acknowledgement within the ack timeout")
	errAbandoned    = errors.New("given up")
)

// newWindow subscribes to the acknowledgements and starts the publisher.
// done is called once per submitted group (see window).
func newWindow(nc *nats.Conn, cfg windowConfig, done func(tag any, failed, refused []int, err error)) (*window, error) {
	if cfg.Max <= 0 {
		cfg.Max = 4096
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &window{nc: nc, cfg: cfg, log: cfg.Logger, prefix: nc.NewInbox() + ".", done: done,
		ring: make([]wslot, cfg.Max), wake: make(chan struct{}, 1), quit: make(chan struct{}), exited: make(chan struct{}),
		backoff: Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}}
	w.space = sync.NewCond(&w.mu)
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 500
	}
	w.cfg.BatchMax = min(cfg.BatchMax, len(w.ring))
	w.runs = map[uint64]*wrun{}
	inbox := strings.TrimSuffix(w.prefix, ".")
	w.runTag = inbox[strings.LastIndexByte(inbox, '.')+1:]
	for i := range w.ring {
		s := &w.ring[i]
		s.reply = make([]byte, 0, len(w.prefix)+40)
	}
	var err error
	w.sub, err = nc.Subscribe(w.prefix+">", w.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	// Acknowledgements of a whole window may arrive at once.
	if err := w.sub.SetPendingLimits(-1, -1); err != nil {
		_ = w.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	w.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	go w.run()
	return w, nil
}

func (w *window) slot(id uint64) *wslot { return &w.ring[id%uint64(len(w.ring))] }

// submit admits msgs as one group, blocking while the ring is full, and
// returns once every message has an id (the publisher sends them). When ctx
// ends first, the messages not admitted are given up on (the group is done
// with them failed). The messages' bytes must stay unchanged until the
// group is done.
func (w *window) submit(ctx context.Context, msgs []outMsg, tag any) {
	g := &wgroup{tag: tag, total: len(msgs)}
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.space.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	w.groups = append(w.groups, g)
	g.first = w.tail
	for i := range msgs {
		for (w.tail-w.head >= uint64(len(w.ring)) || w.tail > w.head && w.bytes+len(msgs[i].data) > w.cfg.MaxBytes) &&
			!w.stopped && ctx.Err() == nil {
			w.signal() // what is admitted goes while we wait for room
			w.space.Wait()
		}
		if w.stopped || ctx.Err() != nil {
			err := ctx.Err()
			if w.stopped {
				err = ErrClosed
			}
			for j := i; j < len(msgs); j++ {
				g.failed = append(g.failed, j)
			}
			g.err = err
			break
		}
		id := w.tail
		w.tail++
		s := w.slot(id)
		m := &msgs[i]
		s.id, s.group, s.index, s.state, s.first, s.run = id, g, i, slotIdle, time.Time{}, nil
		s.subject, s.data = m.subject, m.data
		w.bytes += len(m.data)
		s.hdr = m.hdr
		if !w.cfg.Batch {
			s.reply = strconv.AppendUint(append(s.reply[:0], w.prefix...), id, 36)
		}
		g.n++
	}
	g.admitted = true
	callbacks := w.complete()
	w.mu.Unlock()
	w.signal()
	w.call(callbacks)
}

// complete moves head past the messages that are done and returns the
// groups that are done now, in order. Called with mu held.
func (w *window) complete() []*wgroup {
	head := w.head
	for w.head < w.tail {
		s := w.slot(w.head)
		if s.state != slotAcked && s.state != slotRejected {
			break
		}
		w.bytes -= len(s.data)
		// The submitter's bytes are let go: a spooled message's subject,
		// header block and payload are slices of its whole record.
		s.group, s.subject, s.data, s.hdr, s.run = nil, "", nil, nil, nil
		w.head++
	}
	var out []*wgroup
	for len(w.groups) > 0 {
		g := w.groups[0]
		if !g.admitted || g.first+uint64(g.n) > w.head {
			break
		}
		w.groups[0] = nil // the array keeps no group (and its bytes) alive
		w.groups = w.groups[1:]
		out = append(out, g)
	}
	if w.head != head {
		w.space.Broadcast() // room in the ring
		if w.next < w.head {
			w.next = w.head
		}
	}
	return out
}

func (w *window) call(gs []*wgroup) {
	for _, g := range gs {
		w.done(g.tag, g.failed, g.refused, g.err)
	}
}

func (w *window) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// onReply takes one acknowledgement (or error reply) for a message, or
// for a run of them (Batch).
func (w *window) onReply(m *nats.Msg) {
	if w.cfg.Batch {
		w.onRunReply(m)
		return
	}
	id, err := strconv.ParseUint(m.Subject[len(w.prefix):], 36, 64)
	if err != nil {
		return
	}
	var perr error // the server's error
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		perr = errNoResponders
	case len(m.Data) == 0:
		perr = fmt.Errorf("empty acknowledgement (status %q)", m.Header.Get("Status"))
	case jsonKey(m.Data, keyError) != nil:
		perr = fmt.Errorf("jetstream: %s", trimSpace(m.Data))
	case jsonKey(m.Data, keyStream) == nil || jsonKey(m.Data, keySeq) == nil:
		// Not a PubAck: something other than a stream answered on the
		// subject. It proves nothing was stored; the stream's own answer,
		// or the ack timeout, decides.
		w.foreign.Add(1)
		return
	}
	w.mu.Lock()
	s := w.slot(id)
	if s.id != id || s.state != slotInFlight || s.group == nil {
		w.mu.Unlock()
		return // stale: an earlier round's, or given up on
	}
	w.inFlight--
	w.lastAck = time.Now()
	switch {
	case perr != nil:
		s.state = slotIdle
		w.fail(perr, id)
	default:
		s.state = slotAcked
		w.acked.Add(1)
		if hasPrefix(jsonKey(m.Data, keyDuplicate), "true") {
			w.duplicates.Add(1)
		}
		if w.failing && s.gen == w.failGen {
			// Published after the last failure, and stored: the server works again.
			w.recovered()
		}
	}
	callbacks := w.complete()
	w.mu.Unlock()
	w.signal()
	w.call(callbacks)
}

// fail notes a failure of message id: it and those after it go again after
// a backoff. Called with mu held.
func (w *window) fail(err error, id uint64) {
	w.lastErr = err
	w.failGen++
	if id < w.next {
		w.next = id
	}
	if !w.failing {
		w.failing = true
		w.stalled.Store(true)
		w.log.Warn("jetstream publish failed; publishing again with backoff until acknowledged", "err", err)
		w.backoff.Reset()
	}
	if w.retryAt.Before(time.Now()) {
		w.retryAt = time.Now().Add(w.backoff.Next())
		w.retries.Add(1)
	}
}

// recovered ends a failing spell. Called with mu held.
func (w *window) recovered() {
	w.failing = false
	w.stalled.Store(false)
	w.log.Info("publishing again")
}

// denied gives up on every message on subject not yet acknowledged: the
// server refused it for permissions (no acknowledgement will come), and
// will refuse it again. In fast batches, the others in flight go again in
// new runs (the server will not commit a run with a refused message).
func (w *window) denied(subject string) {
	err := fmt.Errorf("%w: %s", ErrPermissionDenied, subject)
	w.mu.Lock()
	n := 0
	for id := w.head; id < w.tail; id++ {
		s := w.slot(id)
		if s.subject != subject || s.group == nil || s.state == slotAcked || s.state == slotRejected {
			continue
		}
		if s.state == slotInFlight {
			w.inFlight--
		}
		s.state, s.run = slotRejected, nil
		s.group.failed = append(s.group.failed, s.index)
		s.group.refused = append(s.group.refused, s.index)
		s.group.err = err
		n++
	}
	if n > 0 && w.cfg.Batch {
		for id := w.head; id < w.tail; id++ {
			if s := w.slot(id); s.state == slotInFlight {
				s.state, s.run = slotIdle, nil
				w.inFlight--
				w.fail(err, id)
			}
		}
		clear(w.runs)
	}
	callbacks := w.complete()
	w.mu.Unlock()
	w.signal()
	w.call(callbacks)
}

// failInFlight marks every message in flight as failed with err.
func (w *window) failInFlight(err error) {
	w.mu.Lock()
	for id := w.head; id < w.tail; id++ {
		if s := w.slot(id); s.state == slotInFlight {
			s.state, s.run = slotIdle, nil
			w.inFlight--
			w.fail(err, id)
		}
	}
	clear(w.runs) // what they had in flight goes again, in new runs
	w.mu.Unlock()
	w.signal()
}

// run is the publisher: it publishes what is to be published, in id order,
// and watches the ack timeout and the connection.
func (w *window) run() {
	defer close(w.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := w.publish()
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-w.quit:
			return
		case <-w.wake:
		case <-timer.C:
		case st, ok := <-w.status:
			if !ok {
				w.status = nil
				continue
			}
			err := nats.ErrDisconnected
			if st == nats.CLOSED {
				err = nats.ErrConnectionClosed
			}
			w.failInFlight(err)
		}
		if wait > 0 && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// publish sends the messages due, and returns how long until something
// is to be looked at again (0: nothing pending but a wake-up).
func (w *window) publish() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if w.inFlight > 0 && now.Sub(w.lastAck) > w.cfg.AckTimeout {
		// Silence: what is in flight is lost (a server that froze, acks lost).
		w.mu.Unlock()
		w.failInFlight(errAckTimeout)
		w.mu.Lock()
		now = time.Now()
	}
	if w.failing && now.Before(w.retryAt) {
		return w.retryAt.Sub(now)
	}
	if closedForGood(w.nc) {
		return 0 // nothing will go: the owner abandons
	}
	warned := false
	var run *wrun // the fast batch being published (Batch)
	defer func() {
		if run != nil {
			w.endRun(run)
		}
	}()
	for w.next < w.tail && w.inFlight < len(w.ring) {
		id := w.next
		s := w.slot(id)
		w.next++
		if s.state != slotIdle {
			if run != nil {
				w.endRun(run) // a run's messages are consecutive
				run = nil
			}
			continue
		}
		if s.first.IsZero() {
			s.first = now
		} else {
			w.republished.Add(1)
			if now.Sub(s.first) > w.cfg.DuplicateWindow && w.cfg.DuplicateWindow > 0 {
				w.beyondWindow.Add(1)
				if !warned {
					warned = true
					w.log.Warn("republishing records first published longer ago than the stream's duplicate window; the stream may store them twice",
						"duplicate_window", w.cfg.DuplicateWindow, "first_published", s.first)
				}
			}
		}
		if w.inFlight == 0 {
			w.lastAck = now // the ack timeout counts from the first message in flight
		}
		if w.cfg.Batch {
			if run != nil && len(run.ids) == w.cfg.BatchMax {
				w.endRun(run)
				run = nil
			}
			if run == nil {
				run = &wrun{no: w.runNo}
				w.runNo++
				w.runs[run.no] = run
			}
			s.run, s.rseq = run, len(run.ids)+1
			op := fastBatchAppend
			if s.rseq == 1 {
				op = fastBatchStart
			}
			s.reply = appendRunReply(s.reply[:0], w.prefix, w.runTag, run.no, s.rseq, op)
		}
		s.state, s.gen = slotInFlight, w.failGen
		w.inFlight++
		err := publishRaw(w.nc, s.subject, unsafe.String(unsafe.SliceData(s.reply), len(s.reply)), s.hdr, s.data)
		if err == nil {
			w.published.Add(1)
			if run != nil {
				run.ids = append(run.ids, id)
				run.last = s.subject
			}
			continue
		}
		s.state = slotIdle
		s.run = nil
		w.inFlight--
		if permanent(err) {
			s.state = slotRejected
			s.group.failed = append(s.group.failed, s.index)
			s.group.refused = append(s.group.refused, s.index)
			s.group.err = fmt.Errorf("publish: %w", err)
			cb := w.complete()
			if len(cb) > 0 {
				w.mu.Unlock()
				w.call(cb)
				w.mu.Lock()
			}
			continue // this message can never go; the others still can
		}
		w.fail(fmt.Errorf("publish: %w", err), id)
		break
	}
	if w.inFlight > 0 {
		return max(time.Millisecond, w.cfg.AckTimeout-now.Sub(w.lastAck))
	}
	if w.failing && w.next < w.tail {
		return max(time.Millisecond, w.retryAt.Sub(now))
	}
	return 0
}

// pending is how many messages are not done.
func (w *window) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.tail - w.head)
}

// abandon gives up on every message not acknowledged: their groups are done
// with them failed (err). Messages acknowledged later find nothing.
func (w *window) abandon(err error) {
	w.mu.Lock()
	for id := w.head; id < w.tail; id++ {
		s := w.slot(id)
		if s.state == slotAcked || s.state == slotRejected {
			continue
		}
		if s.state == slotInFlight {
			w.inFlight--
		}
		s.state = slotRejected
		s.group.failed = append(s.group.failed, s.index)
		s.group.err = err
	}
	clear(w.runs)
	callbacks := w.complete()
	w.mu.Unlock()
	w.call(callbacks)
}

// drain waits until every submitted group is done, or ctx ends, or the
// connection is closed for good; then it abandons the rest with ctx's
// error (and the last failure).
func (w *window) drain(ctx context.Context) error {
	for {
		w.mu.Lock()
		left, last := w.tail-w.head, w.lastErr
		w.mu.Unlock()
		if left == 0 {
			return nil
		}
		if ctx.Err() != nil || closedForGood(w.nc) {
			err := ctx.Err()
			if err == nil {
				err = nats.ErrConnectionClosed
			}
			if last != nil {
				err = fmt.Errorf("%w (last error: %v)", err, last)
			}
			w.abandon(err)
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// close stops the publisher and the subscription; groups not done are
// abandoned with ErrClosed.
func (w *window) close() error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	w.space.Broadcast()
	w.mu.Unlock()
	w.abandon(ErrClosed)
	w.nc.RemoveStatusListener(w.status)
	close(w.quit)
	<-w.exited
	if err := w.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("unsubscribe from acknowledgements: %w", err)
	}
	return nil
}

func trimSpace(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// Fast-batch operations, the reply subject's second to last token.
const (
	fastBatchStart  = 0
	fastBatchAppend = 1
	fastBatchEOB    = 3 // commit, with no message of its own
)

// runFlow is the acknowledgement interval the window asks for (the server
// may lower it): a flow acknowledgement every runFlow messages.
const runFlow = 100

// appendRunReply writes the reply subject of the message at place seq of
// run no: "<prefix><tag>r<no>.<flow>.fail.<seq>.<op>.$FI".
func appendRunReply(dst []byte, prefix, tag string, no uint64, seq, op int) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, tag...)
	dst = append(dst, 'r')
	dst = strconv.AppendUint(dst, no, 36)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, runFlow, 10)
	dst = append(dst, ".fail."...)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(op), 10)
	return append(dst, ".$FI"...)
}

// parseRunReply reads the run number of a reply subject (after the prefix).
func parseRunReply(rest, tag string) (uint64, bool) {
	rest, ok := strings.CutPrefix(rest, tag+"r")
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] != '.' {
		end++
	}
	no, err := strconv.ParseUint(rest[:end], 36, 64)
	return no, err == nil
}

// endRun commits a run: an end-of-batch message on its last message's
// subject, which the server answers with the batch's PubAck once every
// message of it is stored. A run none of whose messages went is dropped.
// Called with mu held.
func (w *window) endRun(r *wrun) {
	if len(r.ids) == 0 {
		delete(w.runs, r.no)
		return
	}
	eob := appendRunReply(nil, w.prefix, w.runTag, r.no, len(r.ids)+1, fastBatchEOB)
	if err := publishRaw(w.nc, r.last, string(eob), nil, nil); err != nil {
		// Its messages time out and go again in another run.
		w.log.Debug("committing a fast batch", "err", err)
	}
}

var (
	keyType, keyBatch, keyCount = []byte(`"type"`), []byte(`"batch"`), []byte(`"count"`)
)

// onRunReply takes a reply to a run: a flow acknowledgement (the first
// seq messages are stored), the batch's PubAck (all count of them are), or
// an error, a gap or a PubAck that falls short (the run failed: what it
// did not store goes again, in a new run).
func (w *window) onRunReply(m *nats.Msg) {
	no, ok := parseRunReply(m.Subject[len(w.prefix):], w.runTag)
	if !ok {
		return
	}
	var stored int  // messages of the run stored, from the first
	var failed bool // the rest failed
	var perr error
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		failed, perr = true, errNoResponders
	case len(m.Data) == 0:
		failed, perr = true, fmt.Errorf("empty acknowledgement (status %q)", m.Header.Get("Status"))
	case jsonKey(m.Data, keyError) != nil:
		failed, perr = true, fmt.Errorf("jetstream: %s", trimSpace(m.Data))
	case hasPrefix(jsonKey(m.Data, keyType), `"ack"`):
		stored = jsonUint(jsonKey(m.Data, keySeq))
	case hasPrefix(jsonKey(m.Data, keyType), `"gap"`):
		failed, perr = true, fmt.Errorf("jetstream fast batch: a gap (%s)", trimSpace(m.Data))
	case jsonKey(m.Data, keyBatch) != nil && jsonKey(m.Data, keyCount) != nil:
		stored, failed = jsonUint(jsonKey(m.Data, keyCount)), true // what it did not count failed
		perr = errors.New("jetstream fast batch: committed short of its messages")
	default:
		w.foreign.Add(1)
		return
	}
	w.mu.Lock()
	r := w.runs[no]
	if r == nil {
		w.mu.Unlock()
		return // stale: a run given up on
	}
	changed := false
	for ; r.acked < min(stored, len(r.ids)); r.acked++ {
		id := r.ids[r.acked]
		s := w.slot(id)
		if s.id != id || s.run != r || s.state != slotInFlight {
			continue
		}
		s.state = slotAcked
		w.inFlight--
		w.acked.Add(1)
		changed = true
		if w.failing && s.gen == w.failGen {
			w.recovered()
		}
	}
	if changed {
		w.lastAck = time.Now()
	}
	if r.acked == len(r.ids) || failed {
		delete(w.runs, no)
	}
	if failed && r.acked < len(r.ids) {
		first, any := uint64(0), false
		for _, id := range r.ids[r.acked:] {
			if s := w.slot(id); s.id == id && s.run == r && s.state == slotInFlight {
				s.state, s.run = slotIdle, nil
				w.inFlight--
				if !any || id < first {
					first, any = id, true
				}
			}
		}
		if any {
			w.fail(perr, first)
		}
	}
	callbacks := w.complete()
	w.mu.Unlock()
	w.signal()
	w.call(callbacks)
}

// jsonUint reads an unsigned integer at the start of v (0: none).
func jsonUint(v []byte) int {
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
