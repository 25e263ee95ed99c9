// Package proctest runs the genlbridge binary as a process in tests, the way
// operators run it, and watches it through the contracts operators use: its
// /metrics and /readyz endpoints, its JSON log, its exit status. The binary
// is built once per test binary (go build ./cmd/genlbridge).
//
// A Bridge is owned by the test that started it: it is killed at the end of
// the test if still running. Its methods may be called from any goroutine.
package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/syncbuf"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{} // import path -> binary
)

// Build builds the command at import path pkg once per test binary (with
// CGO_ENABLED=0) and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "proctest-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(strings.TrimSuffix(pkg, "/v2")))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v: %s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// Binary builds the genlbridge binary once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	return Build(t, "github.com/genlbridge/genlbridge/cmd/genlbridge")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int { return natstest.FreePort(t) }

// Bridge is a running `genlbridge run` process.
type Bridge struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  syncbuf.Buffer
	addr string // metrics and health, host:port

	done    chan struct{}
	waitErr error
}

// Start runs `genlbridge run` (built by Binary) with env (KEY=value
// settings) on top of a clean environment (PATH only), JSON logs and a
// metrics address of its own, and waits until it serves /healthz. It fails
// the test if the process exits first.
func Start(t testing.TB, env ...string) *Bridge {
	t.Helper()
	return StartBinary(t, Binary(t), env...)
}

// StartBinary is Start with the genlbridge binary at bin (the VM's guest
// has no go command).
//
// A test writes only in its own temporary directories: the bridge gets a
// GENLBRIDGE_DATA_DIR and a GENLBRIDGE_SPOOL_DIR of the test's when env
// sets none (their defaults are the host's /var/lib/genlbridge, a
// DaemonSet's hostPath), and one env sets outside the temporary directory
// fails the test (inside the test VM any path is the VM's own).
func StartBinary(t testing.TB, bin string, env ...string) *Bridge {
	t.Helper()
	return StartAttr(t, bin, nil, env...)
}

// StartAttr is StartBinary with the process's attributes (its user, its
// capabilities: attr may be nil).
func StartAttr(t testing.TB, bin string, attr *syscall.SysProcAttr, env ...string) *Bridge {
	t.Helper()
	b := launch(t, bin, attr, env)
	b.WaitFor(30*time.Second, "/healthz to answer", func() bool {
		resp, err := client.Get("http://" + b.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b
}

// Launch is Start without waiting for /healthz: for a bridge expected to
// stop at once (see Wait).
func Launch(t testing.TB, env ...string) *Bridge {
	t.Helper()
	return launch(t, Binary(t), nil, env)
}

func launch(t testing.TB, bin string, attr *syscall.SysProcAttr, env []string) *Bridge {
	t.Helper()
	env = privateDirs(t, env)
	b := &Bridge{t: t, addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), done: make(chan struct{})}
	b.cmd = exec.Command(bin, "run")
	b.cmd.SysProcAttr = attr
	b.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GENLBRIDGE_LOG_FORMAT=json", "GENLBRIDGE_HTTP_ADDR=" + b.addr}, env...)
	var w io.Writer = &b.log
	if testing.Verbose() {
		w = io.MultiWriter(&b.log, prefixed{os.Stderr, "bridge | "})
	}
	b.cmd.Stdout, b.cmd.Stderr = w, w
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		if b.Running() {
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// privateDirs gives the bridge the test's own data and spool directories
// (see StartBinary).
func privateDirs(t testing.TB, env []string) []string {
	t.Helper()
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	inVM := os.Getenv("VMTEST_GUEST") == "1"
	for _, name := range []string{"GENLBRIDGE_DATA_DIR", "GENLBRIDGE_SPOOL_DIR"} {
		set := false
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				set = true
				if abs, err := filepath.Abs(v); err != nil || !strings.HasPrefix(abs+string(filepath.Separator), tmp) && !inVM {
					t.Fatalf("%s=%s: a test bridge writes only in the test's temporary directories (under %s)", name, v, tmp)
				}
			}
		}
		if !set {
			env = append(env, name+"="+t.TempDir())
		}
	}
	return env
}

// Stop sends SIGTERM and fails the test unless the process exits with
// status 0 within timeout (it is killed then). It returns how long it took.
func (b *Bridge) Stop(timeout time.Duration) time.Duration {
	b.t.Helper()
	if !b.Running() {
		b.t.Errorf("genlbridge had exited before SIGTERM: %v", b.waitErr)
		return 0
	}
	start := time.Now()
	b.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(timeout):
		_ = b.cmd.Process.Kill()
		<-b.done
		b.t.Errorf("genlbridge did not exit within %s of SIGTERM; killed", timeout)
		return time.Since(start)
	}
	if b.waitErr != nil {
		b.t.Errorf("genlbridge exited with %v after SIGTERM, want status 0", b.waitErr)
	}
	return time.Since(start)
}

// Running reports whether the process has not exited.
func (b *Bridge) Running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (b *Bridge) Signal(sig syscall.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil && b.Running() {
		b.t.Fatal(err)
	}
}

// Pid is the process id.
func (b *Bridge) Pid() int { return b.cmd.Process.Pid }

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal killed it).
func (b *Bridge) Wait(timeout time.Duration) int {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(timeout):
		// SIGQUIT: the Go runtime prints every goroutine's stack to the
		// log, which says where it hangs.
		_ = b.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
		}
		b.t.Fatalf("genlbridge did not exit within %s; its log, with its goroutines at SIGQUIT:\n%s", timeout, b.Log())
	}
	if b.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(b.waitErr, &ee) {
		return ee.ExitCode()
	}
	b.t.Fatal(b.waitErr)
	return -1
}

// Log returns everything the process printed so far.
func (b *Bridge) Log() string { return b.log.String() }

// LogRecord returns the last JSON log record whose msg is msg (nil: none).
func (b *Bridge) LogRecord(msg string) map[string]any {
	recs := b.LogRecords(msg)
	if len(recs) == 0 {
		return nil
	}
	return recs[len(recs)-1]
}

// LogTime is the time field of a JSON log record.
func LogTime(rec map[string]any) (time.Time, bool) {
	s, _ := rec["time"].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	return ts, err == nil
}

// LogRecords returns the JSON log records whose msg is msg, in order.
func (b *Bridge) LogRecords(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.Log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// client bounds every request: the daemon takes its address before it
// serves it, and a request it accepts but does not answer must not hang a
// wait past its timeout.
var client = &http.Client{Timeout: 5 * time.Second}

// Addr is the metrics and health address (host:port).
func (b *Bridge) Addr() string { return b.addr }

// Ready reports whether /readyz answers 200.
func (b *Bridge) Ready() bool {
	resp, err := client.Get("http://" + b.addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Metrics scrapes /metrics.
func (b *Bridge) Metrics() (Metrics, error) {
	resp, err := client.Get("http://" + b.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// WaitMetrics scrapes /metrics until cond holds for a scrape, and returns
// that scrape. It waits on progress, not on a clock: it fails the test
// only once the bridge's counters (events read, delivered, lost, spooled,
// forwarded) have not moved for stall, so that a loaded machine makes it
// slower, never wrong; or when the process exits first.
func (b *Bridge) WaitMetrics(stall time.Duration, what string, cond func(Metrics) bool) Metrics {
	b.t.Helper()
	var last Metrics
	progress, moved := -1.0, time.Now()
	for {
		m, err := b.Metrics()
		if err == nil {
			last = m
			if cond(m) {
				return m
			}
			if p := m.Progress(); p != progress {
				progress, moved = p, time.Now()
			}
		}
		if !b.Running() {
			b.t.Fatalf("genlbridge exited (%v) while waiting for %s; its log:\n%s", b.waitErr, what, b.Log())
		}
		if time.Since(moved) > stall {
			b.t.Fatalf("no progress for %s while waiting for %s (last scrape: %v); genlbridge's log:\n%s", stall, what, last.Progress(), b.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Progress sums the counters that move while a bridge works: events read,
// delivered and lost, loss records, batches, what its spool holds and
// forwarded. A wait that sees it move is not stuck.
func (m Metrics) Progress() float64 {
	var p float64
	for _, name := range []string{"genlbridge_events_received_total", "genlbridge_events_published_total",
		"genlbridge_events_dropped_total", "genlbridge_loss_records_published_total", "genlbridge_batches_total",
		"genlbridge_spool_bytes", "genlbridge_spool_forwarded_total", "genlbridge_sink_messages_total",
		"genlbridge_socket_drops_total", "genlbridge_spool_messages"} {
		p += m.Sum(name)
	}
	return p
}

// WaitFor polls cond every 10ms until it holds; it fails the test after
// timeout, or when the process exits first.
func (b *Bridge) WaitFor(timeout time.Duration, what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !b.Running() {
			b.t.Fatalf("genlbridge exited (%v) while waiting for %s; its log:\n%s", b.waitErr, what, b.Log())
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %s waiting for %s; genlbridge's log:\n%s", timeout, what, b.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Metrics is one scrape: samples by name with their labels as written,
// e.g. m[`genlbridge_events_dropped_total{reason="overrun"}`].
type Metrics map[string]float64

// Get returns the sample name{labels}; labels are "k=v" pairs in the order
// the exposition writes them (alphabetical).
func (m Metrics) Get(name string, labels ...string) float64 {
	if len(labels) == 0 {
		return m[name]
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, v)
	}
	b.WriteByte('}')
	return m[b.String()]
}

// Sum adds every sample of the metric name, whatever its labels.
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// ParseMetrics reads the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	for _, line := range bytes.SplitAfter(b, []byte{'\n'}) {
		if len(line) > 0 {
			fmt.Fprintf(p.w, "%s%s", p.prefix, line)
		}
	}
	return len(b), nil
}
