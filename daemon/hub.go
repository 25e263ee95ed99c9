package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/natsconn"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/genlbridge/genlbridge/spool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// resumeFunc is bridge.Config.Resume.
type resumeFunc = func(host, family, group string) (bootID string, instance, seq uint64, ok bool)

// hubWait is how long a bridge with a spool waits at start for the fleet's
// server before it starts without it: the hub's stream knows where the
// previous run stopped (the resume point) when the spool holds nothing.
// Past it events go to the spool, and forwarding starts once the server is
// reachable.
const hubWait = 5 * time.Second

// connectNATS connects to the configured server (the remote one, or an
// embedded one it starts): the connection is returned at once and
// reconnects in the background. When it closes for good, cancel is called
// with the cause. closeNC closes it (and stops the embedded server).
func connectNATS(ctx context.Context, cfg *config.Config, log *slog.Logger, cancel context.CancelCauseFunc) (nc *nats.Conn, closeNC func(), err error) {
	url := cfg.NATSURL
	auth := cfg.Auth()
	authOpts, err := auth.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("nats authentication: %w", err)
	}
	authName := auth.String()
	var cleanups []func()
	closeNC = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	if url == "" {
		srv, watch, err := startEmbedded(cfg)
		if err != nil {
			return nil, nil, err
		}
		cleanups = append(cleanups, srv.Shutdown)
		url = srv.URL()
		if authOpts, err = srv.ClientOptions(); err != nil {
			closeNC()
			return nil, nil, err
		}
		authName = "none (GENLBRIDGE_EMBEDDED_AUTH=false: any local process may connect)"
		if cfg.EmbeddedAuth {
			authName = "nkey " + cfg.EmbeddedSeedFile()
		}
		log.Info("no GENLBRIDGE_NATS_URL: started an embedded NATS server with JetStream",
			"url", url, "store", embeddedStore(cfg), "auth", authName, "watch", watch)
	}
	log.Info("connecting to nats", "url", url, "auth", authName)
	var closing atomic.Bool // we close the connection: that is no failure
	nc, err = natsconn.Connect(natsconn.ConnConfig{URL: url, Name: "genlbridge " + bridge.Hostname(), Options: authOpts, Logger: log,
		WriteTimeout: cfg.FlushTimeout,
		OnClosed: func(err error) {
			if closing.Load() {
				return
			}
			if err == nil {
				err = errors.New("closed by the client library")
			}
			err = fmt.Errorf("nats connection closed for good, nothing can be delivered: %w", err)
			log.Error("stopping: a supervisor should restart genlbridge", "err", err)
			cancel(err)
		}})
	if err != nil {
		closeNC()
		return nil, nil, err
	}
	cleanups = append(cleanups, nc.Close, func() { closing.Store(true) })
	return nc, closeNC, nil
}

// hub is the sink to the fleet's server, with where the previous run
// stopped and, for JetStream, its stream.
type hub struct {
	sink   sink.Sink
	resume resumeFunc
	stream jetstream.Stream
}

// makeHub makes the sink to the server behind nc. The core NATS sink needs
// no server yet; the JetStream sink waits for the connection, then
// provisions (or checks) its stream and reads it for Resume.
func makeHub(ctx context.Context, cfg *config.Config, nc *nats.Conn, log *slog.Logger) (hub, error) {
	if !cfg.UsesJetStream() {
		events, losses := cfg.Templates()
		return hub{sink: sink.NewNATS(nc, sink.NATSConfig{Subject: events, LossSubject: losses, Batched: cfg.MessageMode == "batch",
			FlushTimeout: cfg.FlushTimeout, RetryMax: cfg.RetryMax, Logger: log})}, nil
	}
	if err := natsconn.WaitConnected(ctx, nc, log); err != nil {
		return hub{}, err
	}
	jc := cfg.JetStream()
	jc.Logger = log
	js, err := sink.NewJetStream(ctx, nc, jc)
	if err != nil {
		return hub{}, err
	}
	return hub{sink: js, resume: js.Resume, stream: js.Stream()}, nil
}

// spoolHub is the hub behind a spool: made in the background by one
// goroutine (run), which gives it to the spool once both exist. Its owner
// is runDaemon, which calls close.
type spoolHub struct {
	log    *slog.Logger
	stop   context.CancelFunc
	made   chan struct{} // closed when makeHub has returned (hub, err set)
	opened chan struct{} // closed when sp is set
	done   chan struct{} // closed when run returns
	sp     *spool.Spool

	mu  sync.Mutex
	hub hub // zero until made
	err error
}

// startSpool opens the node's spool and starts making the hub's sink; it
// waits up to hubWait for it, so that a normal start knows the hub's resume
// point. A hub that cannot be made (a stream that conflicts, the
// connection closed for good) stops the start, or later cancels the daemon
// with the error.
func startSpool(ctx context.Context, cfg *config.Config, nc *nats.Conn, log *slog.Logger, cancel context.CancelCauseFunc) (*spool.Spool, *spoolHub, error) {
	hubCtx, stop := context.WithCancel(ctx)
	h := &spoolHub{log: log, stop: stop, made: make(chan struct{}), opened: make(chan struct{}), done: make(chan struct{})}
	go h.run(hubCtx, cfg, nc, cancel)
	select {
	case <-h.made:
		if h.err != nil {
			err := h.err
			h.close(cfg.FlushTimeout)
			return nil, nil, err
		}
	case <-time.After(hubWait):
		log.Warn("the fleet's NATS server is not reachable: events go to the spool; it forwards them once the server is", "waited", hubWait)
	case <-ctx.Done():
		h.close(cfg.FlushTimeout)
		return nil, nil, ctx.Err()
	}

	events, losses := cfg.Templates()
	host := cmp.Or(cfg.NodeName, bridge.Hostname())
	sp, err := spool.Open(ctx, spool.Config{
		Dir: cfg.SpoolDir, MaxBytes: int64(cfg.SpoolMaxBytes), Subjects: cfg.StreamSubjects,
		HubMaxPayload: func() int { return int(nc.MaxPayload()) }, // 0 until connected
		Sink:          cfg.JetStream(), Window: cfg.MaxInFlight, Logger: log,
		ResumeFilters: []string{events.Filter("", "", host, ""), losses.Filter("", "", host, "")},
	})
	if err != nil {
		h.close(cfg.FlushTimeout)
		return nil, nil, fmt.Errorf("GENLBRIDGE_SPOOL_DIR=%s: %w", cfg.SpoolDir, err)
	}
	h.sp = sp
	close(h.opened)
	return sp, h, nil
}

// run makes the hub, then, once the spool is open, starts forwarding to it.
func (h *spoolHub) run(ctx context.Context, cfg *config.Config, nc *nats.Conn, cancel context.CancelCauseFunc) {
	defer close(h.done)
	hb, err := makeHub(ctx, cfg, nc, h.log)
	h.mu.Lock()
	h.hub, h.err = hb, err
	h.mu.Unlock()
	close(h.made)
	select {
	case <-h.opened:
	case <-ctx.Done():
		return // the start failed, or the daemon stops
	}
	if err == nil {
		fwd, ok := hb.sink.(sink.Forwarder)
		if !ok {
			err = fmt.Errorf("GENLBRIDGE_SPOOL: the %s sink cannot forward from a spool", sinkName(hb.sink))
		} else {
			err = h.sp.Forward(ctx, fwd, hb.stream)
		}
	}
	if err != nil && ctx.Err() == nil {
		cancel(fmt.Errorf("the sink to the fleet's server: %w", err))
	}
}

// get is the hub's sink (nil until made).
func (h *spoolHub) get() sink.Sink {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hub.sink
}

// resume is the bridge's resume point: the spool's last event of a
// subscription when it holds one (it is newer than anything forwarded),
// else the hub's, when it was reachable at the start.
func (h *spoolHub) resume(host, family, group string) (string, uint64, uint64, bool) {
	if boot, inst, seq, ok := h.sp.Resume(host, family, group); ok {
		return boot, inst, seq, true
	}
	h.mu.Lock()
	r := h.hub.resume
	h.mu.Unlock()
	if r == nil {
		return "", 0, 0, false
	}
	return r(host, family, group)
}

// close stops making the hub (run returns, a forwarder's start with it),
// closes the spool (its forwarder first: what is not forwarded stays
// spooled), then the hub's sink.
func (h *spoolHub) close(timeout time.Duration) {
	h.stop()
	<-h.done
	if h.sp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := h.sp.Close(ctx); err != nil {
			h.log.Error("closing the spool", "err", err)
		}
		cancel()
	}
	if s := h.get(); s != nil {
		closeSink(s, timeout, h.log)
	}
}

// closeSink closes s within timeout, logging a failure.
func closeSink(s sink.Sink, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		log.Error("closing sink", "err", err)
	}
}

// embeddedStore is the embedded server's JetStream store.
func embeddedStore(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "jetstream") }

// startEmbedded starts the embedded server (no GENLBRIDGE_NATS_URL) and
// says how to watch its events.
func startEmbedded(cfg *config.Config) (*broker.Server, string, error) {
	bc := broker.Config{Listen: cfg.EmbeddedListen, StoreDir: embeddedStore(cfg), JetStream: true}
	if cfg.EmbeddedAuth {
		bc.SeedFile = cfg.EmbeddedSeedFile()
	}
	srv, err := broker.Start(bc)
	if err != nil {
		return nil, "", err
	}
	url := srv.URL()
	watch := "genlbridge tail   (or: nats sub 'genl.>' -s " + url + ")"
	if cfg.EmbeddedAuth {
		watch = "genlbridge tail   (or: nats sub 'genl.>' -s " + url + " --nkey " + bc.SeedFile + ")"
		if cfg.DataDir != config.Default("GENLBRIDGE_DATA_DIR") {
			watch = "GENLBRIDGE_DATA_DIR=" + cfg.DataDir + " " + watch
		}
	}
	return srv, watch, nil
}
