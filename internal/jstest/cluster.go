package jstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of nats-server processes on loopback,
// each with its own client port, route port and store, so that a test can
// kill a node (Process.Kill) and start it again as the same member.
type Cluster struct {
	t     testing.TB
	Nodes []*Process
	Names []string // server names, Nodes' order
}

// StartCluster starts n nodes (n >= 3 for a quorum that survives a lost
// node) and waits until JetStream has a meta leader. They are killed at the
// end of the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := ServerBinary(t)
	c := &Cluster{t: t}
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		clientPorts[i], routePorts[i] = natstest.FreePort(t), natstest.FreePort(t)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	dir := t.TempDir()
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		p := &Process{t: t, bin: bin, Port: clientPorts[i], StoreDir: filepath.Join(dir, name)}
		conf := filepath.Join(dir, name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: jstest
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, name, p.Port, p.StoreDir, routePorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p.args = []string{"-c", conf}
		c.Nodes, c.Names = append(c.Nodes, p), append(c.Names, name)
	}
	for _, p := range c.Nodes {
		p.Start()
		t.Cleanup(p.Kill)
	}
	c.WaitMeta(time.Minute)
	return c
}

// URLs is the client URL of every node, comma separated, as
// GENLBRIDGE_NATS_URL takes them.
func (c *Cluster) URLs() string {
	var u []string
	for _, p := range c.Nodes {
		u = append(u, p.URL())
	}
	return strings.Join(u, ",")
}

// Connect connects to the cluster (any node), closed at the end of the
// test; it reconnects to the others while one is down.
func (c *Cluster) Connect() *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// WaitMeta waits until JetStream answers an account request, which needs
// a meta leader, or fails the test.
func (c *Cluster) WaitMeta(timeout time.Duration) {
	c.t.Helper()
	nc := c.Connect()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster's JetStream did not answer within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StreamLeader waits until stream has a leader and all its replicas are
// current, and returns the leader's index in Nodes.
func (c *Cluster) StreamLeader(nc *nats.Conn, stream string, timeout time.Duration) int {
	c.t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		if err == nil {
			ci := st.CachedInfo().Cluster
			if ci != nil && ci.Leader != "" {
				current := 0
				for _, r := range ci.Replicas {
					if r.Current {
						current++
					}
				}
				if current == len(ci.Replicas) {
					for i, n := range c.Names {
						if n == ci.Leader {
							return i
						}
					}
				}
				last = fmt.Sprintf("leader %s, %d of %d replicas current", ci.Leader, current, len(ci.Replicas))
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("stream %s: no leader with current replicas within %s (%s)", stream, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
