// Package daemon assembles and runs genlbridge's daemon: the connection to
// NATS (or an embedded server), the node's spool, the sink to the fleet's
// server, the bridge, and the metrics and health endpoints. Run is the
// whole of `genlbridge run` once its settings are parsed; it is tested
// without the binary.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/monitor"
	"github.com/genlbridge/genlbridge/natsconn"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are what Run takes besides the settings.
type Options struct {
	// Version is reported in the start-up log and genlbridge_build_info.
	Version string
	// Stdout receives the stdout sink's events; Stderr the log.
	Stdout, Stderr io.Writer
}

// Run runs the bridge until ctx ends (SIGTERM), or until the NATS
// connection is closed for good, which is an error: a daemon that can never
// deliver again must exit, so that its supervisor restarts it.
func Run(parent context.Context, cfg *config.Config, o Options) error {
	stdout, version := o.Stdout, o.Version
	log := NewLogger(cfg, o.Stderr)
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
	monOpts := monitor.Options{Version: version, RequireJoined: cfg.ReadyRequiresJoined, Pprof: cfg.Pprof, DeniedFor: cfg.DeniedUnhealthyAfter}
	var counters func() sink.Sink // the sink to the server, for its counters (nil until made)

	var out sink.Sink
	var resume resumeFunc
	var denials *natsconn.Denials
	switch cfg.Sink {
	case "stdout":
		out = sink.NewWriter(stdout)
	default:
		// What the server refuses this identity for permissions: counted,
		// logged, given up on by the hub's sink, and /healthz fails if it
		// persists.
		denials = natsconn.NewDenials(log)
		nc, closeNC, err := connectNATS(ctx, cfg, log, cancel, denials)
		if err != nil {
			return err
		}
		defer closeNC()
		monOpts.Connected = monitor.NATSConnected(nc)
		monOpts.Denials = denials
		if !cfg.UsesSpool() {
			h, err := makeHub(ctx, cfg, nc, log)
			if err != nil {
				return closedCause(ctx, err)
			}
			out, resume = h.sink, h.resume
			break
		}
		// The spool, between the bridge and the fleet's server: the bridge
		// delivers into it, its forwarder into the hub's sink, made once
		// the server is reachable (the bridge waits for it only hubWait).
		sp, hubs, err := startSpool(ctx, cfg, nc, log, cancel)
		if err != nil {
			return closedCause(ctx, err)
		}
		defer hubs.close(cfg.FlushTimeout)
		out, resume = sp.Sink(), hubs.resume
		monOpts.Spool = sp
		counters = hubs.get
	}
	if counters == nil {
		counters = func() sink.Sink { return out }
	}
	if denials != nil {
		denials.OnPublish(func(subject string) {
			if d, ok := counters().(sink.Denier); ok {
				d.Denied(subject)
			}
		})
	}

	// The sink closes on every return, before the connection under it
	// (the spool closes its own).
	defer func() {
		if monOpts.Spool == nil {
			closeSink(out, cfg.FlushTimeout, log)
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
	registerSinkCounters(mon, cfg, counters)
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
	kind, spooled := sinkName(out), "off"
	if monOpts.Spool != nil {
		kind, spooled = "nats", cfg.SpoolDir
		if cfg.UsesJetStream() {
			kind = "jetstream"
		}
	}
	log.Info("genlbridge starting", "version", version, "subscriptions", strings.Join(names, ","), "sink", kind, "spool", spooled,
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
func registerSinkCounters(mon *monitor.Monitor, cfg *config.Config, get func() sink.Sink) {
	counter := func(name, help string, f func(sink.Sink) uint64) {
		mon.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 {
				if s := get(); s != nil {
					return float64(f(s))
				}
				return 0
			}))
	}
	js := func(f func(sink.JetStreamStats) uint64) func(sink.Sink) uint64 {
		return func(s sink.Sink) uint64 {
			if j, ok := s.(*sink.JetStream); ok {
				return f(j.Stats())
			}
			return 0
		}
	}
	switch {
	case cfg.Sink == "stdout":
	case !cfg.UsesJetStream():
		counter("genlbridge_sink_messages_total", "NATS messages published, republished ones included.",
			func(s sink.Sink) uint64 {
				if n, ok := s.(*sink.NATS); ok {
					m, _ := n.Published()
					return m
				}
				return 0
			})
		counter("genlbridge_sink_retries_total", "Failed attempts to deliver a batch (each is followed by another, or by giving up).",
			func(s sink.Sink) uint64 {
				if n, ok := s.(*sink.NATS); ok {
					_, r := n.Published()
					return r
				}
				return 0
			})
	default:
		counter("genlbridge_sink_messages_total", "NATS messages published, republished ones included.",
			js(func(s sink.JetStreamStats) uint64 { return s.Published }))
		counter("genlbridge_sink_retries_total", "Rounds of republishing unacknowledged messages.",
			js(func(s sink.JetStreamStats) uint64 { return s.Retries }))
		counter("genlbridge_sink_republished_total", "Messages published again because their acknowledgement failed.",
			js(func(s sink.JetStreamStats) uint64 { return s.Republished }))
		counter("genlbridge_sink_duplicates_total", "Republished messages the server recognised as duplicates.",
			js(func(s sink.JetStreamStats) uint64 { return s.Duplicates }))
		counter("genlbridge_sink_beyond_window_total", "Messages republished later than the stream's duplicate window after their first publish (may be stored twice).",
			js(func(s sink.JetStreamStats) uint64 { return s.BeyondWindow }))
		counter("genlbridge_sink_foreign_replies_total", "Replies on the sink's subjects that were not JetStream acknowledgements (something else answers there); ignored.",
			js(func(s sink.JetStreamStats) uint64 { return s.Foreign }))
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

// NewLogger is the daemon's logger: GENLBRIDGE_LOG_LEVEL and
// GENLBRIDGE_LOG_FORMAT, written to w.
func NewLogger(c *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(string(c.LogLevel))))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
