package examples

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/sink"
)

// The README's consumers in Go, Python and JavaScript (each file is in the
// README as it is here) read records from a real stream, among them
// 64-bit values beyond 2^53-1 in every place they can be, and print every
// field exactly as the records hold them.
func TestConsumers(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"consumers/go/main.go", "consumers/python/consumer.py", "consumers/js/consumer.mjs"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, b) {
			t.Errorf("README.md does not show %s as it is", f)
		}
	}

	ctx := context.Background()
	srv, nc := jstest.Start(t)
	url := srv.URL()
	cfg := sink.JetStreamConfig{Manage: true, CloudEvents: true, Logger: jstest.Logger(),
		Stream: sink.StreamConfig{Name: "C", Subjects: []string{"genl.>"}, DuplicateWindow: time.Minute}}
	js, err := sink.NewJetStream(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const recv = 1795000000123456789 // 2026-11-18T11:06:40.123456789Z
	ynl := event.Event{Host: "node-1", BootID: "b", Family: "netdev", Group: "mgmt", Cmd: 1, Version: 1, Seq: 1<<53 + 1, SeqSource: event.SeqKernel,
		Instance: 1795000000123456, RecvNS: recv, Format: event.FormatYNL, Op: "dev-add-ntf",
		Fields: []byte(`{"name":"vé","ifindex":3,"rx-bytes":"18446744073709551615","max":9007199254740991,"levels":{"10":{"b":"x"},"2":{"a":-1}}}`)}
	ex := event.Event{Host: "node-1", BootID: "b", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Cmd: 1, Version: 1, Seq: 42, SeqSource: event.SeqKernel,
		Instance: 1795000000123457, RecvNS: recv + 1, KernelNS: recv, Format: event.FormatExmpl, Msg: "hi"}
	loss := event.Loss{Host: "node-1", BootID: "b", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonOverrun, Count: 1 << 60,
		FirstSeq: 1<<62 + 1, LastSeq: 1<<62 + 1<<60, Instance: 1795000000123457, TimeNS: recv + 2}
	if err := js.Deliver(ctx, &sink.Batch{Events: []event.Event{ynl, ex}, Losses: []event.Loss{loss}}); err != nil {
		t.Fatal(err)
	}
	// And a batched message: two events in one message, one per line.
	cfg.Batched = true
	jsb, err := sink.NewJetStream(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex2, ex3 := ex, ex
	ex2.Seq, ex3.Seq = 43, 44
	if err := jsb.Deliver(ctx, &sink.Batch{Events: []event.Event{ex2, ex3}}); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"loss node-1 CONTROL_EXMPL/EXMPL_GRP reason=overrun count=1152921504606846976 seq=4611686018427387905-5764607523034234880 time=2026-11-18T11:06:40.123456791Z",
		`event node-1 netdev/mgmt seq=9007199254740993 instance=1795000000123456 time=2026-11-18T11:06:40.123456789Z attrs={"ifindex":3,"levels":{"10":{"b":"x"},"2":{"a":-1}},"max":9007199254740991,"name":"vé","rx-bytes":"18446744073709551615"}`,
		"event node-1 CONTROL_EXMPL/EXMPL_GRP seq=42 instance=1795000000123457 time=2026-11-18T11:06:40.123456790Z attrs={}",
		"event node-1 CONTROL_EXMPL/EXMPL_GRP seq=43 instance=1795000000123457 time=2026-11-18T11:06:40.123456790Z attrs={}",
		"event node-1 CONTROL_EXMPL/EXMPL_GRP seq=44 instance=1795000000123457 time=2026-11-18T11:06:40.123456790Z attrs={}",
	}, "\n") + "\n"

	run := func(name string, stdin []byte, dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, errb.String())
		}
		return out.String()
	}
	check := func(name, got string) {
		t.Helper()
		if got != want {
			t.Errorf("%s printed\n%s\nwant\n%s", name, got, want)
		} else {
			t.Logf("%s: %d records, every field exact", name, strings.Count(got, "\n"))
		}
	}
	check("Go", run("go run ./consumers/go", nil, ".", "go", "run", "./consumers/go", "-server", url, "-stream", "C"))

	lines := run("genlbridge replay --json", nil, "..", "go", "run", "./cmd/genlbridge", "replay", "--server", url, "--stream", "C", "--json")
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is not installed (make installs it)")
	}
	check("Python", run("python3 consumer.py", []byte(lines), ".", "python3", "consumers/python/consumer.py"))

	mods, _ := filepath.Abs("../build/node/node_modules")
	if _, err := os.Stat(filepath.Join(mods, "@nats-io", "transport-node")); err != nil {
		t.Fatalf("%s: the JavaScript client is not installed (make deps installs it): %v", mods, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed (make deps installs it)")
	}
	// Node resolves the packages from the script's directory up.
	dir := t.TempDir()
	src, err := os.ReadFile("consumers/js/consumer.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "consumer.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mods, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	check("JavaScript", run("node consumer.mjs", nil, dir, "node", "consumer.mjs", url, "C"))
}
