//go:build vmtest

package vmtest

// The bridge process of the guest's bridge tests, watched through the
// contracts operators use: /readyz, /metrics and the JSON log
// (internal/proctest), and a NATS subscriber on genl.> that checks the
// subject and Nats-Msg-Id of every record (internal/natstest).

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/internal/schematest"
	"github.com/genlbridge/genlbridge/ynl/specs"
	"github.com/nats-io/nats.go"
)

// natsURL is where `genlbridge run` starts its embedded server by default.
const natsURL = "nats://127.0.0.1:4222"

// subscription is the example module's, as the metrics label it.
const subscription = exmpl.FamilyName + "/" + exmpl.GroupName

// bridgeSeed is the embedded server's client seed of the last bridge started.
var bridgeSeed string

// startBridge starts /genlbridge run with GENLBRIDGE_DATA_DIR in a temporary
// directory, the given GENLBRIDGE_* settings on top of the defaults, and
// waits until /readyz says it is ready (its embedded NATS server up and
// connected). It is stopped when the test ends, and its log printed if the
// test failed.
func startBridge(t *testing.T, settings ...string) *proctest.Bridge {
	t.Helper()
	dir := t.TempDir()
	bridgeSeed = dir + "/data/nats-user.nk"
	env := append([]string{"GENLBRIDGE_DATA_DIR=" + dir + "/data", "HOME=/root", "TMPDIR=/tmp"}, settings...)
	// More settings for every bridge, from the kernel command line
	// (VM_APPEND=vmtest_bridge_env=GENLBRIDGE_SINK=nats,...), for experiments.
	if extra := os.Getenv("vmtest_bridge_env"); extra != "" {
		settings = append(settings, strings.Split(extra, ",")...)
		env = append(env, strings.Split(extra, ",")...)
	}
	start := time.Now()
	b := proctest.StartBinary(t, bridgeBinary(t), env...)
	t.Cleanup(func() {
		if b.Running() {
			stopBridge(t, b)
		}
		if t.Failed() {
			t.Logf("bridge log (settings %q):\n%s", settings, b.Log())
		}
	})
	b.WaitFor(30*time.Second, "/readyz", b.Ready)
	t.Logf("genlbridge run %q: ready after %v", settings, time.Since(start).Round(time.Millisecond))
	return b
}

// waitJoins waits until the subscription has been joined n times (re-joins
// after a reload count) and is joined now.
func waitJoins(t *testing.T, b *proctest.Bridge, n int, timeout time.Duration) {
	t.Helper()
	b.WaitMetrics(timeout, fmt.Sprintf("%s joined %d times", subscription, n), func(m proctest.Metrics) bool {
		return m.Get("genlbridge_subscription_joins_total", "subscription="+subscription) >= float64(n) &&
			m.Get("genlbridge_subscription_joined", "subscription="+subscription) == 1
	})
}

// stopBridge sends SIGTERM and wants exit status 0 within a few seconds; it
// returns the bridge's last "stopped" log record.
func stopBridge(t *testing.T, b *proctest.Bridge) map[string]any {
	t.Helper()
	took := b.Stop(10 * time.Second)
	rec := b.LogRecord("stopped")
	t.Logf("genlbridge run exited after SIGTERM in %v; stopped: %v", took.Round(time.Millisecond), rec)
	if took > 5*time.Second {
		t.Errorf("genlbridge run took %v to exit after SIGTERM", took)
	}
	return rec
}

// natsAuth adds the credentials of the last bridge's embedded server to
// opts, once it has written them.
func natsAuth(t *testing.T, opts ...nats.Option) []nats.Option {
	if _, err := os.Stat(bridgeSeed); err != nil {
		return opts
	}
	o, err := nats.NkeyOptionFromSeed(bridgeSeed)
	if err != nil {
		t.Fatal(err)
	}
	return append(opts, o)
}

// validator checks records against the JSON Schemas of their families
// (package schema), made from the specs a bridge with specDirs as its
// GENLBRIDGE_SPEC_DIRS decodes with; the test logs the counts at its end.
func validator(t *testing.T, specDirs ...string) *schematest.Validator {
	t.Helper()
	reg, errs := specs.Registry(specDirs)
	if len(errs) > 0 {
		t.Fatalf("specs: %v", errs)
	}
	v := schematest.New(reg)
	t.Cleanup(func() { t.Logf("records valid against their schemas: %v", v.Counts()) })
	return v
}

// subscribeAll subscribes to genl.> on the bridge's server, keeping every
// record of every family and checking each has a Nats-Msg-Id and fits its
// family's schema (decoded with the specs of specDirs).
func subscribeAll(t *testing.T, specDirs ...string) *natstest.Collector {
	t.Helper()
	v := validator(t, specDirs...)
	return natstest.Collect(t, natsURL, "genl.>", func(r *natstest.Record) string {
		if r.MsgID == "" {
			return "no Nats-Msg-Id header"
		}
		if err := v.Check(r.Line); err != nil {
			return err.Error()
		}
		return ""
	}, natsAuth(t, nats.Name("vmtest"))...)
}

// subscribe subscribes to genl.> on the bridge's server, keeping every
// record and checking that events and loss records come on this host's
// subjects with a Nats-Msg-Id.
func subscribe(t *testing.T) *natstest.Collector {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	base := "genl." + exmpl.FamilyName + "." + exmpl.GroupName + "." + host
	v := validator(t)
	return natstest.Collect(t, natsURL, "genl.>", func(r *natstest.Record) string {
		if err := v.Check(r.Line); err != nil {
			return err.Error()
		}
		switch {
		case r.MsgID == "":
			return "no Nats-Msg-Id header"
		case r.Type == "event" && r.Subject != base:
			return fmt.Sprintf("event on subject %q, want %q", r.Subject, base)
		case r.Type == "loss" && r.Subject != base+".loss":
			return fmt.Sprintf("loss record on subject %q, want %q", r.Subject, base+".loss")
		}
		return ""
	}, natsAuth(t, nats.Name("vmtest"))...)
}
