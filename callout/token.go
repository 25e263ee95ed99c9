package callout

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Identity is what a verified Kubernetes service account token says of
// the pod that holds it.
type Identity struct {
	// ServiceAccount is "namespace/name".
	ServiceAccount string
	// Pod is "namespace/name" of the pod the token is bound to.
	Pod string
	// Node is the name of the node the pod runs on (the token's
	// kubernetes.io.node claim).
	Node string
	// Expires is the token's expiry.
	Expires time.Time
}

// Verifier checks service account tokens as the cluster's API server issued
// them: the signature against the keys of its OIDC discovery (JWKS), the
// issuer, the audience, the times, the service account, and that the token
// is bound to a pod on a node. Safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	client *http.Client

	mu      sync.Mutex
	keys    map[string]crypto.PublicKey // by kid
	issuer  string
	fetched time.Time // when the keys were last read
	tried   time.Time // when a read was last tried
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// DiscoveryURL is where the OpenID configuration is read
	// (<issuer>/.well-known/openid-configuration; for the API server from
	// inside the cluster, https://kubernetes.default.svc/.well-known/openid-configuration).
	DiscoveryURL string
	// JWKSURL, if set, is where the keys are read instead of the
	// discovery's jwks_uri (which names the API server's external address).
	JWKSURL string
	// Issuer, if set, is the iss tokens must have; else the discovery's.
	Issuer string
	// Audience is the audience tokens must be for.
	Audience string
	// ServiceAccounts are the "namespace/name" tokens may be of.
	ServiceAccounts []string
	// TokenReviewURL, if set, is the API server's TokenReview endpoint
	// (https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews):
	// a token that passes the offline checks is also reviewed there, and
	// refused unless the API server accepts it for the audience as the same
	// service account, pod and node. The API server refuses the token of a
	// pod (or service account) deleted since, which the offline checks
	// admit until it expires. The Client's bearer token must be allowed to
	// create tokenreviews (the ClusterRole system:auth-delegator). One
	// request to the API server per connection admitted.
	TokenReviewURL string
	// Client fetches the discovery and the keys, and sends the reviews
	// (with the cluster's CA and, if the API server wants it, a bearer
	// token: see NewHTTPClient).
	Client *http.Client
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// ErrRefused wraps every reason a token is refused.
var ErrRefused = errors.New("token refused")

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// NewVerifier returns a verifier; it fetches the keys at the first token.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.DiscoveryURL == "" || cfg.Audience == "" || len(cfg.ServiceAccounts) == 0 {
		return nil, errors.New("a token verifier needs a discovery URL, an audience and the service accounts it admits")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return &Verifier{cfg: cfg, client: c}, nil
}

// refreshEvery bounds how often an unknown key id fetches the keys again,
// and how often a failed fetch is tried again: a token anyone can send
// must not make every request wait for the issuer.
const refreshEvery = 10 * time.Second

// keysMaxAge is how long the keys are used before they are read again,
// even when every token names a known key: a key the issuer has dropped
// (rotated after a leak) stops being trusted within it.
const keysMaxAge = 10 * time.Minute

// fetch reads the discovery and the keys. Called with mu held.
func (v *Verifier) fetch(ctx context.Context) error {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, v.cfg.DiscoveryURL, &disc); err != nil {
		return fmt.Errorf("oidc discovery: %w", err)
	}
	jwksURL := v.cfg.JWKSURL
	if jwksURL == "" {
		jwksURL = disc.JWKSURI
	}
	if jwksURL == "" {
		return fmt.Errorf("oidc discovery %s names no jwks_uri", v.cfg.DiscoveryURL)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := v.getJSON(ctx, jwksURL, &set); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		pub, err := k.public()
		if err != nil {
			continue // a key of a kind we do not verify with
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return fmt.Errorf("jwks %s has no RSA or EC key", jwksURL)
	}
	v.keys, v.fetched = keys, v.cfg.Now()
	v.issuer = v.cfg.Issuer
	if v.issuer == "" {
		v.issuer = disc.Issuer
	}
	return nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}

// key returns the key of kid. The keys are read again when they are older
// than keysMaxAge, or when kid is not among them; a read (failed or not) is
// tried at most every refreshEvery, and a failed one leaves the keys read
// before in use until keysMaxAge is past twice over.
func (v *Verifier) key(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	k, known := v.keys[kid]
	stale := now.Sub(v.fetched) >= keysMaxAge
	if (!known || stale) && now.Sub(v.tried) >= refreshEvery {
		v.tried = now
		err := v.fetch(ctx)
		if err == nil {
			k, known = v.keys[kid]
		} else if v.keys == nil || now.Sub(v.fetched) >= 2*keysMaxAge {
			return nil, "", err
		}
	}
	if v.keys == nil {
		return nil, "", fmt.Errorf("the issuer's keys are not read yet (the last read failed less than %s ago)", refreshEvery)
	}
	if !known {
		return nil, "", refuse("signed with key %q, which the issuer's keys do not hold", kid)
	}
	return k, v.issuer, nil
}

// claims are a Kubernetes service account token's.
type claims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"` // a string or a list
	Exp int64           `json:"exp"`
	Nbf int64           `json:"nbf"`
	K8s struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
		} `json:"pod"`
		Node *struct {
			Name string `json:"name"`
		} `json:"node"`
	} `json:"kubernetes.io"`
}

// leeway tolerates clocks a little apart.
const leeway = 30 * time.Second

// Verify checks token and returns whom it identifies; every refusal wraps
// ErrRefused and says why (an error fetching the keys does not).
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Identity{}, refuse("not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodePart(parts[0], &hdr); err != nil {
		return Identity{}, refuse("header: %v", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Identity{}, refuse("signature: %v", err)
	}
	key, issuer, err := v.key(ctx, hdr.Kid)
	if err != nil {
		return Identity{}, err
	}
	if err := verifySig(hdr.Alg, key, []byte(parts[0]+"."+parts[1]), sig); err != nil {
		return Identity{}, err
	}
	var c claims
	if err := decodePart(parts[1], &c); err != nil {
		return Identity{}, refuse("claims: %v", err)
	}
	now := v.cfg.Now()
	switch {
	case c.Iss != issuer:
		return Identity{}, refuse("issuer %q, want %q", c.Iss, issuer)
	case !audienceHas(c.Aud, v.cfg.Audience):
		return Identity{}, refuse("audience %s, want %q", c.Aud, v.cfg.Audience)
	case c.Exp == 0 || now.After(time.Unix(c.Exp, 0).Add(leeway)):
		return Identity{}, refuse("expired at %s", time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	case c.Nbf != 0 && now.Add(leeway).Before(time.Unix(c.Nbf, 0)):
		return Identity{}, refuse("not valid before %s", time.Unix(c.Nbf, 0).UTC().Format(time.RFC3339))
	}
	sa := c.K8s.Namespace + "/" + c.K8s.ServiceAccount.Name
	if c.Sub != "system:serviceaccount:"+c.K8s.Namespace+":"+c.K8s.ServiceAccount.Name || !contains(v.cfg.ServiceAccounts, sa) {
		return Identity{}, refuse("service account %s (subject %q) is not one of %s", sa, c.Sub, strings.Join(v.cfg.ServiceAccounts, ", "))
	}
	if c.K8s.Pod == nil || c.K8s.Node == nil || c.K8s.Node.Name == "" {
		return Identity{}, refuse("not bound to a pod on a node (a projected token of a pod, from Kubernetes 1.30, carries both)")
	}
	id := Identity{ServiceAccount: sa, Pod: c.K8s.Namespace + "/" + c.K8s.Pod.Name, Node: c.K8s.Node.Name, Expires: time.Unix(c.Exp, 0)}
	if v.cfg.TokenReviewURL != "" {
		if err := v.review(ctx, token, c.Sub, id); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// The user's extra fields the API server's review gives for a pod-bound
// service account token.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraNodeName = "authentication.kubernetes.io/node-name"
)

// review asks the API server whether it accepts token for the audience, as
// subject sub bound to id's pod and node (where its answer names them, as
// from Kubernetes 1.30 it does). A refusal wraps ErrRefused; a
// review that could not be had (the API server unreachable, or the
// responder not allowed to create tokenreviews) does not.
func (v *Verifier) review(ctx context.Context, token, sub string, id Identity) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenReview",
		"spec":       map[string]any{"token": token, "audiences": []string{v.cfg.Audience}},
	})
	if err != nil {
		return fmt.Errorf("token review: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.TokenReviewURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("token review: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("token review: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("token review: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		hint := ""
		if resp.StatusCode == http.StatusForbidden {
			hint = " (the responder needs the ClusterRole system:auth-delegator)"
		}
		return fmt.Errorf("token review: POST %s: %s%s: %.200s", v.cfg.TokenReviewURL, resp.Status, hint, b)
	}
	var r struct {
		Status struct {
			Authenticated bool     `json:"authenticated"`
			Error         string   `json:"error"`
			Audiences     []string `json:"audiences"`
			User          struct {
				Username string              `json:"username"`
				Extra    map[string][]string `json:"extra"`
			} `json:"user"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("token review: the answer: %w", err)
	}
	st := r.Status
	ns, _, _ := strings.Cut(id.Pod, "/")
	one := func(k string) string {
		if l := st.User.Extra[k]; len(l) == 1 {
			return l[0]
		}
		return ""
	}
	switch {
	case !st.Authenticated:
		return refuse("the API server does not accept it: %s", cmp.Or(st.Error, "not authenticated"))
	case st.User.Username != sub:
		return refuse("the API server says it is %q, the token %q", st.User.Username, sub)
	case len(st.Audiences) > 0 && !contains(st.Audiences, v.cfg.Audience):
		return refuse("the API server accepts it for %v, not %q", st.Audiences, v.cfg.Audience)
	case one(extraPodName) != "" && ns+"/"+one(extraPodName) != id.Pod, one(extraNodeName) != "" && one(extraNodeName) != id.Node:
		return refuse("the API server says it is of pod %s/%s on node %q, the token of %s on %q",
			ns, one(extraPodName), one(extraNodeName), id.Pod, id.Node)
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func decodePart(s string, out any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func audienceHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return contains(many, want)
	}
	return false
}

// verifySig checks a JWS signature of the algorithms service account
// tokens use (RS256 and ES256, and their larger kin).
func verifySig(alg string, key crypto.PublicKey, signed, sig []byte) error {
	var h hash.Hash
	var ch crypto.Hash
	switch alg {
	case "RS256", "ES256":
		h, ch = sha256.New(), crypto.SHA256
	case "RS384", "ES384":
		h, ch = sha512.New384(), crypto.SHA384
	case "RS512", "ES512":
		h, ch = sha512.New(), crypto.SHA512
	default:
		return refuse("algorithm %q", alg)
	}
	h.Write(signed)
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return refuse("RSA key of %d bits (fewer than 2048)", k.N.BitLen())
		}
		if alg[0] != 'R' || rsa.VerifyPKCS1v15(k, ch, digest, sig) != nil {
			return refuse("bad signature")
		}
	case *ecdsa.PublicKey:
		// Each ES algorithm names its curve (RFC 7518, 3.4).
		if want := map[string]int{"ES256": 256, "ES384": 384, "ES512": 521}[alg]; want != 0 && k.Curve.Params().BitSize != want {
			return refuse("%s with a key on %s", alg, k.Curve.Params().Name)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		if alg[0] != 'E' || len(sig) != 2*n ||
			!ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return refuse("bad signature")
		}
	default:
		return refuse("key of an unknown kind")
	}
	return nil
}

// jwk is one key of a JWKS.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (k jwk) public() (crypto.PublicKey, error) {
	b := func(s string) (*big.Int, error) {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetBytes(raw), nil
	}
	switch k.Kty {
	case "RSA":
		n, err := b(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b(k.E)
		if err != nil || !e.IsInt64() {
			return nil, fmt.Errorf("rsa exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		c, ok := curves[k.Crv]
		if !ok {
			return nil, fmt.Errorf("curve %q", k.Crv)
		}
		x, err := b(k.X)
		if err != nil {
			return nil, err
		}
		y, err := b(k.Y)
		if err != nil {
			return nil, err
		}
		return &ecdsa.PublicKey{Curve: c, X: x, Y: y}, nil
	}
	return nil, fmt.Errorf("key type %q", k.Kty)
}

// NewHTTPClient returns a client for the API server's discovery: trusting
// caFile (none: the system's roots) and, with tokenFile, sending its
// content (read at each request: it rotates) as a bearer token. The API
// server serves its discovery to service accounts by default.
func NewHTTPClient(caFile, tokenFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if tokenFile != "" {
		rt = bearer{next: tr, file: tokenFile}
	}
	return &http.Client{Transport: rt, Timeout: 10 * time.Second}, nil
}

type bearer struct {
	next http.RoundTripper
	file string
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := os.ReadFile(b.file)
	if err != nil {
		return nil, fmt.Errorf("read bearer token: %w", err)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return b.next.RoundTrip(req)
}
