package callout

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/oidctest"
)

func testVerifier(t *testing.T, is *oidctest.Issuer) *Verifier {
	t.Helper()
	client, err := NewHTTPClient(is.CAFile, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{DiscoveryURL: is.URL + "/.well-known/openid-configuration", Audience: "nats",
		ServiceAccounts: []string{"genlbridge/genlbridge"}, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	is := oidctest.New(t)
	other := oidctest.New(t) // another cluster's issuer, same issuer name
	v := testVerifier(t, is)
	good := oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "genlbridge-x7k", Node: "node-a", Audience: "nats"}
	for _, ec := range []bool{false, true} {
		c := good
		c.EC = ec
		id, err := v.Verify(context.Background(), is.Token(c))
		if err != nil {
			t.Fatalf("ec %v: %v", ec, err)
		}
		if id.Node != "node-a" || id.Pod != "genlbridge/genlbridge-x7k" || id.ServiceAccount != "genlbridge/genlbridge" || time.Until(id.Expires) < 50*time.Minute {
			t.Fatalf("%+v", id)
		}
	}
	for _, c := range []struct {
		name  string
		token string
		why   string
	}{
		{"another issuer's key", other.Token(good), "bad signature"},
		{"expired", is.Token(withExpiry(good, time.Now().Add(-time.Minute))), "expired"},
		{"another audience", is.Token(with(good, func(c *oidctest.Claims) { c.Audience = "kubernetes" })), "audience"},
		{"another issuer name", is.Token(with(good, func(c *oidctest.Claims) { c.Iss = "https://other" })), "issuer"},
		{"another service account", is.Token(with(good, func(c *oidctest.Claims) { c.ServiceAccount = "default" })), "service account"},
		{"not bound to a pod", is.Token(with(good, func(c *oidctest.Claims) { c.NoPod = true })), "not bound to a pod"},
		{"no node", is.Token(with(good, func(c *oidctest.Claims) { c.NoNode = true })), "not bound to a pod on a node"},
		{"tampered", tamper(is.Token(good)), "bad signature"},
		{"garbage", "not.a.jwt!", ""},
	} {
		_, err := v.Verify(context.Background(), c.token)
		if err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.why)
		}
	}
}

func with(c oidctest.Claims, f func(*oidctest.Claims)) oidctest.Claims { f(&c); return c }

func withExpiry(c oidctest.Claims, t time.Time) oidctest.Claims { c.Expires = t; return c }

// tamper changes the node in the claims, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[1])
	b[len(b)/2] ^= 1
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

// TestKeysReadAgain: a key the issuer drops stops being trusted once the
// keys are older than keysMaxAge, though every token names a known key;
// while the issuer is down its reads are tried at most every refreshEvery
// (whatever tokens come), and the keys read before stay in use meanwhile.
func TestKeysReadAgain(t *testing.T) {
	is := oidctest.New(t)
	client, err := NewHTTPClient(is.CAFile, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v, err := NewVerifier(VerifierConfig{DiscoveryURL: is.URL + "/.well-known/openid-configuration", Audience: "nats",
		ServiceAccounts: []string{"genlbridge/genlbridge"}, Client: client, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	claims := oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "p", Node: "n", Audience: "nats", Expires: now.Add(24 * time.Hour)}
	tok := is.Token(claims) // RSA, kid rsa-1
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("first token: %v", err)
	}

	// The issuer is down: tokens naming keys it never had come in a
	// stream; the keys are read once per refreshEvery, and the known
	// key still verifies.
	is.Down.Store(true)
	reads := is.Reads.Load()
	unknown := strings.Replace(tok, tok[:strings.IndexByte(tok, '.')], b64JSON(t, map[string]string{"alg": "RS256", "kid": "nobody", "typ": "JWT"}), 1)
	for i := 0; i < 50; i++ {
		if _, err := v.Verify(ctx, unknown); err == nil {
			t.Fatal("a token of an unknown key was admitted")
		}
		now = now.Add(100 * time.Millisecond) // 5 s in all
	}
	if got := is.Reads.Load() - reads; got != 0 {
		t.Errorf("the issuer was asked %d times for 50 unknown tokens within refreshEvery of the last read, want 0", got)
	}
	now = now.Add(refreshEvery)
	for i := 0; i < 50; i++ {
		v.Verify(ctx, unknown)
	}
	// One try (its discovery fails, so the keys are not asked for).
	if got := is.Reads.Load() - reads; got != 1 {
		t.Errorf("the issuer was asked %d times for 50 unknown tokens after refreshEvery, want 1", got)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("the known key while the issuer is down: %v", err)
	}

	// Back, with the RSA key dropped: trusted until the keys are
	// keysMaxAge old, then refused.
	is.Down.Store(false)
	is.DropRSA.Store(true)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("before keysMaxAge: %v", err)
	}
	now = now.Add(keysMaxAge)
	if _, err := v.Verify(ctx, tok); err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "rsa-1") {
		t.Errorf("a dropped key after keysMaxAge: %v, want refused naming rsa-1", err)
	}
	if _, err := v.Verify(ctx, is.Token(with(claims, func(c *oidctest.Claims) { c.EC = true }))); err != nil {
		t.Errorf("the key still served: %v", err)
	}
}

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestTokenReview: with a TokenReview URL, a token that passes the offline
// checks is refused when the API server no longer accepts it (its pod
// deleted) or names another node; a review the responder is not allowed
// to make is an error that says what it lacks, not a refusal of the token;
// tokens refused offline never reach the API server.
func TestTokenReview(t *testing.T) {
	is := oidctest.New(t)
	client, err := NewHTTPClient(is.CAFile, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{DiscoveryURL: is.URL + "/.well-known/openid-configuration", Audience: "nats",
		ServiceAccounts: []string{"genlbridge/genlbridge"}, TokenReviewURL: is.ReviewURL, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "genlbridge-x7k", Node: "node-a", Audience: "nats"}
	tok := is.Token(good)
	if id, err := v.Verify(ctx, tok); err != nil || id.Node != "node-a" {
		t.Fatalf("a live pod's token: %+v, %v", id, err)
	}
	if n := is.Reviews.Load(); n != 1 {
		t.Errorf("%d reviews for one token, want 1", n)
	}

	// Refused offline: the API server is not asked.
	if _, err := v.Verify(ctx, is.Token(with(good, func(c *oidctest.Claims) { c.Audience = "other" }))); !errors.Is(err, ErrRefused) {
		t.Errorf("another audience: %v", err)
	}
	if n := is.Reviews.Load(); n != 1 {
		t.Errorf("a token refused offline was reviewed (%d reviews)", n)
	}

	// The API server disagrees on the node.
	other := "node-b"
	is.ReviewAs.Store(&other)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `on node "node-b"`) {
		t.Errorf("the review names another node: %v, want a refusal naming it", err)
	}
	is.ReviewAs.Store(nil)

	// The reviewer lacks the ClusterRole.
	is.Forbid.Store(true)
	if _, err := v.Verify(ctx, tok); err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "system:auth-delegator") {
		t.Errorf("a forbidden review: %v, want an error (not a refusal) naming system:auth-delegator", err)
	}
	is.Forbid.Store(false)

	// The pod deleted: its token, still signed and unexpired, is refused.
	is.DeletePod("genlbridge", "genlbridge-x7k")
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `the API server does not accept it: pod "genlbridge-x7k" not found`) {
		t.Errorf("a deleted pod's token: %v, want refused by the API server", err)
	}
	if _, err := v.Verify(ctx, is.Token(with(good, func(c *oidctest.Claims) { c.Pod = "genlbridge-p2q" }))); err != nil {
		t.Errorf("the next pod's token: %v", err)
	}
}
