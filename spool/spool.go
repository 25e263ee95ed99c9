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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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
	// Window bounds the messages forwarded and not yet acknowledged by the
	// hub (default 4096).
	Window int
	Logger *slog.Logger
}

// Spool is an open spool.
type Spool struct {
	cfg         Config
	log         *slog.Logger
	srv         *server.Server
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      jetstream.Stream
	sink        *sink.JetStream
	incarnation string
	opened      time.Time

	mu     sync.Mutex
	fwd    *forwarder // nil until Forward
	closed bool

	lastState atomic.Pointer[server.StreamState]

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
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("spool: no byte limit")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	f, err := os.CreateTemp(cfg.Dir, ".writable-*")
	if err != nil {
		return nil, fmt.Errorf("spool directory not writable: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	s := &Spool{cfg: cfg, log: cfg.Logger, opened: time.Now()}
	opts := &server.Options{
		ServerName: "genlbridge-spool",
		DontListen: true,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// The stream's limit with room for the store's own files.
		JetStreamMaxStore:  cfg.MaxBytes + cfg.MaxBytes/8 + 64<<20,
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("spool server: %w", err)
	}
	srv.SetLoggerV2(&serverLog{s: s}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("spool server: not ready after 30s")
	}
	s.srv = srv
	if s.nc, err = nats.Connect("", nats.InProcessServer(srv), nats.Name("genlbridge spool"), nats.MaxReconnects(-1)); err != nil {
		s.shutdownServer()
		return nil, fmt.Errorf("spool connection: %w", err)
	}
	if err := s.openStream(ctx); err != nil {
		s.nc.Close()
		s.shutdownServer()
		return nil, err
	}
	sc := cfg.Sink
	sc.Stream = sink.StreamConfig{Name: StreamName, Subjects: cfg.Subjects, DuplicateWindow: 2 * time.Minute}
	sc.Manage = false // openStream made it, with its own retention
	sc.Pack = true    // a batch's messages of a subscription in one spool message
	sc.Classify = s.classify
	sc.Logger = cfg.Logger.With("part", "spool")
	if s.sink, err = sink.NewJetStream(ctx, s.nc, sc); err != nil {
		s.nc.Close()
		s.shutdownServer()
		return nil, fmt.Errorf("spool sink: %w", err)
	}
	st := s.Stats()
	s.log.Info("spool open", "dir", cfg.Dir, "max_bytes", cfg.MaxBytes, "incarnation", s.incarnation,
		"messages", st.Messages, "bytes", st.Bytes)
	return s, nil
}

// Forward starts forwarding to hub, the sink to the fleet's server. With a
// JetStream hub, hubStream (if not nil) is its stream: what it already
// stores of this spool is not forwarded again (Config.ResumeFilters says
// where to look). It is called once; after Close it returns an error.
func (s *Spool) Forward(ctx context.Context, hub sink.Forwarder, hubStream jetstream.Stream) error {
	if err := s.startForwarder(ctx, hub, hubStream); err != nil {
		return err
	}
	st := s.Stats()
	s.log.Info("spool: forwarding to the fleet's server", "messages", st.Messages, "bytes", st.Bytes)
	return nil
}

func (s *Spool) startForwarder(ctx context.Context, hub sink.Forwarder, hubStream jetstream.Stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("spool: closed")
	case s.fwd != nil:
		return errors.New("spool: already forwarding")
	}
	f, err := newForwarder(ctx, s, hub, hubStream)
	if err != nil {
		return err
	}
	s.fwd = f
	return nil
}

func (s *Spool) forwarder() *forwarder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fwd
}

// openStream creates SPOOL or takes the existing one, with this
// configuration's limit, and reads its incarnation id.
func (s *Spool) openStream(ctx context.Context) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.js = js
	want := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "genlbridge's spool: events waiting to be forwarded to the fleet's server",
		Subjects:    s.cfg.Subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    s.cfg.MaxBytes,
		MaxMsgs:     -1,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Duplicates:  2 * time.Minute,
	}
	st, err := js.Stream(ctx, StreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		id := make([]byte, 8)
		_, _ = rand.Read(id)
		want.Metadata = map[string]string{"incarnation": hex.EncodeToString(id)}
		if st, err = js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("spool: create stream: %w", err)
		}
	case err != nil:
		return fmt.Errorf("spool: stream: %w", err)
	default:
		have := st.CachedInfo().Config
		want.Metadata = have.Metadata
		if have.MaxBytes != want.MaxBytes || !sameStrings(have.Subjects, want.Subjects) {
			if st, err = js.UpdateStream(ctx, want); err != nil {
				return fmt.Errorf("spool: update stream (limit %d, subjects %s): %w", want.MaxBytes, strings.Join(want.Subjects, ","), err)
			}
		}
	}
	s.stream = st
	s.incarnation = st.CachedInfo().Config.Metadata["incarnation"]
	if s.incarnation == "" {
		s.incarnation = "unknown"
	}
	return nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// classify says which error replies of SPOOL mean it has no room: its byte
// limit (discard new), or the store failing (a full disk, an I/O error, its
// JetStream disabled: then nothing answers at all).
func (s *Spool) classify(reply []byte) error {
	if !s.srv.JetStreamEnabled() {
		return fmt.Errorf("%w: its store is disabled", sink.ErrSpoolFull)
	}
	r := string(reply)
	switch {
	case strings.Contains(r, "maximum bytes exceeded"), strings.Contains(r, "maximum messages exceeded"):
		return sink.ErrSpoolFull
	case strings.Contains(r, "insufficient resources"), strings.Contains(r, "no space left"),
		strings.Contains(r, "10077"), strings.Contains(r, "store"):
		return fmt.Errorf("%w: %s", sink.ErrSpoolFull, strings.TrimSpace(r))
	}
	return nil
}

// Sink is where the bridge delivers: SPOOL.
func (s *Spool) Sink() *sink.JetStream { return s.sink }

// Stats is what the spool holds and does.
type Stats struct {
	// Messages and Bytes are what SPOOL holds now, MaxBytes its limit.
	Messages, Bytes uint64
	MaxBytes        int64
	// OldestAge is how long the oldest spooled message has waited (0:
	// none).
	OldestAge time.Duration
	// Forwarded counts messages the hub acknowledged (or, core NATS,
	// confirmed); Refused those it refused for good (dropped); Damaged the
	// packs that did not unpack whole.
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
	if f := s.forwarder(); f != nil {
		st.Forwarded, st.Refused, st.Damaged = f.forwarded.Load(), f.refused.Load(), f.damaged.Load()
		since := f.stalledSince()
		st.Forwarding = since.IsZero() || st.Messages == 0
		st.StalledSince = since
	} else {
		// No hub yet: nothing leaves the spool.
		st.Forwarding = st.Messages == 0
		if !st.Forwarding {
			st.StalledSince = s.opened
		}
	}
	return st
}

// state reads SPOOL's state from the local server itself (no request on
// the connection the bridge and the forwarder keep busy). When it cannot
// (the store is down), it returns the last state read, and ok only if
// there is one: a spool never reads as empty for want of an answer.
func (s *Spool) state() (server.StreamState, bool) {
	jsz, err := s.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err == nil {
		for _, a := range jsz.AccountDetails {
			for _, sd := range a.Streams {
				if sd.Name == StreamName {
					s.lastState.Store(&sd.State)
					return sd.State, true
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
	if st.Forwarding {
		return nil
	}
	if s.forwarder() == nil {
		return fmt.Errorf("spool: not forwarding yet (the fleet's server has not been reachable since the start %s ago), %d messages (%d bytes) waiting",
			time.Since(s.opened).Round(time.Second), st.Messages, st.Bytes)
	}
	return fmt.Errorf("spool: forwarding stalled for %s, %d messages (%d bytes) waiting", time.Since(st.StalledSince).Round(time.Second), st.Messages, st.Bytes)
}

// Close stops the forwarder (what it has not forwarded stays spooled, for
// the next start), the sink into SPOOL (batches not stored yet are given
// up on) and the local server.
func (s *Spool) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	f := s.fwd
	s.mu.Unlock()
	var errs []error
	if f != nil {
		errs = append(errs, f.close())
	}
	if s.sink != nil {
		errs = append(errs, s.sink.Close(ctx))
	}
	s.nc.Close()
	s.shutdownServer()
	return errors.Join(errs...)
}

func (s *Spool) shutdownServer() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// storeError notes a failure of the local store.
func (s *Spool) storeError(msg string) {
	s.errors.Add(1)
	s.lastErr.Store(msg)
}

// serverLog passes the local server's warnings and errors to the log, and
// notes the store's failures.
type serverLog struct{ s *Spool }

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
	l.s.storeError(msg)
	l.s.log.Error("spool server", "msg", msg)
}
