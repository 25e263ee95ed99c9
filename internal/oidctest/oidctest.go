// Package oidctest is a token issuer for tests that serves its OpenID
// discovery and keys as the Kubernetes API server does
// (/.well-known/openid-configuration, /openid/v1/jwks, over TLS) and mints
// service account tokens with the API server's claims, pod and node
// bound, and reviews them (TokenReview) as the API server does: a token
// of a pod deleted since is not accepted.
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
	"slices"
	"strings"
	"sync"
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
	// ReviewURL is the TokenReview endpoint; Reviews counts its requests;
	// Forbid answers them 403, as to a reviewer without the ClusterRole
	// system:auth-delegator; ReviewAs, if set, is the node the review
	// names (an API server that disagrees with the token).
	ReviewURL string
	Reviews   atomic.Int64
	Forbid    atomic.Bool
	ReviewAs  atomic.Pointer[string]
	deleted   sync.Map // pod names ("ns/name") deleted since their tokens
	srv       *httptest.Server
	rsa       *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
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
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", is.review)
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.ReviewURL = is.URL + "/apis/authentication.k8s.io/v1/tokenreviews"
	is.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(is.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return is
}

// DeletePod makes the tokens bound to pod ns/name unacceptable to the
// review, as the API server's are once the pod is deleted.
func (is *Issuer) DeletePod(ns, name string) { is.deleted.Store(ns+"/"+name, true) }

// review answers a TokenReview as the API server does for the tokens this
// issuer mints (their signature is not checked again: the verifier under
// test has checked it).
func (is *Issuer) review(w http.ResponseWriter, r *http.Request) {
	is.Reviews.Add(1)
	if is.Forbid.Load() {
		http.Error(w, `{"kind":"Status","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
		return
	}
	var req struct {
		Spec struct {
			Token     string   `json:"token"`
			Audiences []string `json:"audiences"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type status = map[string]any
	answer := func(st status) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": st})
	}
	var c struct {
		Sub string   `json:"sub"`
		Aud []string `json:"aud"`
		K8s struct {
			Namespace string `json:"namespace"`
			Pod       *struct {
				Name string `json:"name"`
			} `json:"pod"`
			Node *struct {
				Name string `json:"name"`
			} `json:"node"`
		} `json:"kubernetes.io"`
	}
	parts := strings.Split(req.Spec.Token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[min(1, len(parts)-1)])
	if len(parts) != 3 || err != nil || json.Unmarshal(b, &c) != nil {
		answer(status{"authenticated": false, "error": "invalid bearer token"})
		return
	}
	var auds []string
	for _, a := range req.Spec.Audiences {
		if slices.Contains(c.Aud, a) {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		answer(status{"authenticated": false, "error": "token audiences are invalid"})
		return
	}
	extra := map[string][]string{}
	if p := c.K8s.Pod; p != nil {
		if _, gone := is.deleted.Load(c.K8s.Namespace + "/" + p.Name); gone {
			answer(status{"authenticated": false, "error": "pod \"" + p.Name + "\" not found"})
			return
		}
		extra["authentication.kubernetes.io/pod-name"] = []string{p.Name}
	}
	if n := c.K8s.Node; n != nil {
		extra["authentication.kubernetes.io/node-name"] = []string{n.Name}
		if as := is.ReviewAs.Load(); as != nil {
			extra["authentication.kubernetes.io/node-name"] = []string{*as}
		}
	}
	answer(status{"authenticated": true, "audiences": auds, "user": status{"username": c.Sub, "extra": extra}})
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
