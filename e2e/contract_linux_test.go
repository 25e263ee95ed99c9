//go:build linux

package e2e

// The consumer's contract, with real parts: the kernel's netdev events in
// a fresh namespace, a genlbridge process, a nats-server process as the
// fleet's hub, read back from its stream as a foreign consumer would.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/cetest"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/internal/schematest"
	"github.com/genlbridge/genlbridge/ynl/specs"
	"github.com/nats-io/nats.go"
)

// Real events stored in the hub's stream, through the JetStream sink and
// through the spool, read back with the CloudEvents Go SDK: each message
// is a valid CloudEvent (ce-id its Nats-Msg-Id, ce-source its host and
// subscription, ce-type its family and op, data its JSON body), and each
// body fits its family's JSON Schema.
func TestRealEventsAreCloudEvents(t *testing.T) {
	ns := netnstest.Need(t)
	hub := jstest.StartProcess(t)
	reg, errs := specs.Registry(nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	v := schematest.New(reg)
	nc := jstest.Connect(t, hub.URL())
	veth := 0
	for _, path := range []string{"jetstream", "spool"} {
		host := "ce-" + path
		spool := "off"
		if path == "spool" {
			spool = "on"
		}
		b := proctest.Start(t, "GENLBRIDGE_NATS_URL="+hub.URL(), "GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL="+spool,
			"GENLBRIDGE_NETNS="+ns.Path, "GENLBRIDGE_SUBSCRIBE=netdev/mgmt", "GENLBRIDGE_NODE_NAME="+host)
		b.WaitMetrics(30*time.Second, "joined and connected", func(m proctest.Metrics) bool {
			return m.Get("genlbridge_subscription_joined", "subscription=netdev/mgmt") == 1 && m.Get("genlbridge_sink_connected") == 1
		})
		for i := 0; i < 2; i++ {
			veth++
			if err := ns.IP("link", "add", fmt.Sprintf("ce%d", veth), "type", "veth", "peer", "name", fmt.Sprintf("cp%d", veth)); err != nil {
				t.Fatal(err)
			}
		}
		// Two pairs: four dev-add-ntf at least.
		b.WaitMetrics(30*time.Second, "four events delivered", func(m proctest.Metrics) bool {
			return m.Get("genlbridge_events_published_total") >= 4 && (path != "spool" || m.Get("genlbridge_spool_forwarded_total") >= 4)
		})
		b.Stop(30 * time.Second)
	}
	msgs := jstest.StreamMessages(t, nc, "GENL")
	byHost := map[string]int{}
	for _, m := range msgs {
		e, err := cetest.Event(m)
		if err != nil {
			t.Fatalf("%s: not a valid CloudEvent: %v (headers %v)", m.Subject, err, m.Header)
		}
		if err := v.Check(e.Data()); err != nil {
			t.Errorf("%s: %v", e.Data(), err)
		}
		host := strings.Split(e.Source(), "/")[1]
		byHost[host]++
		if e.ID() != m.Header.Get(nats.MsgIdHdr) || e.DataContentType() != "application/json" ||
			e.Source() != "genlbridge:/"+host+"/netdev/mgmt" || !strings.HasPrefix(e.Type(), "com.github.genlbridge.netdev.dev-") ||
			string(e.Data()) != string(m.Data) || time.Since(e.Time()) > 10*time.Minute {
			t.Errorf("%s: id %q (Nats-Msg-Id %q), source %q, type %q, time %v, content type %q", m.Subject, e.ID(), m.Header.Get(nats.MsgIdHdr),
				e.Source(), e.Type(), e.Time(), e.DataContentType())
		}
	}
	t.Logf("%d messages of the stream read as CloudEvents (by host: %v), their data valid against their schemas: %v", len(msgs), byHost, v.Counts())
	if byHost["ce-jetstream"] < 4 || byHost["ce-spool"] < 4 {
		t.Errorf("events by host %v, want at least 4 of each path", byHost)
	}
}
