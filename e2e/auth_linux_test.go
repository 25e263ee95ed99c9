//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/syncbuf"

	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// configuredServer runs nats-server with the configuration file conf; it
// is killed at the end of the test.
func configuredServer(t *testing.T, conf string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(jstest.ServerBinary(t), "-c", conf)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// A credential revoked while the bridge runs: nats.go closes the connection
// for good after the same authorization error twice. The daemon must not
// stay up delivering nothing: it exits non-zero, naming the cause.
func TestRevokedCredentialsEndTheDaemon(t *testing.T) {
	ns := netnstest.Need(t)
	port := proctest.FreePort(t)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	writeConf := func(token string) {
		t.Helper()
		c := fmt.Sprintf("listen: 127.0.0.1:%d\nauthorization { token: %q }\n", port, token)
		if err := os.WriteFile(conf, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("first-token")
	srv := configuredServer(t, conf)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	waitServer(t, url, nats.Token("first-token"))

	b := proctest.Start(t, "GENLBRIDGE_NATS_URL="+url, "GENLBRIDGE_NATS_TOKEN=first-token", "GENLBRIDGE_SINK=nats",
		"GENLBRIDGE_NETNS="+ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt")
	b.WaitMetrics(30*time.Second, "connected", func(m proctest.Metrics) bool { return m.Get("genlbridge_sink_connected") == 1 })

	// Revoke: the server reloads with another token and drops the client.
	writeConf("second-token")
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := b.Wait(60 * time.Second)
	if code == 0 {
		t.Fatalf("exit status 0 after the credentials were revoked; log:\n%s", b.Log())
	}
	recs := b.LogRecords("stopping: a supervisor should restart genlbridge")
	if len(recs) != 1 || !strings.Contains(strings.ToLower(fmt.Sprint(recs[0]["err"])), "authorization") {
		t.Fatalf("want one log line naming the authorization error; log:\n%s", b.Log())
	}
	t.Logf("exited with status %d %v after the revocation: %v", code, time.Since(start).Round(time.Millisecond), recs[0]["err"])
}

func waitServer(t *testing.T, url string, opts ...nats.Option) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server at %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The embedded server admits only the nkey the bridge generated in its data
// directory: an unauthenticated client (any local user or container on the
// host network) cannot connect to forge or read events, while tail finds
// the credentials and works.
func TestEmbeddedServerRequiresCredentials(t *testing.T) {
	ns := netnstest.Need(t)
	dataDir := t.TempDir()
	port := proctest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	b := proctest.Start(t, "GENLBRIDGE_DATA_DIR="+dataDir, fmt.Sprintf("GENLBRIDGE_EMBEDDED_LISTEN=127.0.0.1:%d", port),
		"GENLBRIDGE_NETNS="+ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt")
	b.WaitFor(30*time.Second, "ready", b.Ready)

	seed := filepath.Join(dataDir, "nats-user.nk")
	st, err := os.Stat(seed)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", seed, st.Mode().Perm())
	}
	if _, err := nats.Connect(url); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("an unauthenticated client: err = %v, want an authorization violation", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := nats.NkeyOptionFromSeed(otherFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(url, o); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("a client with another nkey: err = %v, want an authorization violation", err)
	}

	// tail, with the same data directory, finds the credentials.
	tail := exec.Command(proctest.Binary(t), "tail", "--server", url, "--count", "2", "--timeout", "30s")
	tail.Env = []string{"PATH=" + os.Getenv("PATH"), "GENLBRIDGE_DATA_DIR=" + dataDir}
	var out, errOut syncbuf.Buffer
	tail.Stdout, tail.Stderr = &out, &errOut
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errOut.String(), "tailing") {
		if time.Now().After(deadline) {
			t.Fatalf("tail never subscribed: %s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ns.IP("link", "add", "va", "type", "veth", "peer", "name", "vb"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tail: %v: %s", err, errOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("tail did not finish")
	}
	if n := strings.Count(out.String(), "netdev/mgmt"); n != 2 {
		t.Fatalf("tail printed %d netdev events, want 2:\n%s", n, out.String())
	}
	t.Logf("tail with the generated credentials:\n%s", out.String())

	// Without them, tail says where they should be.
	tail = exec.Command(proctest.Binary(t), "tail", "--server", url, "--count", "1", "--timeout", "5s")
	tail.Env = []string{"PATH=" + os.Getenv("PATH"), "GENLBRIDGE_DATA_DIR=" + t.TempDir()}
	msg, err := tail.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "nats-user.nk") {
		t.Fatalf("tail without credentials: %v: %s", err, msg)
	}
}
