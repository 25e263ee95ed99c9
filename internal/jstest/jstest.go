// Package jstest holds test helpers around real JetStream servers: an
// embedded server with a file store in a temporary directory, a nats-server
// process (built from the module dependency) that a test can kill and
// restart, and a reader of everything a stream holds.
package jstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/proctest"

	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Logger logs to stderr with -v, nowhere otherwise.
func Logger() *slog.Logger { return natstest.Logger() }

// Start runs an embedded server with JetStream and a file store in a temp
// dir, and connects to it the way the bridge does.
func Start(t testing.TB) (*broker.Server, *nats.Conn) {
	t.Helper()
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, Connect(t, srv.URL())
}

// Connect dials url with natsconn.Connect, closed at the end of the test.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: url, Name: t.Name(), Logger: Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Records is what a stream holds, in stream order.
type Records struct {
	Events []event.Event
	Losses []event.Loss
	// Msgs is the number of messages; IDs counts each Nats-Msg-Id.
	Msgs int
	IDs  map[string]int
}

// StreamMsgs is the number of messages the stream holds now (no consumer
// made: for polling).
func StreamMsgs(t testing.TB, nc *nats.Conn, stream string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// ReadStream reads every message of the stream with an ordered consumer.
func ReadStream(t testing.TB, nc *nats.Conn, stream string) Records {
	t.Helper()
	r := Records{IDs: map[string]int{}}
	for _, m := range StreamMessages(t, nc, stream) {
		r.Msgs++
		r.IDs[m.Header.Get("Nats-Msg-Id")]++
		for _, line := range strings.Split(strings.TrimSpace(string(m.Data)), "\n") {
			var v event.Envelope
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("bad record %q: %v", line, err)
			}
			if v.Type == "loss" {
				r.Losses = append(r.Losses, v.Loss())
			} else {
				r.Events = append(r.Events, v.Event)
			}
		}
	}
	return r
}

// StreamMessages returns every message of the stream, as stored (subject,
// headers, payload), read with an ordered consumer.
func StreamMessages(t testing.TB, nc *nats.Conn, stream string) []*nats.Msg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	total := st.CachedInfo().State.Msgs
	if total == 0 {
		return nil
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var out []*nats.Msg
	for uint64(len(out)) < total {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), total, err)
		}
		out = append(out, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	}
	return out
}

// ServerBinary builds nats-server from the module dependency, once per
// test binary, and returns its path.
func ServerBinary(t testing.TB) string {
	t.Helper()
	return proctest.Build(t, "github.com/nats-io/nats-server/v2")
}

// Process is a nats-server process with JetStream, on a fixed port and
// store directory, so that it can be killed and started again as the same
// server.
type Process struct {
	t        testing.TB
	bin      string
	Port     int
	StoreDir string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// StartProcess builds (once) and starts a nats-server on a free port. It is
// killed at the end of the test.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := &Process{t: t, bin: ServerBinary(t), Port: port, StoreDir: t.TempDir()}
	p.args = []string{"-a", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-js", "-sd", p.StoreDir, "-n", "jstest"}
	p.Start()
	t.Cleanup(func() { p.Kill() })
	return p
}

// URL is the client URL.
func (p *Process) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.Port) }

// Start starts the server and waits until it accepts connections.
func (p *Process) Start() {
	p.t.Helper()
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd := exec.Command(p.bin, p.args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			p.t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		p.cmd, p.exited = cmd, exited
		for time.Now().Before(deadline) {
			select {
			case <-exited:
			default:
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), 100*time.Millisecond); err == nil {
					c.Close()
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			break
		}
		if time.Now().After(deadline) {
			p.Kill()
			p.t.Fatalf("nats-server on port %d did not start", p.Port)
		}
		// Exited early (port still held by a dying predecessor): again.
		time.Sleep(100 * time.Millisecond)
	}
}

// Signal sends sig to the process, e.g. SIGSTOP to freeze it (it keeps its
// connections but answers nothing) and SIGCONT to let it go on.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		p.t.Fatal("nats-server is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}
