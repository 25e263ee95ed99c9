package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig says how to reach a NATS server.
type ConnConfig struct {
	URL  string
	Name string
	// Options are applied after the defaults (authentication, TLS, ...).
	Options []nats.Option
	Logger  *slog.Logger
}

// Connect dials NATS for a long-running publisher: it keeps trying when the
// first connection fails, reconnects forever, buffers nothing while
// disconnected (the sink retries instead, so that nothing waits where it
// cannot be counted) and logs every change of state.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil || nc.IsClosed() {
				return // closed by us
			}
			log.Warn("nats disconnected; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			log.Error("nats error", "err", err)
		}),
	}
	opts = append(opts, cfg.Options...)
	// A first attempt tells a server that is not there yet (keep trying)
	// from one that refuses us (wrong credentials, TLS): that is an error now.
	nc, err := nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(false))...)
	if err == nil {
		return nc, nil
	}
	if !errors.Is(err, nats.ErrNoServers) {
		return nil, fmt.Errorf("connect to nats %q: %w", cfg.URL, err)
	}
	log.Warn("nats not reachable yet; retrying in the background", "url", cfg.URL, "err", err)
	nc, err = nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %q: %w", cfg.URL, err)
	}
	return nc, nil
}
