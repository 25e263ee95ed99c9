//go:build !vmtest

package vmtest

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name       string
	mode       uint32
	rmaj, rmin uint32
	data       string
	ino, nlink uint32
}

// readCPIO is an independent reader of "newc" archives, for the test.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	align := func(n int) int { return (n + 3) &^ 3 }
	off := 0
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		f := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		namesize, size := int(f(11)), int(f(6))
		name := string(b[off+110 : off+110+namesize-1])
		if b[off+110+namesize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off = align(off + 110 + namesize)
		data := string(b[off : off+size])
		off = align(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name: name, mode: f(1), rmaj: f(9), rmin: f(10), data: data, ino: f(0), nlink: f(4)})
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	c.Bytes("/init", 0o755, []byte("#!/bin/sh\n"))
	c.Symlink("bin/sh", "busybox")
	c.Bytes("bin/busybox", 0o755, []byte("12345"))
	c.CharDev("dev/console", 0o600, 5, 1)
	c.Dir("tmp", 0o1777)
	c.File("a/b/c", 0o644, 3, strings.NewReader("xyz"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	var desc []string
	inos := map[uint32]bool{}
	for _, e := range got {
		desc = append(desc, fmt.Sprintf("%s %o %d,%d %q", e.name, e.mode, e.rmaj, e.rmin, e.data))
		if inos[e.ino] {
			t.Errorf("%s: inode %d used twice", e.name, e.ino)
		}
		inos[e.ino] = true
	}
	want := []string{
		`init 100755 0,0 "#!/bin/sh\n"`,
		`bin 40755 0,0 ""`,
		`bin/sh 120777 0,0 "busybox"`,
		`bin/busybox 100755 0,0 "12345"`,
		`dev 40755 0,0 ""`,
		`dev/console 20600 5,1 ""`,
		`tmp 41777 0,0 ""`,
		`a 40755 0,0 ""`,
		`a/b 40755 0,0 ""`,
		`a/b/c 100644 0,0 "xyz"`,
	}
	if g, w := strings.Join(desc, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("archive:\n%s\nwant:\n%s", g, w)
	}
}

func TestCPIOShortReader(t *testing.T) {
	c := NewCPIO(io.Discard)
	c.File("f", 0o644, 10, strings.NewReader("short"))
	if err := c.Close(); err == nil {
		t.Fatal("Close succeeded after a short file")
	}
}

const goodConsole = "[    0.000000] Linux version 6.1.0\r\n" +
	"VMTEST-INIT uptime=3.91 kernel=6.1.0-56-amd64 cpus=2\r\n" +
	"=== RUN   TestPeriodic\r\n" +
	"--- PASS: TestPeriodic (1.20s)\r\n" +
	"=== RUN   TestBurst\r\n" +
	"VMTEST-METRIC burst count=100000 received=99000 drops=1000\r\n" +
	"    --- PASS: TestBurst/sub (0.00s)\r\n" +
	"--- PASS: TestBurst (3.00s)\r\n" +
	"--- SKIP: TestBridge (0.00s)\r\n" +
	"PASS\r\n" +
	"VMTEST-DONE rc=0 uptime=12.5\r\n" +
	"[   12.600000] reboot: Power down\r\n"

func TestParseConsole(t *testing.T) {
	g, err := ParseConsole(strings.NewReader(goodConsole))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Err(); err != nil {
		t.Errorf("Err() = %v for a good run", err)
	}
	if g.InitUptime != 3.91 || g.DoneUptime != 12.5 || g.RC != 0 {
		t.Errorf("uptimes %v %v rc %d", g.InitUptime, g.DoneUptime, g.RC)
	}
	if got := strings.Join(g.Passed, ","); got != "TestPeriodic,TestBurst/sub,TestBurst" {
		t.Errorf("passed %s", got)
	}
	if len(g.Skipped) != 1 || len(g.Metrics) != 1 || g.Metrics[0] != "burst count=100000 received=99000 drops=1000" {
		t.Errorf("skipped %v metrics %q", g.Skipped, g.Metrics)
	}

	for name, c := range map[string]struct{ console, want string }{
		"no init":  {"[ 0.1] Linux\n", "never reached /init"},
		"hung":     {"VMTEST-INIT uptime=1\n=== RUN   TestA\n", "did not finish"},
		"failed":   {strings.Replace(goodConsole, "--- PASS: TestPeriodic", "--- FAIL: TestPeriodic", 1), "TestPeriodic"},
		"rc":       {strings.Replace(goodConsole, "rc=0", "rc=2", 1), "exited with 2"},
		"panic":    {strings.Replace(goodConsole, "PASS\r\n", "[ 5.0] Kernel panic - not syncing: x\r\n", 1), "crashed"},
		"no tests": {"VMTEST-INIT uptime=1\nPASS\nVMTEST-DONE rc=0\n", "no guest test passed"},
		"no PASS":  {strings.Replace(goodConsole, "PASS\r\n", "", 1), "did not print PASS"},
	} {
		g, err := ParseConsole(strings.NewReader(c.console))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Err() = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestInitScriptMentionsPaths(t *testing.T) {
	for _, s := range []string{GuestTestPath, GuestKoPath, InitMarker, DoneMarker, "poweroff -f", "VMTEST_GUEST=1"} {
		if !strings.Contains(InitScript, s) {
			t.Errorf("InitScript lacks %q", s)
		}
	}
}

// TestScriptsParse: /init and the demo script are valid for busybox sh.
func TestScriptsParse(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skipf("no busybox: %v", err)
	}
	for name, script := range map[string]string{"init": InitScript, "demo": DemoScript} {
		cmd := exec.Command(bb, "sh", "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s script: busybox sh -n: %v\n%s", name, err, out)
		}
	}
	for _, s := range []string{GuestDemoPath, "vmtest_mode", DoneMarker} {
		if !strings.Contains(InitScript, s) {
			t.Errorf("InitScript lacks %q", s)
		}
	}
}
