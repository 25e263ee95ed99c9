package sink

import (
	"bytes"
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
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the JetStream stream the sink publishes into. Zero limits
// mean unlimited.
type StreamConfig struct {
	Name     string
	Subjects []string
	MaxAge   time.Duration
	MaxBytes int64
	MaxMsgs  int64
	// Storage is "file" or "memory".
	Storage  string
	Replicas int
	// DuplicateWindow is how long the server remembers a Nats-Msg-Id: a
	// record published again within it is stored once. It must cover the
	// sink's retries (see JetStreamConfig.RetrySpan).
	DuplicateWindow time.Duration
}

// DefaultStream is the stream the sink creates when told nothing else.
var DefaultStream = StreamConfig{
	Name:            "GENL",
	Subjects:        []string{"genl.>"},
	MaxAge:          24 * time.Hour,
	MaxBytes:        1 << 30,
	Storage:         "file",
	Replicas:        1,
	DuplicateWindow: 2 * time.Minute,
}

// JetStreamConfig configures the JetStream sink.
type JetStreamConfig struct {
	// Subject, LossSubject and Batched are as for the core NATS sink; the
	// stream's subjects must cover the subjects they make.
	Subject, LossSubject Template
	Batched              bool
	Stream               StreamConfig
	// Manage lets the sink create the stream when it is missing. Off, the
	// sink never creates or changes a stream (locked-down accounts): it only
	// checks that the stream exists and covers its subjects, and publishes
	// without checking when the account may not even look at it.
	Manage bool
	// MaxInFlight bounds the messages published and not yet acknowledged.
	MaxInFlight int
	// AckTimeout is how long the sink waits without any acknowledgement
	// before every message still in flight counts as failed and is
	// published again. While acknowledgements keep coming, the server is
	// working through the messages in order and the wait goes on.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between rounds of republishing.
	RetryMin, RetryMax time.Duration
	// ResumeWindow is how many of the last stored events of a
	// subscription Resume reads to find the highest sequence number (see
	// Resume); default 1024. It must cover the largest batch the bridge
	// delivers, which is how far a republished event can land behind later
	// ones.
	ResumeWindow int
	Logger       *slog.Logger
}

func (c *JetStreamConfig) defaults() {
	publishDefaults(&c.Subject, &c.LossSubject, &c.RetryMin, &c.RetryMax, &c.Logger)
	orDefault(&c.Stream.Name, DefaultStream.Name)
	if len(c.Stream.Subjects) == 0 {
		c.Stream.Subjects = DefaultStream.Subjects
	}
	orDefault(&c.Stream.Storage, DefaultStream.Storage)
	orDefault(&c.Stream.Replicas, 1)
	orDefault(&c.Stream.DuplicateWindow, DefaultStream.DuplicateWindow)
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	orDefault(&c.AckTimeout, 5*time.Second)
	if c.ResumeWindow <= 0 {
		c.ResumeWindow = 1024
	}
}

// RetrySpan is how long a message waits between being published and being
// published again, once the acknowledgements before it have come: an
// acknowledgement timeout and the longest backoff.
// A stream's duplicate window must be at least this long for any republish
// to be deduplicated; each further span of outage the window covers is one
// more round of republishing that cannot store a record twice.
func (c *JetStreamConfig) RetrySpan() time.Duration { return c.AckTimeout + c.RetryMax }

// JetStream publishes into a JetStream stream asynchronously, at most
// MaxInFlight messages unacknowledged, every message with the Nats-Msg-Id of
// its records. Deliver returns once the server has acknowledged every
// message of the batch. A message whose acknowledgement fails (an error
// reply, no stream listening, the connection dropping, or no acknowledgement
// at all for AckTimeout) is published again after a backoff, in rounds,
// until it is acknowledged or Deliver's context ends; the server drops the
// repeats that it had stored already, within the stream's duplicate window.
//
// It publishes with plain core NATS requests whose reply subjects name the
// batch and the message, and reads every acknowledgement on one wildcard
// subscription: no future, timer or map entry per message, which is most of
// what jetstream.PublishMsgAsync costs. Close stops the subscription and the
// goroutine that watches the connection for disconnects.
type JetStream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream // nil when the account may not look at it
	cfg    JetStreamConfig
	log    *slog.Logger
	enc    encoder

	prefix   string // reply subjects are prefix + batch generation + "." + slot
	sub      *nats.Subscription
	status   chan nats.Status
	watching chan struct{} // closed when the status watcher has returned
	replies  []byte        // the reply subjects of the batch being delivered
	timer    *time.Timer   // acknowledgement timeout of the current wait

	// Per-batch state, guarded by mu: acknowledgements arrive on the
	// subscription's goroutine and disconnects on the watcher's.
	mu       sync.Mutex
	gen      uint64 // generation of the batch being delivered
	slots    []slot
	inFlight int
	lastErr  error
	rejected error // why a slot of the batch was rejected, if one was
	wake     chan struct{}

	failing bool
	closed  bool

	published    atomic.Uint64 // messages published, repeats included
	acked        atomic.Uint64 // messages acknowledged
	republished  atomic.Uint64 // messages published again
	retries      atomic.Uint64 // rounds of republishing
	duplicates   atomic.Uint64 // acknowledgements that said "duplicate"
	beyondWindow atomic.Uint64 // republished later than the duplicate window after their first publish
	foreign      atomic.Uint64 // replies that were not acknowledgements, ignored
}

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

// JetStreamStats counts what the sink did since it was made.
type JetStreamStats struct {
	Published, Acked, Republished, Retries, Duplicates, BeyondWindow uint64
	// Foreign counts replies that were not acknowledgements (something
	// other than a stream answered on the subject); they are ignored.
	Foreign uint64
}

// Stats returns the counters. Safe to call at any time.
func (s *JetStream) Stats() JetStreamStats {
	return JetStreamStats{Published: s.published.Load(), Acked: s.acked.Load(), Republished: s.republished.Load(),
		Retries: s.retries.Load(), Duplicates: s.duplicates.Load(), BeyondWindow: s.beyondWindow.Load(),
		Foreign: s.foreign.Load()}
}

// NewJetStream provisions or checks the stream (see JetStreamConfig.Manage)
// and returns a sink publishing on nc. The caller owns nc and closes it
// after Close.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	cfg.defaults()
	s := &JetStream{nc: nc, cfg: cfg, log: cfg.Logger, enc: newEncoder(cfg.Subject, cfg.LossSubject, cfg.Batched),
		prefix: nc.NewInbox() + ".", wake: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	s.timer.Stop()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if err := s.provision(ctx); err != nil {
		return nil, err
	}
	s.sub, err = nc.Subscribe(s.prefix+"*.*", s.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	// Acknowledgements of a whole window may arrive at once.
	if err := s.sub.SetPendingLimits(-1, -1); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
	}
	s.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	s.watching = make(chan struct{})
	go s.watch()
	return s, nil
}

// Stream returns the stream, or nil when the account may not look at it.
func (s *JetStream) Stream() jetstream.Stream { return s.stream }

var (
	errNoResponders = errors.New("no stream is listening on the subject")
	errAckTimeout   = errors.New("no acknowledgement within the ack timeout")
)

// onReply takes one acknowledgement (or error reply) for slot i of batch gen.
func (s *JetStream) onReply(m *nats.Msg) {
	gen, i, ok := parseReply(m.Subject[len(s.prefix):])
	if !ok {
		return
	}
	var err error
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		err = errNoResponders
	case len(m.Data) == 0:
		err = fmt.Errorf("empty acknowledgement (status %q)", m.Header.Get("Status"))
	case jsonKey(m.Data, keyError) != nil:
		err = fmt.Errorf("jetstream: %s", bytes.TrimSpace(m.Data))
	case jsonKey(m.Data, keyStream) == nil || jsonKey(m.Data, keySeq) == nil:
		// Not a PubAck: something other than a stream answered on the
		// subject. It proves nothing was stored; the stream's own answer,
		// or the ack timeout, decides.
		s.foreign.Add(1)
		return
	}
	changed := false
	s.mu.Lock()
	if gen == s.gen && i < uint64(len(s.slots)) && s.slots[i].state == slotInFlight {
		changed = true
		s.inFlight--
		if err != nil {
			s.slots[i].state = slotIdle
			s.lastErr = err
		} else {
			s.slots[i].state = slotAcked
			s.acked.Add(1)
			if bytes.HasPrefix(jsonKey(m.Data, keyDuplicate), []byte("true")) {
				s.duplicates.Add(1)
			}
		}
	}
	s.mu.Unlock()
	if changed { // stray replies must not put off the ack timeout
		s.signal()
	}
}

var (
	keyError, keyDuplicate = []byte(`"error"`), []byte(`"duplicate"`)
	keyStream, keySeq      = []byte(`"stream"`), []byte(`"seq"`)
)

// jsonKey returns what follows the quoted key's colon (and any spaces) in a
// flat JSON object such as a PubAck ({"stream":"S","seq":1,"duplicate": true}),
// or nil when the key is not there.
func jsonKey(data, quotedKey []byte) []byte {
	i := bytes.Index(data, quotedKey)
	if i < 0 {
		return nil
	}
	rest := bytes.TrimLeft(data[i+len(quotedKey):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	return bytes.TrimLeft(rest[1:], " \t")
}

// parseReply reads "gen.slot" (base 36) from the end of a reply subject.
func parseReply(tail string) (gen, slot uint64, ok bool) {
	dot := strings.IndexByte(tail, '.')
	if dot < 0 {
		return 0, 0, false
	}
	gen, err1 := strconv.ParseUint(tail[:dot], 36, 64)
	slot, err2 := strconv.ParseUint(tail[dot+1:], 36, 64)
	return gen, slot, err1 == nil && err2 == nil
}

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

// Deliver publishes the batch and waits for every acknowledgement,
// republishing what failed until all is acknowledged or ctx ends.
func (s *JetStream) Deliver(ctx context.Context, b *Batch) error {
	if s.closed {
		return AllUndelivered(b, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return AllUndelivered(b, err) // past the deadline: publish nothing more
	}
	s.enc.encode(b, int(s.nc.MaxPayload()))
	s.prepare()
	bo := Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	var last error // the last failure other than ctx ending
	for round := 0; ; round++ {
		err := s.publishRound(ctx, round > 0)
		if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
			last = err
		}
		if err == nil {
			if s.failing {
				s.failing = false
				s.log.Info("publishing again", "rounds", round+1)
			}
			if s.rejected != nil {
				// Everything else is acknowledged; what the client refused
				// for good is given up on at once, not retried.
				return s.giveUp(b, s.rejected)
			}
			return nil
		}
		if closedForGood(s.nc) {
			return s.giveUp(b, err)
		}
		if !s.failing {
			s.failing = true
			s.log.Warn("jetstream publish failed; republishing with backoff until acknowledged", "err", err)
		}
		if ctx.Err() == nil {
			s.retries.Add(1)
			_ = bo.Sleep(ctx)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return s.giveUp(b, fmt.Errorf("%w (last error: %v)", ctx.Err(), last))
		}
	}
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

// publishRound publishes every message not yet acknowledged and waits until
// none is in flight. It returns nil when all are acknowledged.
func (s *JetStream) publishRound(ctx context.Context, again bool) error {
	var pubErr error
	now := time.Now()
	warned := false
	for i := range s.slots {
		if err := ctx.Err(); err != nil {
			return err // past the deadline: publish nothing more
		}
		if err := s.waitInFlight(ctx, s.cfg.MaxInFlight-1); err != nil {
			return err
		}
		sl := &s.slots[i]
		if sl.state != slotIdle {
			s.mu.Unlock()
			continue
		}
		sl.state = slotInFlight
		s.inFlight++
		s.mu.Unlock()
		if sl.first.IsZero() {
			sl.first = now
		} else if again {
			s.republished.Add(1)
			if now.Sub(sl.first) > s.cfg.Stream.DuplicateWindow {
				s.beyondWindow.Add(1)
				if !warned {
					warned = true
					s.log.Warn("republishing records first published longer ago than the stream's duplicate window; the stream may store them twice",
						"duplicate_window", s.cfg.Stream.DuplicateWindow, "first_published", sl.first)
				}
			}
		}
		if err := s.nc.PublishMsg(&sl.msg); err != nil {
			err = fmt.Errorf("publish %s: %w", s.enc.msgs[i].kind(), err)
			s.mu.Lock()
			if sl.state == slotInFlight {
				sl.state = slotIdle
				s.inFlight--
			}
			if permanent(err) {
				sl.state = slotRejected
				s.rejected = err
			}
			s.mu.Unlock()
			if sl.state == slotRejected {
				continue // this message can never go; the others still can
			}
			pubErr = err
			break
		}
		s.published.Add(1)
	}
	// Wait for every acknowledgement of this round.
	if err := s.waitInFlight(ctx, 0); err != nil {
		return err
	}
	lastErr := s.lastErr
	s.lastErr = nil
	acked := true // or rejected for good
	for i := range s.slots {
		if st := s.slots[i].state; st != slotAcked && st != slotRejected {
			acked = false
			break
		}
	}
	s.mu.Unlock()
	switch {
	case acked:
		return nil
	case pubErr != nil:
		return pubErr
	case lastErr != nil:
		return lastErr
	}
	return errors.New("not acknowledged")
}

// giveUp names the records of every message not acknowledged.
func (s *JetStream) giveUp(b *Batch, err error) error {
	de := &DeliveryError{Err: err}
	s.mu.Lock()
	for i := range s.slots {
		if s.slots[i].state == slotAcked {
			continue
		}
		s.enc.msgs[i].name(de)
	}
	s.gen++ // late acknowledgements find nothing
	s.mu.Unlock()
	return de
}

// Close stops the sink. Every batch was acknowledged or given up on by
// Deliver, so nothing is buffered; the caller closes the connection.
func (s *JetStream) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.nc.RemoveStatusListener(s.status)
	<-s.watching
	if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("unsubscribe from acknowledgements: %w", err)
	}
	return nil
}

// provision creates the stream or checks it, and checks that its duplicate
// window covers the sink's retry span.
func (s *JetStream) provision(ctx context.Context) error {
	want := s.cfg.Stream
	if err := s.checkSubjects(want.Subjects); err != nil {
		return err
	}
	if s.cfg.Manage {
		// What is checked against the stream below, before creating it.
		if err := s.checkWindow(want.DuplicateWindow); err != nil {
			return err
		}
	}
	st, err := s.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && s.cfg.Manage:
		st, err = s.js.CreateStream(ctx, want.jetstream())
		if err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		s.log.Info("created stream", "stream", want.Name, "subjects", strings.Join(want.Subjects, ","), "max_age", want.MaxAge,
			"max_bytes", want.MaxBytes, "max_msgs", want.MaxMsgs, "storage", want.Storage, "replicas", want.Replicas,
			"duplicate_window", want.DuplicateWindow)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s does not exist and the sink may not create it (GENLBRIDGE_STREAM_MANAGE=false): create it with subjects %s",
			want.Name, strings.Join(want.Subjects, ","))
	case err != nil && !s.cfg.Manage:
		s.log.Warn("cannot look at the stream; publishing without checking it or its duplicate window", "stream", want.Name, "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	s.stream = st
	have := st.CachedInfo().Config
	if s.cfg.Manage {
		if d := streamDiff(want, have); len(d) > 0 {
			return fmt.Errorf("stream %s exists with another configuration (left unchanged; change the stream or the GENLBRIDGE_STREAM_* settings): %s",
				want.Name, strings.Join(d, "; "))
		}
		return nil
	}
	if err := s.checkSubjects(have.Subjects); err != nil {
		return fmt.Errorf("stream %s: %w", want.Name, err)
	}
	return s.checkWindow(have.Duplicates)
}

// checkSubjects checks that subjects capture what the templates make.
func (s *JetStream) checkSubjects(subjects []string) error {
	for _, t := range []Template{s.cfg.Subject, s.cfg.LossSubject} {
		probe := t.Subject("f", "g", "h")
		ok := false
		for _, f := range subjects {
			ok = ok || subjectMatches(f, probe)
		}
		if !ok {
			return fmt.Errorf("stream subjects %s do not capture subject template %s", strings.Join(subjects, ","), t)
		}
	}
	return nil
}

// checkWindow fails when no republish could be deduplicated, and warns
// when the window covers only a few rounds of retries.
func (s *JetStream) checkWindow(window time.Duration) error {
	span := s.cfg.RetrySpan()
	if window < span {
		return fmt.Errorf("stream %s: duplicate window %s is shorter than the retry span %s (ack timeout %s + longest backoff %s): a republished record could be stored twice; raise GENLBRIDGE_STREAM_DUPLICATE_WINDOW or lower GENLBRIDGE_FLUSH_TIMEOUT/GENLBRIDGE_RETRY_MAX",
			s.cfg.Stream.Name, window, span, s.cfg.AckTimeout, s.cfg.RetryMax)
	}
	if window < 4*span {
		s.log.Warn("the stream's duplicate window covers fewer than 4 retry spans: a longer outage may store records twice",
			"duplicate_window", window, "retry_span", span)
	}
	s.log.Info("deduplication", "stream", s.cfg.Stream.Name, "duplicate_window", window, "retry_span", span,
		"outage_covered", window-span)
	return nil
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:       c.Name,
		Subjects:   c.Subjects,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     c.MaxAge,
		MaxBytes:   unlimited(c.MaxBytes),
		MaxMsgs:    unlimited(c.MaxMsgs),
		Storage:    storageType(c.Storage),
		Replicas:   c.Replicas,
		Duplicates: c.DuplicateWindow,
	}
	return sc
}

func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func storageType(s string) jetstream.StorageType {
	if s == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// streamDiff lists, field by field, how have differs from want.
func streamDiff(want StreamConfig, have jetstream.StreamConfig) []string {
	w := want.jetstream()
	var d []string
	add := func(field string, h, w any) {
		d = append(d, fmt.Sprintf("%s: stream has %v, configured %v", field, h, w))
	}
	if !sameSet(have.Subjects, w.Subjects) {
		add("subjects", strings.Join(have.Subjects, ","), strings.Join(w.Subjects, ","))
	}
	if have.MaxAge != w.MaxAge {
		add("max_age", have.MaxAge, w.MaxAge)
	}
	if unlimited(have.MaxBytes) != w.MaxBytes {
		add("max_bytes", have.MaxBytes, w.MaxBytes)
	}
	if unlimited(have.MaxMsgs) != w.MaxMsgs {
		add("max_msgs", have.MaxMsgs, w.MaxMsgs)
	}
	if have.Storage != w.Storage {
		add("storage", have.Storage, w.Storage)
	}
	if max(have.Replicas, 1) != w.Replicas {
		add("replicas", have.Replicas, w.Replicas)
	}
	if have.Duplicates != w.Duplicates {
		add("duplicate_window", have.Duplicates, w.Duplicates)
	}
	// A work-queue or interest stream, or one that refuses new messages when
	// full, would make a full stream a delivery that never succeeds.
	if have.Retention != w.Retention {
		add("retention", have.Retention, w.Retention)
	}
	if have.Discard != w.Discard {
		add("discard", have.Discard, w.Discard)
	}
	return d
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s] == 0 {
			return false
		}
		m[s]--
	}
	return true
}

// subjectMatches reports whether the subject filter f (with * and >) matches
// the literal subject.
func subjectMatches(f, subject string) bool {
	ft, st := strings.Split(f, "."), strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
