//go:build k8s

package k8stest

// Per-node identity with the real API server: the hub in operator mode
// with an auth callout, the responder of deploy/nats/callout as a
// Deployment in the cluster, and the DaemonSet of deploy/base connecting
// with its pod's projected service account token and no NATS secret.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/genlbridge/genlbridge/internal/callouttest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/k8scluster"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/nats-io/nats.go"
)

const (
	calloutNS       = "nats"
	calloutName     = "genlbridge-callout"
	calloutAudience = "genlbridge-nats"
)

// operatorHub is a nats-server process on the host's loopback in operator
// mode (JWTs made here, a memory resolver): the bridges' account GENL
// (JetStream, and a signing key the responder signs users with), the
// callout account AUTH (its auth callout: the responder's user, users
// granted into GENL) whose bearer sentinel takes every token-only
// connection, and SYS. The test reads the stream as an administrator of
// GENL.
type operatorHub struct {
	t      *testing.T
	url    string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	nc     *nats.Conn

	genlPub        string
	authSeed       []byte // the AUTH account's key: signs the responses
	genlSigning    []byte // a signing key of GENL: signs the users
	responderCreds []byte // the responder's user in AUTH
	adminCreds     string // a file: a user of GENL with every permission
}

func startOperatorHub(t *testing.T) *operatorHub {
	t.Helper()
	h := &operatorHub{t: t, dir: t.TempDir()}
	f := callouttest.New(t)
	h.genlPub, h.authSeed, h.genlSigning, h.responderCreds = f.GenlPub, f.AuthSeed, f.GenlSigning, f.ResponderCreds
	h.adminCreds = filepath.Join(h.dir, "admin.creds")
	if err := os.WriteFile(h.adminCreds, f.UserCreds(t, "admin", nil), 0o600); err != nil {
		t.Fatal(err)
	}
	port := proctest.FreePort(t)
	h.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	cf := filepath.Join(h.dir, "hub.conf")
	if err := os.WriteFile(cf, []byte(f.ServerConfig("k8stest-operator-hub", port, filepath.Join(h.dir, "store"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(natsServerBinary(t), "-c", cf)
	logf, err := os.Create(filepath.Join(h.dir, "hub.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := k8scluster.Spawn(cmd); err != nil {
		t.Fatal(err)
	}
	h.cmd, h.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(h.exited) }()
	t.Cleanup(func() {
		if h.nc != nil {
			h.nc.Close()
		}
		_ = h.cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("the hub's log:\n%s", tail(h.log(), 40))
		}
	})
	waitFor(t, 30*time.Second, "the operator-mode hub to listen", func() bool {
		select {
		case <-h.exited:
			t.Fatalf("the hub exited; its log:\n%s", h.log())
		default:
		}
		nc, err := nats.Connect(h.url, nats.UserCredentials(h.adminCreds))
		if err != nil {
			return false
		}
		h.nc = nc
		return true
	})
	createStream(t, h.nc)
	return h
}

func (h *operatorHub) log() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "hub.log"))
	return string(b)
}

// deployResponder applies deploy/nats/callout through a test overlay: the
// keys in the Secret its manifest names, the test's image, the host
// network (the pod network here is loopback only; the hub and the API
// server listen on the host's loopback), the hub's address, and the API
// server's discovery, keys and TokenReview at its address (no kube-proxy
// for kubernetes.default.svc). It waits for the responder to serve, and
// returns a function that reads its log.
func deployResponder(t *testing.T, c *k8scluster.Cluster, h *operatorHub) func() string {
	t.Helper()
	dir := t.TempDir()
	api := c.APIURL()
	kust := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %[1]s
resources:
  - %[2]s
  - secret.yaml
images:
  - name: ghcr.io/genlbridge/genlbridge
    newName: %[3]s
    newTag: %[4]s
patches:
  - target:
      kind: Deployment
      name: %[5]s
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: %[5]s
      spec:
        template:
          spec:
            hostNetwork: true
            containers:
              - name: callout
                env:
                  - name: GENLBRIDGE_NATS_URL
                    value: %[6]q
                  - name: GENLBRIDGE_CALLOUT_DISCOVERY_URL
                    value: %[7]q
                  - name: GENLBRIDGE_CALLOUT_JWKS_URL
                    value: %[8]q
                  - name: GENLBRIDGE_CALLOUT_TOKEN_REVIEW_URL
                    value: %[9]q
`, calloutNS, rel(t, dir, filepath.Join(repoRoot, "deploy/nats/callout")), imageRepo, imageTag, calloutName, h.url,
		api+"/.well-known/openid-configuration", api+"/openid/v1/jwks", api+"/apis/authentication.k8s.io/v1/tokenreviews")
	secret := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
stringData:
  responder.creds: %q
  auth-account.nk: %q
  genl-signing.nk: %q
  genl-account.pub: %q
`, calloutName, h.responderCreds, h.authSeed, h.genlSigning, h.genlPub)
	for name, text := range map[string]string{"kustomization.yaml": kust, "secret.yaml": secret} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kubectl(t, c, "create", "namespace", calloutNS)
	logs := func() string {
		// Every responder's (they share the requests in a queue group).
		out, _ := c.Kubectl("-n", calloutNS, "logs", "-l", "app.kubernetes.io/name="+calloutName, "--tail=-1", "--prefix")
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the responder's pods:\n%s", mustOut(c.Kubectl("-n", calloutNS, "get", "pods", "-o", "wide")))
			t.Logf("events in %s:\n%s", calloutNS, mustOut(c.Kubectl("-n", calloutNS, "get", "events", "--sort-by=.lastTimestamp")))
			t.Logf("the responder's log:\n%s", tail(logs(), 60))
		}
		// The ClusterRoleBinding is no namespace's: delete what was applied.
		if _, err := c.Kubectl("delete", "-k", dir, "--wait=true", "--timeout=120s", "--ignore-not-found"); err != nil {
			t.Errorf("delete the responder: %v", err)
		}
		if _, err := c.Kubectl("delete", "namespace", calloutNS, "--wait=true", "--timeout=120s"); err != nil {
			t.Errorf("delete the namespace %s: %v", calloutNS, err)
		}
	})
	stdout, stderr, err := c.KubectlOutput(context.Background(), "apply", "-k", dir)
	if err != nil {
		t.Fatalf("kubectl apply -k (the responder): %v\n%s%s", err, stdout, stderr)
	}
	if strings.TrimSpace(stderr) != "" {
		t.Errorf("kubectl apply -k (the responder) printed on its standard error (a warning):\n%s", stderr)
	}
	t.Logf("kubectl apply -k (deploy/nats/callout):\n%s", strings.TrimSpace(stdout))
	kubectl(t, c, "-n", calloutNS, "rollout", "status", "deploy/"+calloutName, "--timeout=120s")
	waitFor(t, time.Minute, "both responders to serve", func() bool {
		return strings.Count(logs(), "auth callout responder serving") >= 2
	})
	return logs
}

// calloutRecords are the responder's log records with message msg.
func calloutRecords(log, msg string) []map[string]any {
	var recs []map[string]any
	for _, l := range strings.Split(log, "\n") {
		// kubectl logs --prefix puts "[pod/NAME/CONTAINER] " first.
		if i := strings.IndexByte(l, '{'); i > 0 {
			l = l[i:]
		}
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			recs = append(recs, rec)
		}
	}
	return recs
}

// tokenClaims decodes a JWT's claims (no verification: what it says).
func tokenClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// claimName is claims["kubernetes.io"][what]["name"].
func claimName(claims map[string]any, what string) string {
	k8s, _ := claims["kubernetes.io"].(map[string]any)
	o, _ := k8s[what].(map[string]any)
	s, _ := o["name"].(string)
	return s
}

// createToken asks the API server for a token (TokenRequest, through
// kubectl create token).
func createToken(t *testing.T, c *k8scluster.Cluster, sa string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(kubectl(t, c, append([]string{"-n", namespace, "create", "token", sa, "--duration", "10m"}, args...)...))
}

// resign signs header.claims (claims edited by edit) with key, keeping the
// header (its kid): a token as the API server's would be, but signed by
// another issuer.
func resign(t *testing.T, token string, key *rsa.PrivateKey, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	claims := tokenClaims(t, token)
	if edit != nil {
		edit(claims)
	}
	b, _ := json.Marshal(claims)
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b)
	if key == nil { // the original signature over other claims
		return signed + "." + parts[2]
	}
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestPerNodeIdentity: no NATS secret on the node. The DaemonSet's pod
// connects to the operator-mode hub with its projected service account
// token (audience genlbridge-nats, bound to the pod and its node by the
// real API server); the hub asks the responder of deploy/nats/callout,
// running in the cluster, which verifies the token against the API
// server's OIDC discovery and keys and admits the node with its own
// permissions alone; the node's kernel events reach the stream under its
// host token. A client admitted with a token the API server bound to that
// pod (TokenRequest) may not publish as another host nor read another's
// inbox; tokens of another service account, for another audience, bound
// to no pod, signed by another key, re-signed for another node, or bound
// to a pod deleted since (the API server's TokenReview) are refused, each
// with its reason in the responder's log.
func TestPerNodeIdentity(t *testing.T) {
	c := need(t)
	h := startOperatorHub(t)
	start := time.Now()
	calloutLog := deployResponder(t, c, h)
	t.Logf("the responder (deploy/nats/callout) serving %v after kubectl apply", time.Since(start).Round(time.Millisecond))

	// The bridge: the base as it is, its token and no secret.
	o := newOverlay(t)
	o.subscribe = "netdev/mgmt"
	start = time.Now()
	apply(t, c, o, o.write(t, h.url, nil))
	rollout(t, c)
	p := waitReadyPod(t, c, time.Minute)
	t.Logf("the DaemonSet rolled out, pod %s Ready %v after kubectl apply", p.Name, time.Since(start).Round(time.Millisecond))
	pid := containerPid(t, c, &p)
	mounted, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/var/run/secrets/genlbridge/nats-token", pid))
	if err != nil {
		t.Fatalf("the pod's projected token: %v", err)
	}
	claims := tokenClaims(t, string(mounted))
	t.Logf("the pod's projected token: iss %v, aud %v, sub %v, pod %q, node %q, lifetime %vs",
		claims["iss"], claims["aud"], claims["sub"], claimName(claims, "pod"), claimName(claims, "node"), claims["exp"].(float64)-claims["iat"].(float64))
	if claims["iss"] != k8scluster.ServiceAccountIssuer {
		t.Errorf("the pod's token is of issuer %v, want the API server's %s", claims["iss"], k8scluster.ServiceAccountIssuer)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != calloutAudience {
		t.Errorf("the pod's token is for %v, want [%s]", claims["aud"], calloutAudience)
	}
	if claimName(claims, "pod") != p.Name || claimName(claims, "node") != c.NodeName() {
		t.Errorf("the pod's token names pod %q on node %q, want %s on %s (ServiceAccountTokenPodNodeInfo)", claimName(claims, "pod"), claimName(claims, "node"), p.Name, c.NodeName())
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/var/run/secrets/kubernetes.io/serviceaccount", pid)); err == nil {
		t.Errorf("the pod has the service account's API token mounted")
	}
	admitted := func(pod string) bool {
		for _, r := range calloutRecords(calloutLog(), "auth callout: admitted") {
			if r["node"] == c.NodeName() && r["pod"] == namespace+"/"+pod && r["service_account"] == namespace+"/genlbridge" {
				return true
			}
		}
		return false
	}
	waitFor(t, 30*time.Second, "the responder to log the pod's admission", func() bool { return admitted(p.Name) })
	for _, r := range calloutRecords(calloutLog(), "auth callout: admitted") {
		t.Logf("the responder: admitted node %v, pod %v, service account %v, token expires %v (client %v)", r["node"], r["pod"], r["service_account"], r["token_expires"], r["client_host"])
	}

	// The node's kernel events, under its host token.
	waitMetrics(t, o, 30*time.Second, "netdev/mgmt joined, the sink connected", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_subscription_joined", "subscription=netdev/mgmt") == 1 && m.Get("genlbridge_sink_connected") == 1
	})
	idx := vethPair(t, "k8i")
	var subjects sync.Map
	sub, err := h.nc.Subscribe("genl.>", func(m *nats.Msg) { subjects.Store(m.Subject, true) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var evs []event.Event
	waitFor(t, time.Minute, "the veth pair's dev-add-ntf and dev-del-ntf in the hub's stream", func() bool {
		evs = jstest.ReadStream(t, h.nc, "GENL").Events
		got := kernelEvents(evs, idx, 0)
		return got["dev-add-ntf"] == 2 && got["dev-del-ntf"] == 2
	})
	hostToken := strings.ReplaceAll(c.NodeName(), ".", "_")
	for _, e := range evs {
		if e.Host != c.NodeName() {
			t.Errorf("%s/%s %s from host %q, want %q", e.Family, e.Group, e.Op, e.Host, c.NodeName())
		}
	}
	msgs, err := h.nc.Request("$JS.API.STREAM.INFO.GENL", []byte(`{"subjects_filter":">"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		State struct {
			Subjects map[string]uint64 `json:"subjects"`
		} `json:"state"`
	}
	_ = json.Unmarshal(msgs.Data, &info)
	for s := range info.State.Subjects {
		if !strings.HasSuffix(s, "."+hostToken) && !strings.HasSuffix(s, "."+hostToken+".loss") {
			t.Errorf("the stream holds subject %s: not the node's host token %s", s, hostToken)
		}
	}
	t.Logf("in the hub's stream: %d events, subjects %v, all from host %s", len(evs), info.State.Subjects, c.NodeName())
	if m, err := scrape(o); err == nil && m.Sum("genlbridge_permission_denied_total") != 0 {
		t.Errorf("the bridge counted %v refusals for permissions", m.Sum("genlbridge_permission_denied_total"))
	}

	// A token the API server binds to the pod (TokenRequest): what it says.
	podToken := createToken(t, c, "genlbridge", "--audience", calloutAudience, "--bound-object-kind", "Pod", "--bound-object-name", p.Name)
	claims = tokenClaims(t, podToken)
	t.Logf("TokenRequest bound to pod %s: kubernetes.io %v", p.Name, claims["kubernetes.io"])
	if claimName(claims, "node") != c.NodeName() {
		t.Fatalf("the API server's pod-bound token has no kubernetes.io.node %q (ServiceAccountTokenPodNodeInfo): %v", c.NodeName(), claims["kubernetes.io"])
	}

	// Admitted as the node, it may not act as another.
	var spyErrs strings.Builder
	var mu sync.Mutex
	spy, err := nats.Connect(h.url, nats.Token(podToken), nats.CustomInboxPrefix("_INBOX_"+hostToken), nats.Name("k8stest spy"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			fmt.Fprintln(&spyErrs, err)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("a client with the pod-bound token: %v", err)
	}
	defer spy.Close()
	forged := event.Event{Host: "other-node", BootID: "forged", Family: "netdev", Group: "mgmt", Seq: 1, SeqSource: event.SeqKernel, Instance: 1,
		RecvNS: time.Now().UnixNano(), Format: event.FormatExmpl, Msg: "forged by " + c.NodeName()}
	if err := spy.Publish("genl.netdev.mgmt.other-node", event.AppendJSON(nil, &forged)); err != nil {
		t.Fatal(err)
	}
	if _, err := spy.SubscribeSync("_INBOX_other-node.>"); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	spyText := func() string { mu.Lock(); defer mu.Unlock(); return spyErrs.String() }
	waitFor(t, 10*time.Second, "both permission violations", func() bool {
		s := spyText()
		return strings.Contains(s, `Publish to "genl.netdev.mgmt.other-node"`) && strings.Contains(s, `Subscription to "_INBOX_other-node.>"`)
	})
	t.Logf("admitted as %s, publishing as other-node and reading other-node's inbox:\n%s", c.NodeName(), strings.TrimSpace(spyText()))
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := subjects.Load("genl.netdev.mgmt.other-node"); ok {
		t.Errorf("the forged event was delivered")
	}
	for _, e := range jstest.ReadStream(t, h.nc, "GENL").Events {
		if e.BootID == "forged" {
			t.Errorf("the forged event was stored: %+v", e)
		}
	}
	spy.Close()

	// Tokens the responder refuses, each for its reason.
	kubectl(t, c, "-n", namespace, "create", "serviceaccount", "intruder")
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token, why string }{
		{"of another service account (genlbridge/intruder)", createToken(t, c, "intruder", "--audience", calloutAudience),
			"service account genlbridge/intruder"},
		{"for another audience", createToken(t, c, "genlbridge", "--audience", "another-audience", "--bound-object-kind", "Pod", "--bound-object-name", p.Name),
			"audience"},
		{"bound to no pod", createToken(t, c, "genlbridge", "--audience", calloutAudience),
			"not bound to a pod on a node"},
		{"signed by another key (the pod-bound token's claims and key id)", resign(t, podToken, otherKey, nil),
			"bad signature"},
		{"of the pod, its node changed to other-node", resign(t, podToken, nil, func(m map[string]any) {
			m["kubernetes.io"].(map[string]any)["node"].(map[string]any)["name"] = "other-node"
		}), "bad signature"},
	} {
		before := len(calloutRecords(calloutLog(), "auth callout: refused"))
		nc, err := nats.Connect(h.url, nats.Token(tc.token), nats.MaxReconnects(0), nats.Name("k8stest refused"))
		if err == nil {
			nc.Close()
			t.Errorf("a token %s: admitted", tc.name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("a token %s: %v, want an authorization violation", tc.name, err)
		}
		var reason string
		waitFor(t, 20*time.Second, "the responder's refusal of a token "+tc.name, func() bool {
			recs := calloutRecords(calloutLog(), "auth callout: refused")
			if len(recs) <= before {
				return false
			}
			// The newest: the responders' logs come one pod after the
			// other, not in time order.
			at := func(r map[string]any) time.Time {
				t, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
				return t
			}
			newest := recs[0]
			for _, r := range recs[1:] {
				if at(r).After(at(newest)) {
					newest = r
				}
			}
			reason = fmt.Sprint(newest["reason"])
			return true
		})
		if !strings.Contains(reason, tc.why) {
			t.Errorf("a token %s: the responder refused it for %q, want %q", tc.name, reason, tc.why)
		}
		t.Logf("a token %s: client %q; responder: %q", tc.name, err, reason)
	}

	// The bridge never saw a refusal.
	if m, err := scrape(o); err != nil || m.Get("genlbridge_sink_connected") != 1 || m.Sum("genlbridge_permission_denied_total") != 0 {
		t.Errorf("the bridge: %v; connected %v, permission refusals %v", err, m.Get("genlbridge_sink_connected"), m.Sum("genlbridge_permission_denied_total"))
	}

	// The pod deleted: the DaemonSet's next pod is admitted with its own
	// token, and the deleted pod's, still signed and unexpired, is
	// refused: the API server's review (TokenReview) no longer accepts it.
	kubectl(t, c, "-n", namespace, "delete", "pod", p.Name, "--wait=true", "--timeout=60s")
	next := waitReadyPod(t, c, 2*time.Minute, p.Name)
	waitFor(t, 30*time.Second, "the responder to admit the next pod "+next.Name, func() bool { return admitted(next.Name) })
	t.Logf("pod %s deleted; the next, %s, admitted with its own token", p.Name, next.Name)
	var connErr error
	waitFor(t, 30*time.Second, "a token bound to the deleted pod "+p.Name+" refused", func() bool {
		nc, err := nats.Connect(h.url, nats.Token(podToken), nats.MaxReconnects(0), nats.Name("k8stest deleted pod"))
		if err == nil {
			nc.Close() // the API server's view of the pod may lag its deletion a moment
			return false
		}
		connErr = err
		return true
	})
	const want = "the API server does not accept it"
	var reason string
	waitFor(t, 20*time.Second, "the responder's refusal of the deleted pod's token", func() bool {
		for _, r := range calloutRecords(calloutLog(), "auth callout: refused") {
			if s := fmt.Sprint(r["reason"]); strings.Contains(s, want) {
				reason = s
				return true
			}
		}
		return false
	})
	t.Logf("a token bound to the deleted pod %s: client %q; responder: %q", p.Name, connErr, reason)
}
