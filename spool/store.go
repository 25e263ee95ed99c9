package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// store is one run of the local server on the spool's directory: the
// server, the in-process connection, SPOOL and the sink into it. A failed
// store (a full disk: nats-server refuses every write once one has failed)
// is replaced by a new one on the same directory (Spool.reopen).
type store struct {
	srv    *server.Server
	nc     *nats.Conn
	stream jetstream.Stream
	sink   *sink.JetStream
}

// checkDir makes the directory and checks that it takes a file.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("spool directory not writable: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// dirBytes is the size of the files under dir (the spool's store).
func dirBytes(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += uint64(info.Size())
			}
		}
		return nil
	})
	return n
}

// openStore starts the local server on the spool's directory, creates
// SPOOL or takes the one there (its limit and subjects updated), and makes
// the sink into it.
func (s *Spool) openStore(ctx context.Context) (*store, error) {
	cfg := s.cfg
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
	sl := &serverLog{s: s}
	srv.SetLoggerV2(sl, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		shutdown(srv)
		return nil, errors.New("spool server: not ready after 30s")
	}
	st := &store{srv: srv}
	sl.st.Store(st)
	if st.nc, err = nats.Connect("", nats.InProcessServer(srv), nats.Name("genlbridge spool"), nats.MaxReconnects(-1)); err != nil {
		shutdown(srv)
		return nil, fmt.Errorf("spool connection: %w", err)
	}
	if st.stream, err = s.openStream(ctx, st.nc); err != nil {
		st.close(ctx)
		return nil, err
	}
	sc := cfg.Sink
	sc.Stream = sink.StreamConfig{Name: StreamName, Subjects: cfg.Subjects, DuplicateWindow: 2 * time.Minute}
	sc.Manage = false // openStream made it, with its own retention
	sc.Pack = true    // a batch's messages of a subscription in one spool message
	sc.MessageMaxPayload = cfg.HubMaxPayload
	sc.Classify = func(reply []byte) error { return classify(srv, reply) }
	sc.Logger = cfg.Logger.With("part", "spool")
	if st.sink, err = sink.NewJetStream(ctx, st.nc, sc); err != nil {
		st.close(ctx)
		return nil, fmt.Errorf("spool sink: %w", err)
	}
	return st, nil
}

// close closes the sink (what it has not stored is given up on), the
// connection and the server.
func (st *store) close(ctx context.Context) error {
	var err error
	if st.sink != nil {
		err = st.sink.Close(ctx)
	}
	st.nc.Close()
	shutdown(st.srv)
	return err
}

func shutdown(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}

// openStream creates SPOOL or takes the existing one, with this
// configuration's limit, and reads (or, new, makes) its incarnation id.
func (s *Spool) openStream(ctx context.Context, nc *nats.Conn) (jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
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
			return nil, fmt.Errorf("spool: create stream: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("spool: stream: %w", err)
	default:
		have := st.CachedInfo().Config
		want.Metadata = have.Metadata
		if have.MaxBytes != want.MaxBytes || !slices.Equal(have.Subjects, want.Subjects) {
			if st, err = js.UpdateStream(ctx, want); err != nil {
				return nil, fmt.Errorf("spool: update stream (limit %d, subjects %s): %w", want.MaxBytes, strings.Join(want.Subjects, ","), err)
			}
		}
	}
	inc := st.CachedInfo().Config.Metadata["incarnation"]
	if inc == "" {
		inc = "unknown"
	}
	switch {
	case s.incarnation == "":
		s.incarnation = inc // Open, before any other goroutine reads it
	case s.incarnation != inc:
		return nil, fmt.Errorf("spool: the store's incarnation changed from %s to %s while open", s.incarnation, inc)
	}
	return st, nil
}

// classify says which error replies of SPOOL mean it has no room: its byte
// limit (discard new), or the store failing (a full disk, an I/O error, its
// JetStream disabled).
func classify(srv *server.Server, reply []byte) error {
	if !srv.JetStreamEnabled() {
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
