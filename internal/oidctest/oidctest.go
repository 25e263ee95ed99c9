// Package oidctest is a token issuer for tests that serves its OpenID
// discovery and keys as the Kubernetes API server does
// (/.well-known/openid-configuration, /openid/v1/jwks, over TLS) and mints
// service account tokens with the API server's claims, pod and node
// bound.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Issuer is a running test issuer.
type Issuer struct {
	// URL is the server's address; Iss the issuer tokens name (as the API
	// server's, another name than its address).
	URL, Iss string
	// CAFile is the PEM of the server's certificate, for clients.
	CAFile string
	// DropRSA leaves the RSA key out of the keys served (a rotation);
	// Down makes every request fail with 503; Reads counts the requests
	// (discovery and keys).
	DropRSA, Down atomic.Bool
	Reads         atomic.Int64
	srv           *httptest.Server
	rsa           *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
}

// New starts an issuer, stopped at the end of the test.
func New(t testing.TB) *Issuer {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{Iss: "https://kubernetes.default.svc.cluster.local", rsa: rk, ec: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.Reads.Add(1)
		if is.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.Iss, "jwks_uri": is.URL + "/openid/v1/jwks",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.Reads.Add(1)
		if is.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
		keys := []any{map[string]any{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(pad32(ek.X)), "y": b64(pad32(ek.Y))}}
		if !is.DropRSA.Load() {
			keys = append(keys, map[string]any{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())})
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(is.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return is
}

func pad32(v *big.Int) []byte {
	b := make([]byte, 32)
	return v.FillBytes(b)
}

// Claims are the parts of a token a test varies.
type Claims struct {
	Namespace, ServiceAccount, Pod, Node string
	Audience                             string
	Expires                              time.Time
	// NoPod and NoNode leave those claims out; EC signs with ES256.
	NoPod, NoNode, EC bool
	// Iss overrides the issuer.
	Iss string
}

// Token mints a token as the API server's TokenRequest does for a pod.
func (is *Issuer) Token(c Claims) string {
	iss := c.Iss
	if iss == "" {
		iss = is.Iss
	}
	now := time.Now()
	if c.Expires.IsZero() {
		c.Expires = now.Add(time.Hour)
	}
	k8s := map[string]any{"namespace": c.Namespace, "serviceaccount": map[string]any{"name": c.ServiceAccount, "uid": "sa-uid"}}
	if !c.NoPod {
		k8s["pod"] = map[string]any{"name": c.Pod, "uid": "pod-uid"}
	}
	if !c.NoNode {
		k8s["node"] = map[string]any{"name": c.Node, "uid": "node-uid"}
	}
	claims := map[string]any{"iss": iss, "sub": "system:serviceaccount:" + c.Namespace + ":" + c.ServiceAccount,
		"aud": []string{c.Audience}, "exp": c.Expires.Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": "j", "kubernetes.io": k8s}
	alg, kid := "RS256", "rsa-1"
	if c.EC {
		alg, kid = "ES256", "ec-1"
	}
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	signed := enc(map[string]string{"alg": alg, "kid": kid}) + "." + enc(claims)
	h := sha256.Sum256([]byte(signed))
	var sig []byte
	if c.EC {
		r, s, _ := ecdsa.Sign(rand.Reader, is.ec, h[:])
		sig = append(pad32(r), pad32(s)...)
	} else {
		sig, _ = rsa.SignPKCS1v15(rand.Reader, is.rsa, crypto.SHA256, h[:])
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}
