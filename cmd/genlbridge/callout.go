package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/callout"
	"github.com/genlbridge/genlbridge/natsconn"
	"github.com/genlbridge/genlbridge/permissions"
	"github.com/nats-io/nkeys"
)

const calloutHelp = `Usage: genlbridge callout [flags]

The NATS auth callout responder of a fleet on Kubernetes, run beside NATS (a
Deployment): a bridge connects with its pod's projected service account
token (GENLBRIDGE_NATS_TOKEN_FILE); the server asks this responder, which
verifies the token against the cluster's OIDC keys (the API server's
discovery and JWKS), checks its audience and service account, takes the node
from the token's pod-bound claims, has the API server review it (TokenReview:
a deleted pod's token is refused), and answers with a user JWT of the bridge
account carrying that node's permissions alone ('genlbridge permissions'),
valid until the token expires (at most --max-ttl). Every flag also reads the
environment variable it names. See deploy/README.md, "Per-node identity".
`

// envOr returns the environment variable's value, or def.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func cmdCallout(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("callout", stderr, func(w io.Writer) { fmt.Fprint(w, calloutHelp) })
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	url := serverFlag(fs)
	issuerSeed := fs.String("issuer-key", envOr("GENLBRIDGE_CALLOUT_ISSUER_KEY", ""), "seed file of the key that signs responses: the callout account's (env GENLBRIDGE_CALLOUT_ISSUER_KEY)")
	issuerAccount := fs.String("issuer-account", envOr("GENLBRIDGE_CALLOUT_ISSUER_ACCOUNT", ""), "the callout account's public key, when --issuer-key is one of its signing keys (env GENLBRIDGE_CALLOUT_ISSUER_ACCOUNT)")
	account := fs.String("account", envOr("GENLBRIDGE_CALLOUT_ACCOUNT", ""), "the bridges' account: its public key (operator mode) or its name (env GENLBRIDGE_CALLOUT_ACCOUNT)")
	accountSeed := fs.String("account-key", envOr("GENLBRIDGE_CALLOUT_ACCOUNT_KEY", ""), "seed file of the bridges' account key or signing key, which signs the users (operator mode; env GENLBRIDGE_CALLOUT_ACCOUNT_KEY)")
	discovery := fs.String("discovery-url", envOr("GENLBRIDGE_CALLOUT_DISCOVERY_URL", "https://kubernetes.default.svc/.well-known/openid-configuration"), "the OIDC discovery of the tokens' issuer (env GENLBRIDGE_CALLOUT_DISCOVERY_URL)")
	jwks := fs.String("jwks-url", envOr("GENLBRIDGE_CALLOUT_JWKS_URL", "https://kubernetes.default.svc/openid/v1/jwks"), "where the issuer's keys are read (empty: the discovery's jwks_uri; env GENLBRIDGE_CALLOUT_JWKS_URL)")
	issuer := fs.String("token-issuer", envOr("GENLBRIDGE_CALLOUT_TOKEN_ISSUER", ""), "the iss tokens must have (empty: the discovery's; env GENLBRIDGE_CALLOUT_TOKEN_ISSUER)")
	audience := fs.String("audience", envOr("GENLBRIDGE_CALLOUT_AUDIENCE", "genlbridge-nats"), "the audience tokens must be for: the DaemonSet's projected token's (env GENLBRIDGE_CALLOUT_AUDIENCE)")
	accounts := fs.String("service-accounts", envOr("GENLBRIDGE_CALLOUT_SERVICE_ACCOUNTS", "genlbridge/genlbridge"), "namespace/name of the service accounts admitted, comma-separated (env GENLBRIDGE_CALLOUT_SERVICE_ACCOUNTS)")
	review := fs.String("token-review-url", envOr("GENLBRIDGE_CALLOUT_TOKEN_REVIEW_URL", "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews"),
		"the API server's TokenReview, which also reviews each token (it refuses a deleted pod's); \"off\": the offline checks alone (env GENLBRIDGE_CALLOUT_TOKEN_REVIEW_URL)")
	ca := fs.String("ca-file", envOr("GENLBRIDGE_CALLOUT_CA_FILE", sa+"ca.crt"), "CA of the issuer's server (env GENLBRIDGE_CALLOUT_CA_FILE)")
	bearer := fs.String("bearer-token-file", envOr("GENLBRIDGE_CALLOUT_BEARER_TOKEN_FILE", sa+"token"), "token sent to read the discovery and keys (empty: none; env GENLBRIDGE_CALLOUT_BEARER_TOKEN_FILE)")
	maxTTL := fs.Duration("max-ttl", time.Hour, "longest life of a user it issues (it ends with the token anyway)")
	if err := parse(fs, args); err != nil {
		return err
	}
	readKey := func(what, file string) (nkeys.KeyPair, error) {
		if file == "" {
			return nil, fmt.Errorf("%s: give its seed file: %w", what, errUsage)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, file, err)
		}
		return kp, nil
	}
	ikp, err := readKey("--issuer-key", *issuerSeed)
	if err != nil {
		return err
	}
	var akp nkeys.KeyPair
	if *accountSeed != "" {
		if akp, err = readKey("--account-key", *accountSeed); err != nil {
			return err
		}
	}
	if *account == "" {
		return fmt.Errorf("give --account (the bridges' account): %w", errUsage)
	}
	if _, err := os.Stat(*ca); err != nil {
		*ca = "" // outside a pod: the system's roots
	}
	if _, err := os.Stat(*bearer); err != nil {
		*bearer = ""
	}
	client, err := callout.NewHTTPClient(*ca, *bearer)
	if err != nil {
		return err
	}
	var sas []string
	for _, s := range strings.Split(*accounts, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sas = append(sas, s)
		}
	}
	if *review == "off" {
		*review = ""
	}
	v, err := callout.NewVerifier(callout.VerifierConfig{DiscoveryURL: *discovery, JWKSURL: *jwks, Issuer: *issuer, Audience: *audience,
		ServiceAccounts: sas, TokenReviewURL: *review, Client: client})
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	// The bridges' settings, read once: each request only names its node.
	base, err := nodeParams("")
	if err != nil {
		return err
	}
	r, err := callout.New(callout.Config{Verifier: v, IssuerKey: ikp, IssuerAccount: *issuerAccount, Account: *account, AccountKey: akp,
		Params: func(node string) permissions.Params { p := base; p.Node = node; return p }, MaxTTL: *maxTTL, Logger: log})
	if err != nil {
		return err
	}
	opts, err := authFromEnv().Options()
	if err != nil {
		return fmt.Errorf("nats authentication: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: *url, Name: "genlbridge callout", Options: opts, Logger: log,
		OnClosed: func(error) { stop() }})
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := natsconn.WaitConnected(ctx, nc, log); err != nil {
		return err
	}
	err = r.Run(ctx, nc)
	acc, ref := r.Counts()
	log.Info("auth callout responder stopping", "admitted", acc, "refused", ref)
	return err
}
