// Package callout is the NATS auth callout responder of a genlbridge
// fleet on Kubernetes: a bridge connects with its pod's projected service
// account token, the server asks the responder, and the responder verifies
// the token against the cluster's OIDC keys (token.go), takes the node
// from the token's pod-bound claims, and answers with a short-lived user
// JWT whose permissions are that node's alone (package permissions). No
// NATS secret lives on the nodes.
//
// A Responder serves one connection (the callout account's service user)
// from Run until its context ends.
package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/permissions"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Subject is where nats-server sends authorization requests.
const Subject = "$SYS.REQ.USER.AUTH"

// Config configures a Responder.
type Config struct {
	Verifier *Verifier
	// IssuerKey signs the responses: the key of the account the server's
	// auth callout names as issuer (operator mode: the callout account's
	// key, or its signing key with IssuerAccount its public key).
	IssuerKey     nkeys.KeyPair
	IssuerAccount string
	// Account is the account the bridges join. In operator mode it is the
	// account's public key and AccountKey (the account's key or one of its
	// signing keys) signs the users; in a server configuration it is the
	// account's name and IssuerKey signs them.
	Account    string
	AccountKey nkeys.KeyPair
	// Params gives the bridge settings of a node (its templates and
	// stream), for its permissions.
	Params func(node string) permissions.Params
	// MaxTTL bounds a user's life (default an hour, and never past its
	// token's expiry): the bridge reconnects with its rotated token.
	MaxTTL time.Duration
	Logger *slog.Logger
}

// Responder answers authorization requests.
type Responder struct {
	cfg               Config
	operator          bool
	accepted, refused atomic.Uint64
	unsupportedWarned atomic.Bool
}

// New checks cfg and returns a Responder.
func New(cfg Config) (*Responder, error) {
	if cfg.Verifier == nil || cfg.IssuerKey == nil || cfg.Account == "" || cfg.Params == nil {
		return nil, errors.New("a callout responder needs a token verifier, an issuer key, the account and the node parameters")
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Responder{cfg: cfg}
	if nkeys.IsValidPublicAccountKey(cfg.Account) {
		r.operator = true
		if cfg.AccountKey == nil {
			return nil, fmt.Errorf("account %s is a public key (operator mode): the users need its key or signing key", cfg.Account)
		}
	}
	return r, nil
}

// Counts returns the requests accepted and refused so far.
func (r *Responder) Counts() (accepted, refused uint64) { return r.accepted.Load(), r.refused.Load() }

// QueueGroup is the queue group responders serve in: each request is
// answered by one of the running responders (a Deployment of several).
const QueueGroup = "genlbridge-callout"

// Run serves requests on nc until ctx ends.
func (r *Responder) Run(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.QueueSubscribe(Subject, QueueGroup, func(m *nats.Msg) { r.handle(ctx, m) })
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", Subject, err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe to %s: %w", Subject, err)
	}
	r.cfg.Logger.Info("auth callout responder serving", "subject", Subject, "account", r.cfg.Account, "operator_mode", r.operator)
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// handle answers one request.
func (r *Responder) handle(ctx context.Context, m *nats.Msg) {
	log := r.cfg.Logger
	if m.Header.Get("Nats-Server-Xkey") != "" {
		if !r.unsupportedWarned.Swap(true) {
			log.Error("the server encrypts authorization requests (xkey), which this responder does not read: configure the auth callout without xkey")
		}
		return
	}
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		log.Warn("not an authorization request", "err", err)
		return
	}
	client := []any{"client_host", req.ClientInformation.Host, "client_name", req.ClientInformation.Name}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if r.cfg.IssuerAccount != "" {
		resp.IssuerAccount = r.cfg.IssuerAccount
	}
	user, id, err := r.user(ctx, req)
	if err != nil {
		r.refused.Add(1)
		resp.Error = err.Error()
		log.Warn("auth callout: refused", append([]any{"reason", err}, client...)...)
	} else {
		r.accepted.Add(1)
		resp.Jwt = user
		log.Info("auth callout: admitted", append([]any{"node", id.Node, "pod", id.Pod, "service_account", id.ServiceAccount,
			"token_expires", id.Expires.UTC().Format(time.RFC3339)}, client...)...)
	}
	token, err := resp.Encode(r.cfg.IssuerKey)
	if err != nil {
		log.Error("auth callout: cannot sign the response", "err", err)
		return
	}
	if err := m.Respond([]byte(token)); err != nil {
		log.Warn("auth callout: cannot respond", "err", err)
	}
}

// user verifies the request's token and issues the node's user JWT.
func (r *Responder) user(ctx context.Context, req *jwt.AuthorizationRequestClaims) (string, Identity, error) {
	token := req.ConnectOptions.Token
	if token == "" {
		return "", Identity{}, errors.New("no token: a bridge connects with its pod's service account token (GENLBRIDGE_NATS_TOKEN_FILE)")
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id, err := r.cfg.Verifier.Verify(vctx, token)
	if err != nil {
		return "", Identity{}, err
	}
	perms, err := permissions.Node(r.cfg.Params(id.Node))
	if err != nil {
		return "", id, fmt.Errorf("node %s: %w", id.Node, err)
	}
	uc := perms.User(id.Node, req.UserNkey)
	uc.Expires = min(id.Expires.Unix(), r.cfg.Verifier.cfg.Now().Add(r.cfg.MaxTTL).Unix())
	signer := r.cfg.IssuerKey
	if r.operator {
		signer = r.cfg.AccountKey
		if pub, _ := signer.PublicKey(); pub != r.cfg.Account {
			uc.IssuerAccount = r.cfg.Account // signed by one of its signing keys
		}
	} else {
		uc.Audience = r.cfg.Account
	}
	user, err := uc.Encode(signer)
	if err != nil {
		return "", id, fmt.Errorf("sign the user: %w", err)
	}
	return user, id, nil
}
