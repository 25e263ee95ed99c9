//go:build linux

package e2e

// The fleet's side: a JetStream cluster of three nats-server processes on
// loopback, an R3 stream, and nodes of it killed with SIGKILL while
// bridges publish into it.

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/procstat"
	"github.com/genlbridge/genlbridge/internal/proctest"
)

// clusterBridge starts a bridge named host in ns, publishing into the
// cluster's R3 stream, with the spool on or off.
func clusterBridge(t *testing.T, ns *netnstest.NS, c *jstest.Cluster, host, spool string) *proctest.Bridge {
	t.Helper()
	b := proctest.Start(t, "GENLBRIDGE_NATS_URL="+c.URLs(), "GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_STREAM_REPLICAS=3",
		"GENLBRIDGE_SPOOL="+spool, "GENLBRIDGE_SPOOL_DIR="+t.TempDir(), "GENLBRIDGE_NETNS="+ns.Path,
		"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true", "GENLBRIDGE_NODE_NAME="+host,
		"GENLBRIDGE_DATA_DIR="+t.TempDir(), "GENLBRIDGE_RETRY_MAX=500ms")
	b.WaitMetrics(30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
	return b
}

// byHost checks the stream's records: no Nats-Msg-Id twice, no loss
// record, and for each host every sequence 1..sent exactly once. It
// returns, per host, how many events came after a higher sequence (stored
// out of order).
func byHost(t *testing.T, recs jstest.Records, sent map[string]uint64) map[string]int {
	t.Helper()
	for id, n := range recs.IDs {
		if n != 1 {
			t.Fatalf("Nats-Msg-Id %s stored %d times", id, n)
		}
	}
	if len(recs.Losses) != 0 {
		t.Fatalf("%d loss records, the first %+v: want none", len(recs.Losses), recs.Losses[0])
	}
	seen := map[string][]uint8{}
	last := map[string]uint64{}
	disorder := map[string]int{}
	for host, n := range sent {
		seen[host] = make([]uint8, n+1)
	}
	for _, e := range recs.Events {
		s, ok := seen[e.Host]
		if !ok || e.Seq < 1 || e.Seq >= uint64(len(s)) {
			t.Fatalf("event %s seq %d: not one that was sent", e.Host, e.Seq)
		}
		s[e.Seq]++
		if e.Seq < last[e.Host] {
			disorder[e.Host]++
		}
		last[e.Host] = max(last[e.Host], e.Seq)
	}
	for host, s := range seen {
		for q := 1; q < len(s); q++ {
			if s[q] != 1 {
				t.Fatalf("%s: sequence %d stored %d times (of %d sent)", host, q, s[q], sent[host])
			}
		}
	}
	return disorder
}

// TestClusterLeaderKilled: 100,000 events into an R3 stream on three
// nodes; the stream's leader is killed with SIGKILL mid-stream, started
// again, and once it is current the leader of then (another node) is
// killed too. The stream ends with every event once.
func TestClusterLeaderKilled(t *testing.T) {
	for _, spool := range []string{"on", "off"} {
		t.Run("spool="+spool, func(t *testing.T) {
			ns := netnstest.Need(t)
			c := jstest.StartCluster(t, 3)
			nc := c.Connect()
			b := clusterBridge(t, ns, c, "cluster-node", spool)
			snd, err := inject.New(ns.FD(), "netdev", "mgmt")
			if err != nil {
				t.Fatal(err)
			}
			defer snd.Close()

			const n, rate = 100000, 4000
			var progress atomic.Uint64
			done := make(chan error, 1)
			go func() { done <- sendPaced(snd, 1, n, rate, &progress) }()
			waitSent := func(k uint64) {
				t.Helper()
				for progress.Load() < k {
					select {
					case err := <-done:
						done <- err
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			// killLeader kills the stream's leader (not avoid, unless it is
			// the only choice), starts it again and waits until every
			// replica is current.
			killLeader := func(avoid int) int {
				t.Helper()
				victim := c.StreamLeader(nc, "GENL", time.Minute)
				if victim == avoid {
					victim = (victim + 1) % len(c.Nodes)
				}
				at := progress.Load()
				c.Nodes[victim].Kill()
				t.Logf("SIGKILL %s (leader of GENL) after %d events sent", c.Names[victim], at)
				time.Sleep(2 * time.Second)
				c.Nodes[victim].Start()
				leader := c.StreamLeader(nc, "GENL", 2*time.Minute)
				t.Logf("%s back after %d events; leader %s, every replica current", c.Names[victim], progress.Load(), c.Names[leader])
				return victim
			}
			waitSent(20000)
			first := killLeader(-1)
			waitSent(60000)
			killLeader(first)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			b.WaitMetrics(3*time.Minute, "every event stored in the hub", func(m proctest.Metrics) bool {
				return m.Get("genlbridge_events_published_total") == n && m.Get("genlbridge_spool_messages") == 0 &&
					(spool == "off" || m.Get("genlbridge_spool_forwarded_total") == n)
			})
			recs := jstest.ReadStream(t, nc, "GENL")
			disorder := byHost(t, recs, map[string]uint64{"cluster-node": n})
			m, _ := b.Metrics()
			t.Logf("%d sent, %d in the R3 stream, once each (%d distinct ids); %d stored after a higher sequence; sink republished %v, duplicates %v",
				n, len(recs.Events), len(recs.IDs), disorder["cluster-node"], m.Get("genlbridge_sink_republished_total"), m.Get("genlbridge_sink_duplicates_total"))
		})
	}
}

// TestFleetInMiniature: eight bridges, each in its own network namespace
// with its own generator and host name, at 1,000 events/s each into the
// three-node cluster while one of its nodes restarts: every node's events
// exactly once. Each bridge's CPU and memory are logged.
func TestFleetInMiniature(t *testing.T) {
	const bridges, rate, seconds = 8, 1000, 20
	const n = rate * seconds
	c := jstest.StartCluster(t, 3)
	nc := c.Connect()
	type node struct {
		host string
		ns   *netnstest.NS
		b    *proctest.Bridge
		snd  *inject.Sender
		cpu  time.Duration
	}
	nodes := make([]*node, bridges)
	for i := range nodes {
		nd := &node{host: fmt.Sprintf("fleet-%d", i+1), ns: netnstest.Need(t)}
		nd.b = clusterBridge(t, nd.ns, c, nd.host, "auto")
		var err error
		if nd.snd, err = inject.New(nd.ns.FD(), "netdev", "mgmt"); err != nil {
			t.Fatal(err)
		}
		defer nd.snd.Close()
		if nd.cpu, err = procstat.CPU(nd.b.Pid()); err != nil {
			t.Fatal(err)
		}
		nodes[i] = nd
	}
	c.StreamLeader(nc, "GENL", time.Minute)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, bridges)
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendPaced(nd.snd, 1, n, rate, nil); err != nil {
				errs <- fmt.Errorf("%s: %w", nd.host, err)
			}
		}()
	}
	time.Sleep(seconds * time.Second / 4)
	restart := c.StreamLeader(nc, "GENL", time.Minute)
	c.Nodes[restart].Kill()
	t.Logf("SIGKILL %s (leader of GENL) at %v", c.Names[restart], time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	c.Nodes[restart].Start()
	t.Logf("%s started again at %v", c.Names[restart], time.Since(start).Round(time.Millisecond))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sent := map[string]uint64{}
	for _, nd := range nodes {
		nd.b.WaitMetrics(3*time.Minute, nd.host+": every event forwarded", func(m proctest.Metrics) bool {
			return m.Get("genlbridge_events_published_total") == n && m.Get("genlbridge_spool_messages") == 0
		})
		sent[nd.host] = n
	}
	elapsed := time.Since(start)
	c.StreamLeader(nc, "GENL", time.Minute)
	recs := jstest.ReadStream(t, nc, "GENL")
	disorder := byHost(t, recs, sent)
	t.Logf("%d bridges x %d events: %d in the R3 stream, each once; stored after a higher sequence: %v", bridges, n, len(recs.Events), disorder)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].host < nodes[j].host })
	for _, nd := range nodes {
		cpu, err := procstat.CPU(nd.b.Pid())
		if err != nil {
			t.Fatal(err)
		}
		now, peak, err := procstat.RSS(nd.b.Pid())
		if err != nil {
			t.Fatal(err)
		}
		used := cpu - nd.cpu
		t.Logf("%s: CPU %v over %v (%.1f%% of a core, %.1f µs/event), RSS %.1f MiB (peak %.1f MiB)", nd.host, used.Round(time.Millisecond),
			elapsed.Round(time.Second), 100*used.Seconds()/elapsed.Seconds(), float64(used.Microseconds())/n, float64(now)/(1<<20), float64(peak)/(1<<20))
	}
}
