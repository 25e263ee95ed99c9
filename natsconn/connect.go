// Package natsconn dials NATS for genlbridge: the daemon's long-lived
// connection (Connect: waiting for a server that is not up yet, refusing at
// once one that refuses us, reconnecting, buffering nothing) and the
// authentication settings it shares with the tools tail and replay (Auth).
// It holds no state of its own; a *nats.Conn it returns is the caller's.
package natsconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// WriteTimeout bounds a write to the server's socket (default 5s): a
	// server that stops reading (stuck, or frozen) fails the write, which
	// drops the connection, instead of holding the publisher, and with it
	// the shutdown deadline, for nats.go's default of a minute.
	WriteTimeout time.Duration
	// OnClosed, if set, is called once when the connection is closed for
	// good, with the error that closed it (nil when Close was called). The
	// client gives up on its own after the same authorization error twice
	// in a row (an expired or revoked credential): then nothing will be
	// delivered again, and the caller should stop (see the sinks' Deliver).
	OnClosed func(err error)
	// Denials, if set, takes the server's refusals for permissions (counted,
	// logged once a minute per subject, passed to its listeners); without
	// it they are logged like any other error.
	Denials *Denials
}

// Connect dials NATS for a long-running publisher: it keeps trying when the
// first connection fails, reconnects after every disconnect, buffers nothing
// while disconnected (the sink retries instead, so that nothing waits where
// it cannot be counted) and logs every change of state. Reconnecting is not
// forever in one case: nats.go closes the connection for good after the same
// authorization error twice in a row; ConnConfig.OnClosed hears of it.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.FlusherTimeout(cfg.WriteTimeout),
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
			err := nc.LastError()
			log.Info("nats connection closed", "last_err", err)
			if cfg.OnClosed != nil {
				cfg.OnClosed(err)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if cfg.Denials != nil && cfg.Denials.Note(err) {
				return
			}
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
// because it could not be reached (refused connection, DNS, timeout). It
// looks only at the client's typed errors: a message's words would take a
// DNS failure for a host such as nats-tls.svc for a TLS refusal.
func refused(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		nats.ErrNkeysNotSupported, nats.ErrTokenAlreadySet, nats.ErrSecureConnRequired, nats.ErrSecureConnWanted,
		nats.ErrClientCertOrRootCAsRequired, nats.ErrUserButNoSigCB, nats.ErrNkeyButNoSigCB,
		// The TLS handshake with a server we reached failed, or the server
		// closed the connection right after it (it refused our certificate).
		nats.ErrTLS} {
		if errors.Is(err, e) {
			return true
		}
	}
	var certErr *tls.CertificateVerificationError
	var authorityErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var alertErr tls.AlertError
	if errors.As(err, &certErr) || errors.As(err, &authorityErr) || errors.As(err, &hostErr) ||
		errors.As(err, &invalidErr) || errors.As(err, &recordErr) || errors.As(err, &alertErr) {
		return true
	}
	// A TLS alert the server sent (it refused our certificate, or none).
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "remote error"
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
