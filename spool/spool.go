// Package spool keeps a node's events on its own disk while the fleet's
// NATS server cannot take them, and forwards them once it can: nothing is
// lost through an outage longer than the socket buffer holds, with bounded
// disk.
//
// It is the JetStream the bridge already embeds, not a home-made log: an
// in-process nats-server (no network listener) keeps a file-backed stream,
// SPOOL, in Config.Dir. The bridge delivers to Sink, the JetStream sink
// over an in-process connection, which appends every batch to SPOOL as one
// pack per subscription (the messages the hub is to get, encoded once: see
// sink.Unpack) and counts it delivered once stored there. A forwarder (a
// durable consumer) unpacks them and publishes each message to the hub
// given to Forward (the JetStream sink, acknowledged, or the core NATS
// sink, confirmed by a flush) with its Nats-Msg-Id, and acknowledges the
// packs locally only once the hub has all their messages: a lost
// acknowledgement is absorbed by the hub stream's duplicate window, and a
// bridge killed between the two forwards those messages again on start.
// Each forwarded message also carries the spool's incarnation id and its
// place in SPOOL (Header), so that with a JetStream hub the forwarder
// starts past what the hub already stores, even beyond the duplicate
// window.
//
// SPOOL has a byte limit (Config.MaxBytes) and refuses new messages when
// full (discard new): what is spooled is never discarded; the events the
// spool refuses are counted by the bridge as spool_full, and their loss
// records wait until the forwarder has made room. A full disk or an I/O
// error is the same state, logged and counted (Stats), not a crash.
//
// A Spool is made by Open and stopped by Close; its methods are safe for
// concurrent use.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the local stream that holds the spooled messages.
const StreamName = "SPOOL"

// Header is the header every forwarded message carries (sink.TagHeader):
// "<incarnation>:<its pack's sequence in SPOOL>:<its index in the pack>".
const Header = sink.TagHeader

// Config of a spool.
type Config struct {
	// Dir holds the local server's store.
	Dir string
	// MaxBytes bounds what SPOOL holds.
	MaxBytes int64
	// Subjects the bridge publishes on (the event and loss subjects'
	// filters, e.g. genl.>): SPOOL's subjects.
	Subjects []string
	// Sink configures the sink into SPOOL: subjects, batching, window,
	// ack timeout and retries as for the hub (its Stream and Manage are set
	// here).
	Sink sink.JetStreamConfig
	// ResumeFilters are subject filters that match every message this node
	// publishes (its event and loss subjects).
	ResumeFilters []string
	// HubMaxPayload says the payload limit of the fleet's server, asked at
	// every batch (0: not known yet): batched messages are split below it
	// (by default, and while it is not known, 1 MiB, nats-server's).
	HubMaxPayload func() int
	// Window bounds the messages forwarded and not yet acknowledged by the
	// hub (default 4096).
	Window int
	Logger *slog.Logger
}

// Spool is an open spool. Its store (the local server on Config.Dir) is
// replaced when it fails and the disk has room again; the Writer the
// bridge delivers to and the forwarder follow it.
type Spool struct {
	cfg         Config
	log         *slog.Logger
	incarnation string
	opened      time.Time
	writer      *Writer

	st      atomic.Pointer[store]
	broken  atomic.Bool   // a store failed: batches are refused (spool_full) until the disk has room
	failGen atomic.Uint64 // store failures seen; watch replaces the store after each
	kick    chan struct{} // wakes watch at once (a failure seen)
	quit    chan struct{} // stops watch
	done    chan struct{} // closed when watch returns
	// ctx ends at Close: it bounds a forwarder's start (the hub asked what
	// it has), so that Close does not wait for the hub.
	ctx       context.Context
	cancelCtx context.CancelFunc

	mu        sync.Mutex
	fwd       *forwarder    // nil until Forward (and while the store is replaced)
	started   chan struct{} // non-nil while a forwarder is being made; closed when done
	hub       sink.Forwarder
	hubStream jetstream.Stream
	closed    bool

	lastState atomic.Pointer[server.StreamState]

	// Counted across forwarders (see Stats).
	forwarded, refused, damaged atomic.Uint64

	errors  atomic.Uint64 // store errors seen (a full disk, I/O)
	lastErr atomic.Value  // string
}

// Open starts the local server on cfg.Dir and creates SPOOL or takes the
// one there (its limit updated to cfg.MaxBytes). The spool takes events at
// once; it forwards them once Forward has given it the hub, which may be
// later (the fleet's server unreachable when the bridge starts).
func Open(ctx context.Context, cfg Config) (*Spool, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Window <= 0 {
		cfg.Window = 4096
	}
	hubMax := cfg.HubMaxPayload
	cfg.HubMaxPayload = func() int {
		if hubMax != nil {
			if m := hubMax(); m > 0 {
				return m
			}
		}
		return 1 << 20
	}
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("spool: no byte limit")
	}
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	// The disk must hold the limit: what the spool holds now plus what is
	// free, with an eighth for the store's own files.
	if free, ok := freeBytes(cfg.Dir); ok {
		room := int64(min((free+dirBytes(cfg.Dir))/9*8, 1<<62))
		room = max(room, 1<<20) // a disk as good as full: the store fails, and says so
		if cfg.MaxBytes > room {
			cfg.Logger.Warn("GENLBRIDGE_SPOOL_MAX_BYTES is more than the spool's disk holds: the spool's limit is what it holds",
				"max_bytes", cfg.MaxBytes, "limit", room, "dir", cfg.Dir)
			cfg.MaxBytes = room
		}
	}
	s := &Spool{cfg: cfg, log: cfg.Logger, opened: time.Now(), kick: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.cancelCtx = context.WithCancel(context.Background())
	s.writer = &Writer{s: s}
	st, err := s.openStore(ctx)
	if err != nil {
		s.cancelCtx()
		return nil, err
	}
	s.st.Store(st)
	go s.watch()
	stats := s.Stats()
	s.log.Info("spool open", "dir", cfg.Dir, "max_bytes", cfg.MaxBytes, "incarnation", s.incarnation,
		"messages", stats.Messages, "bytes", stats.Bytes)
	return s, nil
}

// Sink is where the bridge delivers: SPOOL, through whichever store is
// current.
func (s *Spool) Sink() *Writer { return s.writer }

// current is the store in use (nil only once closed).
func (s *Spool) current() *store { return s.st.Load() }

// Forward starts forwarding to hub, the sink to the fleet's server. With a
// JetStream hub, hubStream (if not nil) is its stream: what it already
// stores of this spool is not forwarded again (Config.ResumeFilters says
// where to look). It is called once; after Close it returns an error. When
// the forwarder cannot start (the store failing), it is logged and tried
// again until it starts.
func (s *Spool) Forward(ctx context.Context, hub sink.Forwarder, hubStream jetstream.Stream) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return errors.New("spool: closed")
	case s.hub != nil:
		s.mu.Unlock()
		return errors.New("spool: already forwarding")
	}
	s.hub, s.hubStream = hub, hubStream
	s.mu.Unlock()
	if err := s.startForwarder(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("spool: cannot start forwarding yet; trying again", "err", err, "every", watchEvery)
		}
		return nil
	}
	if s.forwarder() != nil {
		st := s.Stats()
		s.log.Info("spool: forwarding to the fleet's server", "messages", st.Messages, "bytes", st.Bytes)
	}
	return nil
}

// startForwarder starts a forwarder on the current store, if there is a
// hub, none runs and the store works. The hub is asked what it has
// without holding mu (Stats must not wait for it), with ctx, which Close
// also ends; Close waits for the start to end. What changed meanwhile (a
// failure, Close) discards the new forwarder.
func (s *Spool) startForwarder(ctx context.Context) error {
	s.mu.Lock()
	st := s.current()
	if s.closed || s.hub == nil || s.fwd != nil || s.started != nil || st == nil || s.broken.Load() {
		s.mu.Unlock()
		return nil
	}
	started := make(chan struct{})
	s.started = started
	hub, hubStream := s.hub, s.hubStream
	s.mu.Unlock()
	defer close(started)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.ctx, stop)()
	f, err := newForwarder(ctx, s, st, hub, hubStream)
	s.mu.Lock()
	s.started = nil
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if s.closed || s.broken.Load() || s.current() != st {
		s.mu.Unlock()
		return f.close()
	}
	s.fwd = f
	s.mu.Unlock()
	return nil
}

func (s *Spool) forwarder() *forwarder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fwd
}

// Stats is what the spool holds and does.
type Stats struct {
	// Messages and Bytes are what SPOOL holds now, MaxBytes its limit.
	Messages, Bytes uint64
	MaxBytes        int64
	// OldestAge is how long the oldest spooled message has waited (0:
	// none).
	OldestAge time.Duration
	// Forwarded counts messages the hub acknowledged (or, core NATS,
	// confirmed), a message sent again (after a restart) again; Refused
	// those it refused for good, dropped from the spool; Damaged the packs
	// that did not unpack whole, dropped.
	Forwarded, Refused, Damaged uint64
	// Forwarding is false while forwarding fails (the hub is unreachable,
	// refuses, or is silent) and the spool is not empty.
	Forwarding bool
	// StalledSince is when forwarding last started to fail (zero while it works).
	StalledSince time.Time
	// StoreErrors counts failures of the local store (a full disk, I/O,
	// JetStream disabled): the spool then refuses new events (spool_full).
	StoreErrors uint64
	LastError   string
	// StoreFailed says the store has failed and is not replaced yet.
	StoreFailed bool
}

// Stats reads SPOOL's state. Safe at any time.
func (s *Spool) Stats() Stats {
	st := Stats{MaxBytes: s.cfg.MaxBytes, StoreErrors: s.errors.Load()}
	if e, ok := s.lastErr.Load().(string); ok {
		st.LastError = e
	}
	if state, ok := s.state(); ok {
		st.Messages, st.Bytes = state.Msgs, state.Bytes
		if st.Messages > 0 && !state.FirstTime.IsZero() {
			st.OldestAge = max(0, time.Since(state.FirstTime))
		}
	}
	if f := s.forwarder(); f != nil && !f.dead() {
		since := f.stalledSince()
		st.Forwarding = since.IsZero() || st.Messages == 0
		st.StalledSince = since
	} else {
		// No hub yet (or the store being replaced): nothing leaves the spool.
		st.Forwarding = st.Messages == 0
		if !st.Forwarding {
			st.StalledSince = s.opened
		}
	}
	st.Forwarded, st.Refused, st.Damaged = s.forwarded.Load(), s.refused.Load(), s.damaged.Load()
	st.StoreFailed = s.broken.Load()
	return st
}

// state reads SPOOL's state from the local server itself (no request on
// the connection the bridge and the forwarder keep busy). When it cannot
// (the store is down), it returns the last state read, and ok only if
// there is one: a spool never reads as empty for want of an answer.
func (s *Spool) state() (server.StreamState, bool) {
	if st := s.current(); st != nil {
		if jsz, err := st.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true}); err == nil {
			for _, a := range jsz.AccountDetails {
				for _, sd := range a.Streams {
					if sd.Name == StreamName {
						s.lastState.Store(&sd.State)
						return sd.State, true
					}
				}
			}
		}
	}
	if last := s.lastState.Load(); last != nil {
		return *last, true
	}
	return server.StreamState{}, false
}

// Ready returns nil while the spool forwards (or has nothing to forward),
// else why not: what the metrics and /readyz say.
func (s *Spool) Ready() error {
	st := s.Stats()
	if st.StoreFailed {
		return fmt.Errorf("spool: its store failed (%s); new events are counted as spool_full", st.LastError)
	}
	if st.Forwarding {
		return nil
	}
	if f := s.forwarder(); f == nil || f.dead() {
		return fmt.Errorf("spool: not forwarding (the fleet's server has not been reachable, or the store is being replaced), %d messages (%d bytes) waiting",
			st.Messages, st.Bytes)
	}
	return fmt.Errorf("spool: forwarding stalled for %s, %d messages (%d bytes) waiting", time.Since(st.StalledSince).Round(time.Second), st.Messages, st.Bytes)
}

// Close stops the forwarder (what it has not forwarded stays spooled, for
// the next start), the sink into SPOOL (batches not stored yet are given
// up on) and the local server.
func (s *Spool) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	f := s.fwd
	s.fwd = nil
	started := s.started
	s.mu.Unlock()
	s.cancelCtx()
	close(s.quit)
	<-s.done
	if started != nil {
		<-started // its forwarder is discarded
	}
	var errs []error
	if f != nil {
		errs = append(errs, f.close())
	}
	if st := s.st.Swap(nil); st != nil {
		errs = append(errs, st.close(ctx))
	}
	return errors.Join(errs...)
}

// storeError notes a failure of the local store; a write failure of the
// current store marks it failed (nats-server refuses every later write to
// it), which watch handles at once.
func (s *Spool) storeError(msg string) { s.storeErrorOf(s.current(), msg) }

func (s *Spool) storeErrorOf(st *store, msg string) {
	s.errors.Add(1)
	s.lastErr.Store(msg)
	if st == nil || st != s.current() {
		return // a store being opened (its error is returned) or one replaced
	}
	if msg := strings.ToLower(msg); strings.Contains(msg, "write error") || strings.Contains(msg, "failed to store") || strings.Contains(msg, "no space left") ||
		strings.Contains(msg, "disabled") || strings.Contains(msg, "out of resources") {
		s.failGen.Add(1)
		s.broken.Store(true)
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// serverLog passes the local server's warnings and errors to the log, and
// notes the failures of its store.
type serverLog struct {
	s  *Spool
	st atomic.Pointer[store]
}

func (l *serverLog) Noticef(format string, v ...any) {}
func (l *serverLog) Debugf(format string, v ...any)  {}
func (l *serverLog) Tracef(format string, v ...any)  {}
func (l *serverLog) Warnf(format string, v ...any) {
	l.s.log.Warn("spool server", "msg", fmt.Sprintf(format, v...))
}
func (l *serverLog) Fatalf(format string, v ...any) {
	l.Errorf(format, v...)
}
func (l *serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.s.storeErrorOf(l.st.Load(), msg)
	l.s.log.Error("spool server", "msg", msg)
}
