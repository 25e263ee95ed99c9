package daemon

import (
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
	"github.com/genlbridge/genlbridge/permissions"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/genlbridge/genlbridge/spool"
	"github.com/nats-io/nats.go"
)

// resumeFunc is bridge.Config.Resume.
type resumeFunc = func(host, family, group string) (bootID string, instance, seq uint64, ok bool)

// hubWait is how long a bridge with a spool waits at start for the fleet's
// server when the spool does not know where a subscription stopped and
// the hub's stream might: the subscription's first event waits for it (the
// kernel queues what follows in the socket), then goes on without.
const hubWait = 5 * time.Second

// connectNATS connects to the configured server (the remote one, or an
// embedded one it starts): the connection is returned at once and
// reconnects in the background. When it closes for good, cancel is called
// with the cause. closeNC closes it (and stops the embedded server).
func connectNATS(ctx context.Context, cfg *config.Config, log *slog.Logger, cancel context.CancelCauseFunc, denials *natsconn.Denials) (nc *nats.Conn, closeNC func(), err error) {
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
	// Replies come on the node's own inbox prefix, the one its permissions
	// allow it to read (permissions.Node).
	authOpts = append(authOpts, nats.CustomInboxPrefix(permissions.InboxPrefix(host(cfg))))
	log.Info("connecting to nats", "url", url, "auth", authName)
	var closing atomic.Bool // we close the connection: that is no failure
	nc, err = natsconn.Connect(natsconn.ConnConfig{URL: url, Name: "genlbridge " + bridge.Hostname(), Options: authOpts, Logger: log,
		WriteTimeout: cfg.FlushTimeout, Denials: denials,
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

// host is the bridge's host: GENLBRIDGE_NODE_NAME, else NODE_NAME, else the
// hostname (as the bridge stamps it on events).
func host(cfg *config.Config) string {
	if cfg.NodeName != "" {
		return cfg.NodeName
	}
	return bridge.Hostname()
}

// hub is the sink to the fleet's server, with where the previous run
// stopped and, for JetStream, its stream.
type hub struct {
	sink   sink.Sink
	resume resumeFunc
}

// makeHub makes the sink to the server behind nc. The core NATS sink needs
// no server yet; the JetStream sink waits for the connection, then
// provisions (or checks) its stream and reads it for Resume.
func makeHub(ctx context.Context, cfg *config.Config, nc *nats.Conn, log *slog.Logger) (hub, error) {
	if !cfg.UsesJetStream() {
		events, losses := cfg.Templates()
		return hub{sink: sink.NewNATS(nc, sink.NATSConfig{Subject: events, LossSubject: losses, Batched: cfg.MessageMode == "batch",
			CloudEvents: cfg.CloudEvents, FlushTimeout: cfg.FlushTimeout, RetryMax: cfg.RetryMax, Logger: log})}, nil
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
	return hub{sink: js, resume: js.Resume}, nil
}

// spoolHub is the hub behind a spool: made in the background by one
// goroutine (run), which gives it to the spool once made. Its owner is
// Run, which calls close.
type spoolHub struct {
	log   *slog.Logger
	ctx   context.Context
	stop  context.CancelFunc
	start time.Time
	made  chan struct{} // closed when makeHub has returned (hub, err set)
	done  chan struct{} // closed when run returns
	sp    *spool.Spool

	mu     sync.Mutex
	hub    hub // zero until made
	err    error
	warned bool // logged that the hub's resume point was not waited for longer
}

// startSpool opens the node's spool, which takes events at once, and
// starts making the hub's sink, which the spool forwards to once made. A
// hub that cannot be made (a stream that conflicts, the connection closed
// for good) cancels the daemon with the error.
func startSpool(ctx context.Context, cfg *config.Config, nc *nats.Conn, log *slog.Logger, cancel context.CancelCauseFunc) (*spool.Spool, *spoolHub, error) {
	sync, _ := cfg.SpoolSyncInterval()
	events, losses := cfg.Templates()
	sp, err := spool.Open(spool.Config{
		Dir: cfg.SpoolDir, MaxBytes: int64(cfg.SpoolMaxBytes), Sync: sync,
		Subject: events, LossSubject: losses, Batched: cfg.MessageMode == "batch", CloudEvents: cfg.CloudEvents,
		HubMaxPayload: func() int { return int(nc.MaxPayload()) }, // 0 until connected
		Window:        cfg.MaxInFlight, Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("GENLBRIDGE_SPOOL_DIR=%s: %w", cfg.SpoolDir, err)
	}
	hubCtx, stop := context.WithCancel(ctx)
	h := &spoolHub{log: log, ctx: hubCtx, stop: stop, start: time.Now(), made: make(chan struct{}), done: make(chan struct{}), sp: sp}
	go h.run(cfg, nc, cancel)
	return sp, h, nil
}

// run makes the hub, then starts forwarding to it.
func (h *spoolHub) run(cfg *config.Config, nc *nats.Conn, cancel context.CancelCauseFunc) {
	defer close(h.done)
	hb, err := makeHub(h.ctx, cfg, nc, h.log)
	h.mu.Lock()
	h.hub, h.err = hb, err
	h.mu.Unlock()
	close(h.made)
	if err == nil {
		fwd, ok := hb.sink.(sink.Forwarder)
		if !ok {
			err = fmt.Errorf("GENLBRIDGE_SPOOL: the %s sink cannot forward from a spool", sinkName(hb.sink))
		} else {
			err = h.sp.Forward(fwd)
		}
	}
	if err != nil && h.ctx.Err() == nil {
		cancel(fmt.Errorf("the sink to the fleet's server: %w", err))
	}
}

// get is the hub's sink (nil until made).
func (h *spoolHub) get() sink.Sink {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hub.sink
}

// resume is the bridge's resume point: the spool's when it covered the
// subscription (it is newer than anything forwarded), else the hub's,
// waited for until hubWait after the start.
func (h *spoolHub) resume(host, family, group string) (string, uint64, uint64, bool) {
	if boot, inst, seq, ok := h.sp.Resume(host, family, group); ok {
		return boot, inst, seq, true
	}
	wait := time.NewTimer(max(0, time.Until(h.start.Add(hubWait))))
	defer wait.Stop()
	select {
	case <-h.made:
	case <-h.ctx.Done():
		return "", 0, 0, false
	case <-wait.C:
		h.mu.Lock()
		if !h.warned {
			h.warned = true
			h.log.Warn("the fleet's NATS server is not reachable: subscriptions the spool holds nothing of start without its resume point (events the kernel sent while no bridge ran are not counted)", "waited", hubWait)
		}
		h.mu.Unlock()
		return "", 0, 0, false
	}
	h.mu.Lock()
	r := h.hub.resume
	h.mu.Unlock()
	if r == nil {
		return "", 0, 0, false
	}
	return r(host, family, group)
}

// close stops making the hub, closes the spool (its forwarder first: what
// is not forwarded stays spooled), then the hub's sink.
func (h *spoolHub) close(timeout time.Duration) {
	h.stop()
	<-h.done
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if err := h.sp.Close(ctx); err != nil {
		h.log.Error("closing the spool", "err", err)
	}
	cancel()
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
