//go:build linux

package monitor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/monitor"
	"github.com/genlbridge/genlbridge/sink"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample whose line starts with prefix.
func metric(t *testing.T, body, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			var v float64
			fmt.Sscanf(line[len(prefix)+1:], "%g", &v)
			return v
		}
	}
	return -1
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestMetricsAndHealthOfARunningBridge(t *testing.T) {
	ns := netnstest.Need(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv, err := broker.Start(broker.Config{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: srv.URL(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	mon := monitor.New(monitor.Options{Version: "test", Connected: monitor.NATSConnected(nc), RequireJoined: true})
	b, err := bridge.New(bridge.Config{
		Subscriptions: []bridge.Subscription{{Family: "netdev", Group: "mgmt"}},
		NetNS:         ns.FD(), Logger: quiet(), OnDelivered: mon.OnDelivered,
		// At the end the server stops before the bridge: events still
		// queued then (late netdev notifications) wait this long, not 10s.
		ShutdownTimeout: 500 * time.Millisecond,
	}, sink.NewNATS(nc, sink.NATSConfig{Logger: quiet(), RetryMax: 50 * time.Millisecond, FlushTimeout: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(mon.Handler())
	defer web.Close()
	if code, _ := get(t, web.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the bridge runs: %d", code)
	}
	mon.SetSource(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if code, body := get(t, web.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitFor(t, "ready", func() bool { code, _ := get(t, web.URL+"/readyz"); return code == 200 })

	for i := 0; i < 3; i++ {
		if err := ns.IP("link", "add", fmt.Sprintf("m%d", i), "type", "veth", "peer", "name", fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var body string
	waitFor(t, "counters to move", func() bool {
		_, body = get(t, web.URL+"/metrics")
		return metric(t, body, `genlbridge_events_published_total`) >= 6
	})
	for _, want := range []string{
		`genlbridge_events_received_total{subscription="netdev/mgmt"}`,
		`genlbridge_batch_size_events_count`,
		`genlbridge_publish_duration_seconds_count`,
	} {
		if v := metric(t, body, want); v < 1 {
			t.Errorf("%s = %v, want >= 1", want, v)
		}
	}
	for _, want := range []string{
		`genlbridge_subscription_joined{subscription="netdev/mgmt"} 1`,
		`genlbridge_sink_connected 1`,
		`genlbridge_events_dropped_total{reason="overrun"} 0`,
		`genlbridge_build_info{goversion=`,
		`genlbridge_queue_capacity 16384`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The broker goes away: not ready; back: ready again.
	srv.Shutdown()
	waitFor(t, "unready while NATS is down", func() bool {
		code, body := get(t, web.URL+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "sink: nats")
	})
	_, body = get(t, web.URL+"/metrics")
	if !strings.Contains(body, "genlbridge_sink_connected 0") {
		t.Error("genlbridge_sink_connected is not 0 while NATS is down")
	}
	srv2, err := broker.Start(broker.Config{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	waitFor(t, "ready again", func() bool { code, _ := get(t, web.URL+"/readyz"); return code == 200 })
}

func TestReadinessFollowsSubscriptions(t *testing.T) {
	ns := netnstest.Need(t)
	for _, require := range []bool{true, false} {
		mon := monitor.New(monitor.Options{RequireJoined: require})
		b, err := bridge.New(bridge.Config{
			// No such family in a fresh namespace: the subscription waits.
			Subscriptions: []bridge.Subscription{{Family: "netdev", Group: "mgmt"}, {Family: "CONTROL_EXMPL", Group: "EXMPL_GRP"}},
			NetNS:         ns.FD(), Logger: quiet(),
		}, sink.NewWriter(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		mon.SetSource(b)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		waitFor(t, "netdev joined", func() bool { return b.Subscriptions()[0].State == bridge.StateJoined })
		err = mon.Ready()
		if require && (err == nil || !strings.Contains(err.Error(), "waiting for CONTROL_EXMPL/EXMPL_GRP")) {
			t.Errorf("RequireJoined: Ready() = %v", err)
		}
		if !require && err != nil {
			t.Errorf("waiting allowed: Ready() = %v", err)
		}
		if v := joinedGauge(t, mon, "CONTROL_EXMPL/EXMPL_GRP"); v != 0 {
			t.Errorf("joined gauge of the waiting subscription = %v", v)
		}
		cancel()
		<-done
	}
}

func joinedGauge(t *testing.T, mon *monitor.Monitor, sub string) float64 {
	t.Helper()
	mfs, err := mon.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "genlbridge_subscription_joined" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subscription" && l.GetValue() == sub {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no genlbridge_subscription_joined for %s", sub)
	return -1
}
