package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/sink"
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
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var out sink.Sink
	var resume func(host, family, group string) (string, uint64, uint64, bool)
	switch cfg.Sink {
	case "stdout":
		out = sink.NewWriter(stdout)
	default:
		url := cfg.NATSURL
		// auto: the embedded server has JetStream, so the default stores,
		// deduplicates and can replay; an external server is opted into.
		useJS := cfg.Sink == "jetstream" || (cfg.Sink == "auto" && url == "")
		if url == "" {
			dir := filepath.Join(cfg.DataDir, "jetstream")
			srv, err := broker.Start(broker.Config{Listen: cfg.EmbeddedListen, StoreDir: dir, JetStream: true})
			if err != nil {
				return err
			}
			defer srv.Shutdown()
			url = srv.URL()
			log.Info("no GENLBRIDGE_NATS_URL: started an embedded NATS server with JetStream",
				"url", url, "store", dir, "watch", "genlbridge tail   (or: nats sub 'genl.>' -s "+url+")")
		}
		nc, err := sink.Connect(sink.ConnConfig{URL: url, Name: "genlbridge " + bridge.Hostname(), Logger: log})
		if err != nil {
			return err
		}
		defer nc.Close()
		if useJS {
			jc := cfg.JetStream()
			jc.Logger = log
			js, err := sink.NewJetStream(ctx, nc, jc)
			if err != nil {
				return err
			}
			out, resume = js, js.Resume
			break
		}
		events, losses := cfg.Templates()
		out = sink.NewNATS(nc, sink.NATSConfig{Subject: events, LossSubject: losses, Batched: cfg.MessageMode == "batch",
			FlushTimeout: cfg.FlushTimeout, RetryMax: cfg.RetryMax, Logger: log})
	}

	subs, _ := cfg.Subscriptions()
	bc := bridge.Config{
		Subscriptions:         subs,
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
	b, err := bridge.New(bc, out)
	if err != nil {
		return err
	}
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.String()
	}
	log.Info("genlbridge starting", "version", version, "subscriptions", strings.Join(names, ","), "sink", string(cfg.Sink),
		"queue", cfg.QueueSize, "policy", string(cfg.QueuePolicy))
	runErr := b.Run(ctx)
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.FlushTimeout)
	defer cancel()
	if err := out.Close(closeCtx); err != nil {
		log.Error("closing sink", "err", err)
	}
	return runErr
}
