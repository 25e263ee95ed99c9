package callout

import (
	"context"
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
