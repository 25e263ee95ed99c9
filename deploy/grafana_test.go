// grafana/genlbridge.json, the Grafana dashboard, against the metric families
// the binary's registry (monitor.New) exports: it queries no other metric and
// shows every genlbridge_ one.

package deploy_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/monitor"
	"github.com/genlbridge/genlbridge/spool"
)

type fakeSource struct{ subs []bridge.Subscription }

func (f fakeSource) Stats() bridge.Stats { return bridge.Stats{Lost: map[string]uint64{}} }
func (f fakeSource) Subscriptions() []bridge.SubscriptionStatus {
	var out []bridge.SubscriptionStatus
	for _, s := range f.subs {
		// With a spec, so that the YNL decoding metrics are exported too.
		out = append(out, bridge.SubscriptionStatus{Subscription: s, State: bridge.StateJoined, Spec: "embedded/kmod/control_exmpl.yaml"})
	}
	return out
}

// fakeSpool is a spool as the monitor reads it, so that the spool's metrics
// are exported too.
type fakeSpool struct{}

func (fakeSpool) Stats() spool.Stats { return spool.Stats{MaxBytes: 1 << 30, Forwarding: true} }
func (fakeSpool) Ready() error       { return nil }

// exported returns the metric families the binary's registry exports (with
// a spool), with their types.
func exported(t *testing.T) map[string]string {
	t.Helper()
	subs, err := bridge.ParseSubscriptions([]string{"CONTROL_EXMPL/EXMPL_GRP"})
	if err != nil {
		t.Fatal(err)
	}
	m := monitor.New(monitor.Options{Version: "test", Spool: fakeSpool{}})
	m.SetSource(fakeSource{subs: subs})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range fams {
		out[f.GetName()] = f.GetType().String()
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:genlbridge|process|go)_[a-z0-9_]*[a-z0-9]`)

func TestGrafanaDashboard(t *testing.T) {
	var dash any
	if err := json.Unmarshal(read(t, "grafana/genlbridge.json"), &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				exprs = append(exprs, x)
			}
		}
	}
	walk(dash, "")
	if len(exprs) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	have := exported(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			base := name
			if _, ok := have[name]; !ok {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b := strings.TrimSuffix(name, suf); b != name && (have[b] == "HISTOGRAM" || have[b] == "SUMMARY") {
						base = b
					}
				}
			}
			if _, ok := have[base]; !ok {
				t.Errorf("the dashboard queries %s, which the binary does not export (in %q)", name, e)
			}
			used[base] = true
		}
	}
	// What the dashboard must show (issue 5): every metric of the bridge.
	for name := range have {
		if strings.HasPrefix(name, "genlbridge_") && !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}
