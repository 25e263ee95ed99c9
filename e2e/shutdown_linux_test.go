//go:build linux

package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
)

// SIGTERM with a backlog in the queue and in the socket, while the NATS
// server is frozen (SIGSTOP) so that nothing can be delivered: the bridge
// leaves its group, drains the socket and counts what it could not deliver.
// Every event offered is delivered or counted, exactly, in the final log
// line and in the last metrics.
func TestShutdownAccountsForTheBacklog(t *testing.T) {
	for _, sinkName := range []string{"nats", "jetstream"} {
		t.Run(sinkName, func(t *testing.T) {
			ns := netnstest.Need(t)
			srv := jstest.StartProcess(t)
			const queueSize = 4096
			b := proctest.Start(t,
				"GENLBRIDGE_NATS_URL="+srv.URL(), "GENLBRIDGE_SINK="+sinkName, "GENLBRIDGE_NETNS="+ns.Path,
				"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true",
				fmt.Sprintf("GENLBRIDGE_QUEUE_SIZE=%d", queueSize), "GENLBRIDGE_SHUTDOWN_TIMEOUT=2s",
				"GENLBRIDGE_FLUSH_TIMEOUT=500ms", "GENLBRIDGE_SHUTDOWN_SCRAPE_WAIT=60s", "GENLBRIDGE_DATA_DIR="+t.TempDir())
			b.WaitMetrics(30*time.Second, "joined and connected", func(m proctest.Metrics) bool {
				return m.Sum("genlbridge_subscription_joined") == 1 && m.Get("genlbridge_sink_connected") == 1
			})

			srv.Signal(syscall.SIGSTOP)
			defer srv.Signal(syscall.SIGCONT)
			snd, err := inject.New(ns.FD(), "netdev", "mgmt")
			if err != nil {
				t.Fatal(err)
			}
			defer snd.Close()
			// Far more than the queue and a batch hold, far less than the
			// 64 MiB socket buffer: no overrun, a backlog in the socket.
			const n = 40000
			if err := snd.SendExmpl(1, n); err != nil {
				t.Fatal(err)
			}
			b.WaitMetrics(30*time.Second, "the queue full", func(m proctest.Metrics) bool {
				return m.Get("genlbridge_queue_depth") == queueSize
			})
			before, _ := b.Metrics()
			if got := before.Sum("genlbridge_events_received_total"); got >= n/2 {
				t.Fatalf("%v of %d events read before the stop: want a backlog in the socket", got, n)
			}

			b.Signal(syscall.SIGTERM)
			final := b.WaitMetrics(60*time.Second, "the final counts", func(m proctest.Metrics) bool {
				return m.Get("genlbridge_stopped") == 1
			})
			if code := b.Wait(30 * time.Second); code != 0 {
				t.Fatalf("exit status %d; log:\n%s", code, b.Log())
			}

			delivered := final.Get("genlbridge_events_published_total")
			var lost float64
			for _, r := range event.Reasons {
				lost += final.Get("genlbridge_events_dropped_total", "reason="+r)
			}
			t.Logf("metrics: read %v before the stop; %v delivered + %v lost (%v publish_failed) of %d",
				before.Sum("genlbridge_events_received_total"), delivered, lost,
				final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonPublishFailed), n)
			if delivered+lost != n || final.Sum("genlbridge_events_received_total") != n {
				t.Fatalf("metrics: %v delivered + %v lost != %d sent (received %v)", delivered, lost, n, final.Sum("genlbridge_events_received_total"))
			}
			if final.Sum("genlbridge_socket_drops_total") != final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonOverrun) {
				t.Fatalf("socket drops %v, overrun %v: every kernel drop must be counted",
					final.Sum("genlbridge_socket_drops_total"), final.Get("genlbridge_events_dropped_total", "reason="+event.ReasonOverrun))
			}
			recs := b.LogRecords("stopped")
			if len(recs) != 1 {
				t.Fatalf("%d 'stopped' log lines; log:\n%s", len(recs), b.Log())
			}
			st := recs[0]
			if st["delivered"].(float64)+st["lost_total"].(float64) != n || st["accounted"].(float64) != n || st["read"].(float64) != n {
				t.Fatalf("final log line %v: want delivered + lost_total == accounted == read == %d", st, n)
			}
			t.Logf("final log line: %v", st)
		})
	}
}
