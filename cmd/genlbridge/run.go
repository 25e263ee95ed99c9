package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/monitor"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/prometheus/client_golang/prometheus"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr, func(w io.Writer) {
		fmt.Fprint(w, "Usage: genlbridge run [flags]\n\nEvery setting is an environment variable and a flag (flags win):\n\n")
		config.Usage(w)
	})
	flags := config.Flags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(fs, flags)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runDaemon(ctx, cfg, stdout, stderr)
}

// runDaemon runs the bridge until ctx ends (SIGTERM), or until the NATS
// connection is closed for good, which is an error: a daemon that can never
// deliver again must exit, so that its supervisor restarts it.
func runDaemon(parent context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	// Specs first: one that does not parse stops the start before anything runs.
	reg, err := loadSpecs(cfg.SpecDirs, log)
	if err != nil {
		return err
	}

	// The metrics and health address is taken next, so that a busy port
	// stops the start before anything else happens.
	var httpL net.Listener
	if cfg.HTTPAddr != "" {
		if httpL, err = monitor.Listen(cfg.HTTPAddr); err != nil {
			return err
		}
		defer httpL.Close()
	}
	monOpts := monitor.Options{Version: version, RequireJoined: cfg.ReadyRequiresJoined, Pprof: cfg.Pprof}

	var out sink.Sink
	var resume func(host, family, group string) (string, uint64, uint64, bool)
	switch cfg.Sink {
	case "stdout":
		out = sink.NewWriter(stdout)
	default:
		url := cfg.NATSURL
		auth := cfg.Auth()
		authOpts, err := auth.Options()
		if err != nil {
			return fmt.Errorf("nats authentication: %w", err)
		}
		authName := auth.String()
		if url == "" {
			// auto: the embedded server has JetStream, so the default
			// stores, deduplicates and can replay.
			dir := filepath.Join(cfg.DataDir, "jetstream")
			bc := broker.Config{Listen: cfg.EmbeddedListen, StoreDir: dir, JetStream: true}
			if cfg.EmbeddedAuth {
				bc.SeedFile = cfg.EmbeddedSeedFile()
			}
			srv, err := broker.Start(bc)
			if err != nil {
				return err
			}
			defer srv.Shutdown()
			url = srv.URL()
			if authOpts, err = srv.ClientOptions(); err != nil {
				return err
			}
			watch := "genlbridge tail   (or: nats sub 'genl.>' -s " + url + ")"
			authName = "none (GENLBRIDGE_EMBEDDED_AUTH=false: any local process may connect)"
			if cfg.EmbeddedAuth {
				authName = "nkey " + bc.SeedFile
				watch = "genlbridge tail   (or: nats sub 'genl.>' -s " + url + " --nkey " + bc.SeedFile + ")"
				if cfg.DataDir != config.Default("GENLBRIDGE_DATA_DIR") {
					watch = "GENLBRIDGE_DATA_DIR=" + cfg.DataDir + " " + watch
				}
			}
			log.Info("no GENLBRIDGE_NATS_URL: started an embedded NATS server with JetStream",
				"url", url, "store", dir, "auth", authName, "watch", watch)
		}
		log.Info("connecting to nats", "url", url, "auth", authName)
		var closing atomic.Bool // we close the connection: that is no failure
		nc, err := natsconn.Connect(natsconn.ConnConfig{URL: url, Name: "genlbridge " + bridge.Hostname(), Options: authOpts, Logger: log,
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
			return err
		}
		defer nc.Close()
		defer closing.Store(true)
		monOpts.Connected = monitor.NATSConnected(nc)
		if cfg.UsesJetStream() {
			// The stream is provisioned and read (Resume) before the first event.
			if err := natsconn.WaitConnected(ctx, nc, log); err != nil {
				return closedCause(ctx, err)
			}
			jc := cfg.JetStream()
			jc.Logger = log
			js, err := sink.NewJetStream(ctx, nc, jc)
			if err != nil {
				return closedCause(ctx, err)
			}
			out, resume = js, js.Resume
			break
		}
		events, losses := cfg.Templates()
		out = sink.NewNATS(nc, sink.NATSConfig{Subject: events, LossSubject: losses, Batched: cfg.MessageMode == "batch",
			FlushTimeout: cfg.FlushTimeout, RetryMax: cfg.RetryMax, Logger: log})
	}

	// The sink closes on every return, before the connection under it.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), cfg.FlushTimeout)
		defer cancel()
		if err := out.Close(closeCtx); err != nil {
			log.Error("closing sink", "err", err)
		}
	}()

	subs, _ := cfg.Subscriptions()
	bc := bridge.Config{
		Subscriptions:         subs,
		Specs:                 reg,
		Host:                  cfg.NodeName,
		ReceiveBuffer:         int(cfg.ReceiveBuffer),
		AllowUserspaceSenders: cfg.AllowUserspaceSenders,
		QueueSize:             cfg.QueueSize,
		QueuePolicy:           string(cfg.QueuePolicy),
		BatchEvents:           cfg.BatchEvents,
		BatchBytes:            int(cfg.BatchBytes),
		Linger:                cfg.BatchLinger,
		ReadBatch:             cfg.ReadBatch,
		ResyncInterval:        cfg.ResyncInterval,
		ShutdownTimeout:       cfg.ShutdownTimeout,
		Resume:                resume,
		Logger:                log,
	}
	if cfg.NetNS != "" {
		f, err := os.Open(cfg.NetNS)
		if err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		bc.NetNS = int(f.Fd())
	}
	mon := monitor.New(monOpts)
	bc.OnDelivered = mon.OnDelivered
	registerSinkCounters(mon, out)
	b, err := bridge.New(bc, out)
	if err != nil {
		return err
	}
	mon.SetSource(b)
	// The HTTP server outlives Run, so that metrics stay readable while the
	// queue drains at shutdown.
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if httpL != nil {
			if err := mon.Serve(httpCtx, httpL, log); err != nil {
				log.Error("metrics and health server stopped", "err", err)
			}
		}
	}()
	defer func() { stopHTTP(); <-httpDone }()
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.String()
	}
	log.Info("genlbridge starting", "version", version, "subscriptions", strings.Join(names, ","), "sink", sinkName(out),
		"queue", cfg.QueueSize, "policy", string(cfg.QueuePolicy))
	runErr := b.Run(ctx)
	mon.SetStopped()
	if httpL != nil && cfg.ShutdownScrapeWait > 0 {
		wctx, wcancel := context.WithTimeout(context.Background(), cfg.ShutdownScrapeWait)
		mon.WaitFinalScrape(wctx)
		wcancel()
	}
	if runErr != nil {
		return runErr
	}
	return closedCause(ctx, nil)
}

// closedCause returns why ctx was cancelled when the NATS connection closed
// for good, else err.
func closedCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// registerSinkCounters exports the sink's own counters, where it keeps some.
func registerSinkCounters(mon *monitor.Monitor, out sink.Sink) {
	counter := func(name, help string, f func() uint64) {
		mon.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f()) }))
	}
	switch s := out.(type) {
	case *sink.NATS:
		counter("genlbridge_sink_messages_total", "NATS messages published, republished ones included.",
			func() uint64 { m, _ := s.Published(); return m })
		counter("genlbridge_sink_retries_total", "Failed attempts to deliver a batch (each is followed by another, or by giving up).",
			func() uint64 { _, r := s.Published(); return r })
	case *sink.JetStream:
		counter("genlbridge_sink_messages_total", "NATS messages published, republished ones included.",
			func() uint64 { return s.Stats().Published })
		counter("genlbridge_sink_retries_total", "Rounds of republishing unacknowledged messages.",
			func() uint64 { return s.Stats().Retries })
		counter("genlbridge_sink_republished_total", "Messages published again because their acknowledgement failed.",
			func() uint64 { return s.Stats().Republished })
		counter("genlbridge_sink_duplicates_total", "Republished messages the server recognised as duplicates.",
			func() uint64 { return s.Stats().Duplicates })
		counter("genlbridge_sink_beyond_window_total", "Messages republished later than the stream's duplicate window after their first publish (may be stored twice).",
			func() uint64 { return s.Stats().BeyondWindow })
		counter("genlbridge_sink_foreign_replies_total", "Replies on the sink's subjects that were not JetStream acknowledgements (something else answers there); ignored.",
			func() uint64 { return s.Stats().Foreign })
	}
}

func sinkName(s sink.Sink) string {
	switch s.(type) {
	case *sink.NATS:
		return "nats"
	case *sink.JetStream:
		return "jetstream"
	case *sink.Writer:
		return "stdout"
	}
	return fmt.Sprintf("%T", s)
}
