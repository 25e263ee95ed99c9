//go:build linux

package e2e

// Per-node identity on the fleet's NATS, with real parts: a nats-server
// process in operator mode (JWTs made here) whose callout account sends
// every token-only connection to the auth callout responder (the
// genlbridge binary's `callout`, a process), which verifies the pods'
// service account tokens (minted by a test issuer that serves OIDC
// discovery and keys as the API server does; k8stest gets them from a real
// API server) and answers with a user of the fleet's account holding the
// node's permissions alone. Bridges in network namespaces are the nodes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/genlbridge/genlbridge/internal/callouttest"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/oidctest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/internal/syncbuf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// operatorHub is a nats-server in operator mode with an auth callout.
type operatorHub struct {
	url         string
	genlPub     string
	adminCreds  string // a user of the fleet's account with every permission
	calloutSeed string // the callout account's key (signs responses)
	genlSeed    string // the fleet's account key (signs users)
	serviceCred string // the responder's user, in the callout account
	cmd         *exec.Cmd
}

// writeFile writes b into dir/name, readable by its owner alone, and
// returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startOperatorHub(t *testing.T) *operatorHub {
	t.Helper()
	dir := t.TempDir()
	f := callouttest.New(t)
	h := &operatorHub{genlPub: f.GenlPub}
	h.calloutSeed = writeFile(t, dir, "auth-account.nk", f.AuthSeed)
	h.genlSeed = writeFile(t, dir, "genl-account.nk", f.GenlSeed)
	h.serviceCred = writeFile(t, dir, "responder.creds", f.ResponderCreds)
	h.adminCreds = writeFile(t, dir, "admin.creds", f.UserCreds(t, "admin", nil))
	port := proctest.FreePort(t)
	h.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	cf := writeFile(t, dir, "hub.conf", []byte(f.ServerConfig("hub", port, filepath.Join(dir, "js"))))
	h.cmd = configuredServer(t, cf)
	waitServer(t, h.url, nats.UserCredentials(h.adminCreds))
	// The stream, made by the fleet's operator (bridges may not).
	nc, err := nats.Connect(h.url, nats.UserCredentials(h.adminCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "GENL", Subjects: []string{"genl.>"}, AllowDirect: true,
		Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	return h
}

// startResponder runs `genlbridge callout` against h and the issuer.
func startResponder(t *testing.T, h *operatorHub, is *oidctest.Issuer) *syncbuf.Buffer {
	t.Helper()
	cmd := exec.Command(proctest.Binary(t), "callout", "--server", h.url, "--issuer-key", h.calloutSeed,
		"--account", h.genlPub, "--account-key", h.genlSeed,
		"--discovery-url", is.URL+"/.well-known/openid-configuration", "--jwks-url", "", "--token-review-url", is.ReviewURL, "--ca-file", is.CAFile,
		"--bearer-token-file", "", "--audience", "genlbridge-nats", "--service-accounts", "genlbridge/genlbridge")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GENLBRIDGE_NATS_CREDS=" + h.serviceCred}
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("responder log:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "auth callout responder serving") {
		if time.Now().After(deadline) {
			t.Fatalf("the responder did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func podToken(is *oidctest.Issuer, node string) string {
	return is.Token(oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "genlbridge-" + node, Node: node, Audience: "genlbridge-nats"})
}

// Three nodes, three paths (JetStream with the spool, JetStream, core
// NATS), each admitted by the callout with its own token: each delivers
// its own events, resumes after a restart, and the stream replays and
// audits complete. A node's identity may not publish another's subjects
// nor read another's inbox; a bridge whose node name is not its
// identity's has its publishes refused, counted as publish_denied, logged
// with the subject, and /healthz fails; tokens of another issuer, expired,
// for another audience or of a deleted pod (the issuer's TokenReview) are
// refused on both sides, with the reason in the responder's log.
func TestPerNodeIdentity(t *testing.T) {
	h := startOperatorHub(t)
	is := oidctest.New(t)
	other := oidctest.New(t)
	rlog := startResponder(t, h, is)

	type node struct {
		name, sink, spool string
		ns                *netnstest.NS
		snd               *inject.Sender
		b                 *proctest.Bridge
		env               []string
	}
	nodes := []*node{{name: "node-a", sink: "jetstream", spool: "on"}, {name: "node-b", sink: "jetstream", spool: "off"}, {name: "node-c", sink: "nats", spool: "off"}}
	for _, n := range nodes {
		n.ns = netnstest.Need(t)
		snd, err := inject.New(n.ns.FD(), "netdev", "mgmt")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { snd.Close() })
		n.snd = snd
		n.env = []string{"GENLBRIDGE_NATS_URL=" + h.url, "GENLBRIDGE_NATS_TOKEN_FILE=" + tokenFile(t, podToken(is, n.name)),
			"GENLBRIDGE_NODE_NAME=" + n.name, "GENLBRIDGE_SINK=" + n.sink, "GENLBRIDGE_SPOOL=" + n.spool, "GENLBRIDGE_STREAM_MANAGE=false",
			"GENLBRIDGE_NETNS=" + n.ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true",
			"GENLBRIDGE_SPOOL_DIR=" + t.TempDir()}
		n.b = proctest.Start(t, n.env...)
	}
	deliver := func(n *node, first uint64, count int) {
		t.Helper()
		n.b.WaitMetrics(30*time.Second, n.name+" joined and connected", func(m proctest.Metrics) bool {
			return m.Get("genlbridge_subscription_joined", "subscription=netdev/mgmt:exmpl") == 1 && m.Get("genlbridge_sink_connected") == 1
		})
		generate(t, n.snd, first, count, 2000)
	}
	for _, n := range nodes {
		deliver(n, 1, 200)
	}
	nc, err := nats.Connect(h.url, nats.UserCredentials(h.adminCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitStream := func(want uint64) jstest.Records {
		t.Helper()
		var recs jstest.Records
		deadline := time.Now().Add(60 * time.Second)
		for {
			recs = jstest.ReadStream(t, nc, "GENL")
			if uint64(len(recs.Events)) >= want || time.Now().After(deadline) {
				return recs
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	recs := waitStream(600)
	byHost := map[string]int{}
	for _, e := range recs.Events {
		byHost[e.Host]++
	}
	t.Logf("the hub's stream: %d events by host %v, %d loss records", len(recs.Events), byHost, len(recs.Losses))
	for _, n := range nodes {
		if byHost[n.name] != 200 {
			t.Errorf("%s (%s, spool %s): %d events in the hub, want 200", n.name, n.sink, n.spool, byHost[n.name])
		}
		if strings.Contains(n.b.Log(), "for permissions") {
			t.Errorf("%s: a permission refusal:\n%s", n.name, n.b.Log())
		}
	}

	// Resume: node-b (JetStream, no spool) restarts and reads its last
	// event back from the hub through its own consumer: the events after
	// the restart continue the same instance, with no seq_gap.
	b := nodes[1]
	b.b.Stop(30 * time.Second)
	b.b = proctest.Start(t, b.env...)
	deliver(b, 201, 100)
	recs = waitStream(700)
	inst := map[uint64]int{}
	for _, e := range recs.Events {
		if e.Host == "node-b" {
			inst[e.Instance]++
		}
	}
	if len(inst) != 1 || len(recs.Losses) != 0 {
		t.Errorf("node-b after a restart: events by instance %v, %d loss records; want one instance (resumed) and none", inst, len(recs.Losses))
	}
	if strings.Contains(b.b.Log(), "for permissions") || strings.Contains(b.b.Log(), "resume") && strings.Contains(b.b.Log(), "Permissions Violation") {
		t.Errorf("node-b's resume was refused:\n%s", b.b.Log())
	}

	// Without Kubernetes: credentials issued for node-d from the account's
	// key ('genlbridge creds issue'), the same permissions.
	credsFile := filepath.Join(t.TempDir(), "node-d.creds")
	issue := exec.Command(proctest.Binary(t), "creds", "issue", "--node", "node-d", "--account-key", h.genlSeed, "--out", credsFile)
	issue.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := issue.CombinedOutput(); err != nil {
		t.Fatalf("creds issue: %v\n%s", err, out)
	}
	dn := &node{name: "node-d", ns: netnstest.Need(t)}
	if dn.snd, err = inject.New(dn.ns.FD(), "netdev", "mgmt"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dn.snd.Close() })
	dn.b = proctest.Start(t, "GENLBRIDGE_NATS_URL="+h.url, "GENLBRIDGE_NATS_CREDS="+credsFile, "GENLBRIDGE_NODE_NAME=node-d",
		"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on", "GENLBRIDGE_STREAM_MANAGE=false", "GENLBRIDGE_NETNS="+dn.ns.Path,
		"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true")
	deliver(dn, 1, 50)
	recs = waitStream(750)
	d4 := 0
	for _, e := range recs.Events {
		if e.Host == "node-d" {
			d4++
		}
	}
	if d4 != 50 || strings.Contains(dn.b.Log(), "for permissions") {
		t.Errorf("node-d with issued credentials: %d of 50 events in the hub; log:\n%s", d4, dn.b.Log())
	}

	// The fleet's operator replays and audits with the admin identity.
	run := func(args ...string) (string, error) {
		cmd := exec.Command(proctest.Binary(t), args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GENLBRIDGE_NATS_URL=" + h.url, "GENLBRIDGE_NATS_CREDS=" + h.adminCreds}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("audit"); err != nil || !strings.Contains(out, "complete") {
		t.Errorf("audit: %v\n%s", err, out)
	}
	if out, err := run("replay", "--host", "node-a", "--json"); err != nil || strings.Count(out, `"type":"event"`) != 200 {
		t.Errorf("replay --host node-a: %v, %d events", err, strings.Count(out, `"type":"event"`))
	}

	// Node A's identity may not publish as node B, nor read B's inbox.
	var spyErrs syncbuf.Buffer
	spy, err := nats.Connect(h.url, nats.Token(podToken(is, "node-a")), nats.CustomInboxPrefix("_INBOX_node-a"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Fprintln(&spyErrs, err) }))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	forged := event.Event{Host: "node-b", BootID: "forged", Family: "netdev", Group: "mgmt", Seq: 1, SeqSource: event.SeqKernel, Instance: 1,
		RecvNS: time.Now().UnixNano(), Format: event.FormatExmpl, Msg: "forged by node-a"}
	if err := spy.Publish("genl.netdev.mgmt.node-b", event.AppendJSON(nil, &forged)); err != nil {
		t.Fatal(err)
	}
	if _, err := spy.SubscribeSync("_INBOX_node-b.>"); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	refusedBoth := func() bool {
		return strings.Contains(spyErrs.String(), `Publish to "genl.netdev.mgmt.node-b"`) && strings.Contains(spyErrs.String(), `Subscription to "_INBOX_node-b.>"`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !refusedBoth() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("node-a's identity publishing as node-b, reading node-b's inbox:\n%s", spyErrs.String())
	if !refusedBoth() {
		t.Errorf("node-a's identity acting as node-b was not refused both")
	}
	time.Sleep(200 * time.Millisecond)
	for _, e := range jstest.ReadStream(t, nc, "GENL").Events {
		if e.BootID == "forged" {
			t.Errorf("the forged event was stored: %+v", e)
		}
	}

	// A bridge whose node name is not its identity's: refused, counted,
	// logged with the subject; /healthz fails once it persists.
	d := nodes[2]
	mis := proctest.Start(t, "GENLBRIDGE_NATS_URL="+h.url, "GENLBRIDGE_NATS_TOKEN_FILE="+tokenFile(t, podToken(is, "node-c")),
		"GENLBRIDGE_NODE_NAME=node-x", "GENLBRIDGE_SINK=nats", "GENLBRIDGE_SPOOL=off", "GENLBRIDGE_NETNS="+d.ns.Path,
		"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true", "GENLBRIDGE_DENIED_UNHEALTHY_AFTER=2s")
	mis.WaitMetrics(30*time.Second, "joined and connected", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_subscription_joined", "subscription=netdev/mgmt:exmpl") == 1 && m.Get("genlbridge_sink_connected") == 1
	})
	generate(t, d.snd, 1000, 100, 100) // a second's worth, so that the refusals last past 2s with the next ones
	m := mis.WaitMetrics(30*time.Second, "the refused publishes counted", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_events_dropped_total", "reason=publish_denied") >= 100
	})
	t.Logf("node-x (node-c's identity): permission denied %v, publish_denied %v", m.Get("genlbridge_permission_denied_total", "op=publish"),
		m.Get("genlbridge_events_dropped_total", "reason=publish_denied"))
	named := map[any]bool{}
	for _, rec := range mis.LogRecords("the nats server refused a publish for permissions: this identity may not use the subject (logged once a minute per subject, counted in genlbridge_permission_denied_total)") {
		named[rec["subject"]] = true
	}
	if !named["genl.netdev.mgmt.node-x"] || !named["genl.netdev.mgmt.node-x.loss"] || len(named) != 2 {
		t.Errorf("the errors name %v, want the event and loss subjects of node-x once each; log:\n%s", named, mis.Log())
	}
	generate(t, d.snd, 1100, 300, 100) // refusals go on for 3 s
	code, body := httpGet(t, "http://"+mis.Addr()+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "permissions") {
		t.Errorf("/healthz %d %q: want 503 saying why", code, body)
	}
	mis.Stop(30 * time.Second)

	// Tokens the responder refuses: another issuer's, expired, another
	// audience, a deleted pod's; a bridge with one stops, saying so.
	is.DeletePod("genlbridge", "genlbridge-gone")
	for _, c := range []struct{ name, token, why string }{
		{"a deleted pod's", is.Token(oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "genlbridge-gone", Node: "node-a", Audience: "genlbridge-nats"}),
			`the API server does not accept it: pod \"genlbridge-gone\" not found`},
		{"another issuer's", podToken(other, "node-a"), "bad signature"},
		{"expired", is.Token(oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "p", Node: "node-a", Audience: "genlbridge-nats",
			Expires: time.Now().Add(-time.Hour)}), "expired"},
		{"another audience", is.Token(oidctest.Claims{Namespace: "genlbridge", ServiceAccount: "genlbridge", Pod: "p", Node: "node-a", Audience: "kubernetes"}), "audience"},
	} {
		_, err := nats.Connect(h.url, nats.Token(c.token), nats.MaxReconnects(0))
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s token: connect %v, want an authorization violation", c.name, err)
		}
		// The responder logs before it answers, but its log reaches
		// this process through a pipe: wait for the line.
		natstest.WaitFor(t, 30*time.Second, "the responder's log to say why the "+c.name+" token was refused ("+c.why+")", func() bool {
			return strings.Contains(rlog.String(), c.why)
		})
	}
	if n := is.Reviews.Load(); n == 0 {
		t.Errorf("the responder admitted the nodes without a TokenReview")
	} else {
		t.Logf("the responder asked the issuer's TokenReview %d times", n)
	}
	bad := proctest.Launch(t, "GENLBRIDGE_NATS_URL="+h.url,
		"GENLBRIDGE_NATS_TOKEN_FILE="+tokenFile(t, podToken(other, "node-a")), "GENLBRIDGE_NODE_NAME=node-a", "GENLBRIDGE_SINK=nats",
		"GENLBRIDGE_SPOOL=off", "GENLBRIDGE_NETNS="+nodes[0].ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl")
	if code := bad.Wait(60 * time.Second); code == 0 || !strings.Contains(strings.ToLower(bad.Log()), "authorization violation") {
		t.Errorf("a bridge with another issuer's token: exit %d; log:\n%s", code, bad.Log())
	}
	var refusals []string
	for _, l := range strings.Split(rlog.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "auth callout: refused" {
			refusals = append(refusals, fmt.Sprint(rec["reason"]))
		}
	}
	t.Logf("the responder refused %d tokens: %s", len(refusals), strings.Join(refusals, "; "))
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
