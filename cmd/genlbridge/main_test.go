package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/config"
)

func TestRunHelpListsEveryVariable(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainErr([]string{"run", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	help := errb.String()
	for _, v := range config.Vars() {
		if !strings.Contains(help, v.Env) || !strings.Contains(help, "--"+v.Flag) {
			t.Errorf("run --help does not list %s (--%s)", v.Env, v.Flag)
		}
		if v.Default != "" && !strings.Contains(help, v.Default) {
			t.Errorf("run --help does not show the default %q of %s", v.Default, v.Env)
		}
	}
}

func TestBadConfigExitsNonZeroNamingTheVariable(t *testing.T) {
	t.Setenv("GENLBRIDGE_QUEUE_POLICY", "sometimes")
	var out, errb bytes.Buffer
	code := mainErr([]string{"run"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "GENLBRIDGE_QUEUE_POLICY") || !strings.Contains(errb.String(), "block, drop-newest, drop-oldest") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestUnknownCommandAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainErr([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("exit %d, %q", code, errb.String())
	}
	if code := mainErr([]string{"send", "burst", "many"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "want a whole number") {
		t.Fatalf("exit %d, %q", code, errb.String())
	}
}

func TestFormatRecord(t *testing.T) {
	line := `{"v":2,"type":"event","host":"h","boot_id":"b","family":"CONTROL_EXMPL","group":"EXMPL_GRP","cmd":1,"version":1,"seq":"9007199254740993","seq_src":"kernel","instance":1795000000123456,"jiffies":99,` +
		`"kernel_time":"2026-11-18T08:26:40.123456789Z","recv_time":"2026-11-18T08:26:40.123458789Z","format":"exmpl","msg":"hi"}`
	got := formatRecord([]byte(line))
	for _, want := range []string{"08:26:40.123458 h CONTROL_EXMPL/EXMPL_GRP", "seq=9007199254740993", "jiffies=99", "kernel_lag=2µs", `"hi"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	// Format 1's records (no "v", times in ns) still read.
	v1 := `{"type":"event","host":"h","boot_id":"b","family":"CONTROL_EXMPL","group":"EXMPL_GRP","cmd":1,"version":1,"seq":5,"seq_src":"kernel","instance":1,"jiffies":99,"kernel_ns":1000,"recv_ns":3000,"format":"exmpl","msg":"hi"}`
	got = formatRecord([]byte(v1))
	for _, want := range []string{"h CONTROL_EXMPL/EXMPL_GRP", "seq=5", "jiffies=99", "kernel_lag=2µs", `"hi"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	// A newer format is not guessed at.
	if got := formatRecord([]byte(`{"v":3,"type":"event"}`)); !strings.Contains(got, "unreadable") || !strings.Contains(got, "v3") {
		t.Errorf("v3: %q", got)
	}
	ynl := `{"type":"event","host":"h","family":"ethtool","group":"monitor","cmd":39,"seq":7,"seq_src":"bridge","format":"ynl","op":"features-ntf",` +
		`"attrs":{"header":{"dev-index":3,"dev-name":"va"},"active":{"nomask":true,"bits":{"bit":[{"index":0,"name":"sg"},{"index":5,"name":"rx gro"}]}},"flags":["a","b"],"none":[]},` +
		`"raw":[{"path":"","type":99,"data":"AQ=="}]}`
	got = formatRecord([]byte(ynl))
	want := `h ethtool/monitor features-ntf seq=7(bridge) header.dev-index=3 header.dev-name=va active.nomask=true ` +
		`active.bits.bit.0.index=0 active.bits.bit.0.name=sg active.bits.bit.1.index=5 active.bits.bit.1.name="rx gro" flags=a,b none= (1 attributes raw)`
	if !strings.HasSuffix(got, want) {
		t.Errorf("ynl line\n %q\nwant suffix\n %q", got, want)
	}
	loss := `{"v":2,"type":"loss","host":"h","boot_id":"b","family":"f","group":"g","reason":"overrun","count":3,"first_seq":4,"last_seq":6,"instance":7,"time":"2026-11-18T08:26:40.123456789Z"}`
	if got := formatRecord([]byte(loss)); !strings.Contains(got, "LOSS h f/g overrun count=3 seq=4-6") {
		t.Errorf("loss line %q", got)
	}
}

// genlbridge schema: a family's document names its messages; --out writes
// one file per family; a group the family does not have is a usage error
// that says which it has.
func TestSchemaCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainErr([]string{"schema", "netdev/mgmt"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	defs, _ := doc["$defs"].(map[string]any)
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" || defs["message-dev-add-ntf"] == nil || defs["event"] == nil || defs["loss"] == nil {
		t.Fatalf("netdev/mgmt's schema: %.300s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := mainErr([]string{"schema", "netdev/nope"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `no multicast group "nope" (it has mgmt`) {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
	dir := t.TempDir()
	if code := mainErr([]string{"schema", "--out", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, name := range []string{"genlbridge.json", "netdev.json", "ethtool.json", "CONTROL_EXMPL.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !json.Valid(b) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
