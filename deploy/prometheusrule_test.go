// monitoring/prometheusrule.yaml, the alerts, against the metric families
// the binary's registry exports (as the dashboard is, grafana_test.go), and
// through promtool: its rules must load, and each alert must fire on the
// series that should raise it and stay quiet otherwise.

package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// prometheusRule is the Prometheus Operator's PrometheusRule, as far as
// these files use it (decodeStrict refuses any other field).
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func rules(t *testing.T) *prometheusRule {
	t.Helper()
	objs, err := decodeStrict(read(t, "monitoring/prometheusrule.yaml"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("monitoring/prometheusrule.yaml: %v (%d objects)", err, len(objs))
	}
	return objs[0].(*prometheusRule)
}

// Every metric an alert reads is one the binary serves; every alert says
// how bad it is and what it means; and the alerts users expect are there.
func TestPrometheusRuleMetrics(t *testing.T) {
	have := exported(t)
	reads := map[string][]string{} // metric -> alerts reading it
	for _, g := range rules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%q)", g.Name, r.Expr)
				continue
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a severity label and summary and description annotations", r.Alert)
			}
			for _, name := range metricName.FindAllString(r.Expr, -1) {
				if _, ok := have[name]; !ok {
					t.Errorf("%s reads %s, which the binary does not export", r.Alert, name)
				}
				reads[name] = append(reads[name], r.Alert)
			}
		}
	}
	for _, name := range []string{
		"genlbridge_events_dropped_total",                      // events lost, any reason
		"genlbridge_spool_bytes", "genlbridge_spool_max_bytes", // spool above 80%
		"genlbridge_spool_forwarding",                                      // forwarding stalled
		"genlbridge_subscription_joined",                                   // subscription not joined
		"genlbridge_sink_connected",                                        // sink disconnected
		"genlbridge_spool_store_errors_total",                              // the spool's disk failing
		"genlbridge_spool_refused_total", "genlbridge_spool_damaged_total", // spooled messages dropped
	} {
		if len(reads[name]) == 0 {
			t.Errorf("no alert reads %s", name)
		}
	}
}

// promtool's rule unit tests: series in, alerts out.
const ruleTests = `
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'genlbridge_events_dropped_total{instance="n1",reason="overrun"}'
        values: '0 0 40 40 40 40 40 40 40 40 40 40'
      - series: 'genlbridge_events_dropped_total{instance="n2",reason="overrun"}'
        values: '0x12'
      - series: 'genlbridge_spool_bytes{instance="n1"}'
        values: '0 850 850 850 850 850 850 850 850 850 850 850'
      - series: 'genlbridge_spool_bytes{instance="n2"}'
        values: '700x12'
      - series: 'genlbridge_spool_max_bytes{instance="n1"}'
        values: '1000x12'
      - series: 'genlbridge_spool_max_bytes{instance="n2"}'
        values: '1000x12'
      - series: 'genlbridge_spool_forwarding{instance="n1"}'
        values: '1 0 0 0 0 0 0 0 0 0 0 0'
      - series: 'genlbridge_spool_forwarding{instance="n2"}'
        values: '1x12'
      - series: 'genlbridge_spool_store_errors_total{instance="n1"}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1'
      - series: 'genlbridge_spool_refused_total{instance="n1"}'
        values: '0x12'
      - series: 'genlbridge_spool_damaged_total{instance="n1"}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1'
      - series: 'genlbridge_sink_connected{instance="n1"}'
        values: '1 0 0 0 0 0 0 0 0 0 0 0'
      - series: 'genlbridge_sink_connected{instance="n2"}'
        values: '1 1 1 0 0 1 1 1 1 1 1 1'
      - series: 'genlbridge_subscription_joined{instance="n1",subscription="CONTROL_EXMPL/EXMPL_GRP"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 4m
        alertname: GenlbridgeEventsLost
        exp_alerts:
          - exp_labels: {severity: warning, instance: n1, reason: overrun}
            exp_annotations:
              summary: "genlbridge on n1 lost 40 events in 5 minutes (overrun)"
              description: "Events were counted as lost with reason overrun; the loss records on the loss subject name their ranges. See the README's table of reasons for what each means and what to do."
      - eval_time: 9m
        alertname: GenlbridgeEventsLost
        exp_alerts: []
      - eval_time: 7m
        alertname: GenlbridgeSpoolAlmostFull
        exp_alerts:
          - exp_labels: {severity: warning, instance: n1}
            exp_annotations:
              summary: "genlbridge's spool on n1 is 85% full"
              description: "The spool fills while the fleet's NATS server does not take events. When full, new events are counted as spool_full (what is spooled is kept). Bring the server back, or raise GENLBRIDGE_SPOOL_MAX_BYTES (see deploy/README.md for sizing)."
      - eval_time: 4m
        alertname: GenlbridgeSpoolAlmostFull
        exp_alerts: []
      - eval_time: 7m
        alertname: GenlbridgeSpoolForwardingStalled
        exp_alerts:
          - exp_labels: {severity: warning, instance: n1}
            exp_annotations:
              summary: "genlbridge on n1 has not forwarded its spool for 5 minutes"
              description: "Events are kept in the node's spool (genlbridge_spool_messages, genlbridge_spool_oldest_age_seconds) while the fleet's server does not take them; /readyz says why."
      - eval_time: 5m
        alertname: GenlbridgeSpoolStoreErrors
        exp_alerts:
          - exp_labels: {severity: critical, instance: n1}
            exp_annotations:
              summary: "genlbridge's spool store on n1 is failing"
              description: "The spool's store failed (a full disk, an I/O error): new events are counted as spool_full until it works again. Look at the disk under GENLBRIDGE_SPOOL_DIR and at the bridge's log."
      - eval_time: 5m
        alertname: GenlbridgeSpoolDropped
        exp_alerts:
          - exp_labels: {severity: warning, instance: n1}
            exp_annotations:
              summary: "genlbridge on n1 dropped spooled messages"
              description: "The fleet's server refused spooled messages for good (too large for its max_payload, a permanent error) or the spool held a message that did not unpack; the bridge's log names each."
      - eval_time: 7m
        alertname: GenlbridgeSinkDisconnected
        exp_alerts:
          - exp_labels: {severity: warning, instance: n1}
            exp_annotations:
              summary: "genlbridge on n1 is not connected to NATS"
              description: "The bridge keeps events in its spool (or its socket buffer and queue without one) and reconnects in the background."
      - eval_time: 20m
        alertname: GenlbridgeSubscriptionNotJoined
        exp_alerts: []
      - eval_time: 31m
        alertname: GenlbridgeSubscriptionNotJoined
        exp_alerts:
          - exp_labels: {severity: info, instance: n1, subscription: CONTROL_EXMPL/EXMPL_GRP}
            exp_annotations:
              summary: "genlbridge on n1 has not joined CONTROL_EXMPL/EXMPL_GRP for 30 minutes"
              description: "The subscription's family or group is not registered on this node (is the module loaded?); the bridge joins it as soon as it appears."
`

// promtool is the one make deps puts in build/tools (from Debian's
// prometheus package), or one on PATH.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs("../build/tools/promtool"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Skip("needs promtool: make deps puts it in build/tools")
	return ""
}

func TestPrometheusRuleAlerts(t *testing.T) {
	tool := promtool(t)
	dir := t.TempDir()
	out, err := yaml.Marshal(map[string]any{"groups": rules(t).Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yaml"), []byte(strings.TrimSpace(ruleTests)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "tests.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
}
