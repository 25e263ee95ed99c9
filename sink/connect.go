package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	if refused(err) {
		return nil, fmt.Errorf("connect to nats %q: %w", cfg.URL, err)
	}
	log.Warn("nats not reachable yet; retrying in the background", "url", cfg.URL, "err", err)
	nc, err = nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %q: %w", cfg.URL, err)
	}
	return nc, nil
}

// refused reports whether a first connection failed because the server
// refused us (credentials, TLS), which retrying will not mend, rather than
// because it could not be reached (refused connection, DNS, timeout).
func refused(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		nats.ErrNkeysNotSupported, nats.ErrTokenAlreadySet} {
		if errors.Is(err, e) {
			return true
		}
	}
	var certErr *tls.CertificateVerificationError
	var authorityErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &authorityErr) || errors.As(err, &hostErr) || errors.As(err, &recordErr) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, w := range []string{"authorization", "authentication", "tls", "x509", "certificate"} {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// WaitConnected waits until nc is connected (a first connection that is
// still being retried), or ctx ends.
func WaitConnected(ctx context.Context, nc *nats.Conn, log *slog.Logger) error {
	logged := false
	for !nc.IsConnected() {
		if !logged {
			log.Info("waiting for the nats server")
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for nats: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
