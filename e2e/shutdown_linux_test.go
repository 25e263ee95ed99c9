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
// line and in the last metrics. Without the spool what the server cannot
// take is counted as publish_failed; with it, every event is delivered into
// the spool, and a bridge started again on it forwards them all.
func TestShutdownAccountsForTheBacklog(t *testing.T) {
	for _, tc := range []struct{ name, sink, spool string }{
		{"nats", "nats", "off"}, {"jetstream", "jetstream", "off"}, {"jetstream+spool", "jetstream", "on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.Need(t)
			srv := jstest.StartProcess(t)
			const queueSize = 4096
			spoolDir := t.TempDir()
			b := proctest.Start(t,
				"GENLBRIDGE_NATS_URL="+srv.URL(), "GENLBRIDGE_SINK="+tc.sink, "GENLBRIDGE_SPOOL="+tc.spool,
				"GENLBRIDGE_SPOOL_DIR="+spoolDir, "GENLBRIDGE_NODE_NAME=shutdown-node", "GENLBRIDGE_NETNS="+ns.Path,
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
			if tc.spool == "off" {
				b.WaitMetrics(30*time.Second, "the queue full", func(m proctest.Metrics) bool {
					return m.Get("genlbridge_queue_depth") == queueSize
				})
			}
			// With the spool nothing blocks the queue: SIGTERM comes at once,
			// with whatever the socket still holds.
			before, _ := b.Metrics()
			if got := before.Sum("genlbridge_events_received_total"); got >= n/2 && tc.spool == "off" {
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
			if tc.spool == "off" {
				return
			}

			// Every event is in the spool: a bridge started on it, the
			// server back, forwards all of them, once.
			if delivered != n {
				t.Fatalf("%v of %d delivered into the spool", delivered, n)
			}
			srv.Signal(syscall.SIGCONT)
			b = proctest.Start(t,
				"GENLBRIDGE_NATS_URL="+srv.URL(), "GENLBRIDGE_SINK="+tc.sink, "GENLBRIDGE_SPOOL="+tc.spool,
				"GENLBRIDGE_SPOOL_DIR="+spoolDir, "GENLBRIDGE_NODE_NAME=shutdown-node", "GENLBRIDGE_NETNS="+ns.Path,
				"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_DATA_DIR="+t.TempDir())
			b.WaitMetrics(time.Minute, "the spool forwarded", func(m proctest.Metrics) bool {
				return m.Get("genlbridge_spool_messages") == 0 && m.Get("genlbridge_spool_forwarded_total") > 0
			})
			nc := jstest.Connect(t, srv.URL())
			hub := jstest.ReadStream(t, nc, "GENL")
			if len(hub.Events) != n || len(hub.Losses) != 0 || len(hub.IDs) != hub.Msgs {
				t.Fatalf("the hub holds %d events, %d loss records, %d distinct ids in %d messages: want %d events, once each",
					len(hub.Events), len(hub.Losses), len(hub.IDs), hub.Msgs, n)
			}
			for i, e := range hub.Events {
				if e.Seq != uint64(i+1) {
					t.Fatalf("event %d in the hub has seq %d: want 1..%d in order", i, e.Seq, n)
				}
			}
			t.Logf("after the restart the spool forwarded all %d events, in order, once", n)
		})
	}
}
