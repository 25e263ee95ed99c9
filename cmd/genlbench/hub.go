//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/internal/syncbuf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// hubProc is the fleet's server of a measurement: a nats-server process of
// its own, so that its CPU time per event is its own (the pipelines'
// processes are measured alike).
type hubProc struct {
	bin  string
	args []string
	url  string
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
}

// startHub starts nats-server on a free loopback port, with JetStream and
// its store under dir when js, and the extra arguments (a cluster's).
func startHub(o options, js bool, dir string, extra ...string) (*hubProc, error) {
	port := freePort()
	h := &hubProc{bin: o.natsServer, url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		args: append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(port)}, extra...)}
	if js {
		h.args = append(h.args, "-js", "-sd", dir)
	}
	return h, h.start()
}

func (h *hubProc) start() error {
	h.log = &syncbuf.Buffer{}
	h.cmd = exec.Command(h.bin, h.args...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	// No Pdeathsig: it fires when the forking thread exits, and the
	// generator's namespace threads do exit. Every caller stops it.
	if err := h.cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server %s (make bench builds it): %w", h.bin, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if nc, err := nats.Connect(h.url, nats.Timeout(time.Second)); err == nil {
			nc.Close()
			return nil
		}
		if time.Now().After(deadline) {
			h.kill()
			return fmt.Errorf("nats-server %v not ready after 30s: %s", h.args, lastLines(h.log.String(), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *hubProc) pid() int { return h.cmd.Process.Pid }

// kill stops it at once, as a crash would.
func (h *hubProc) kill() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// stop stops it cleanly.
func (h *hubProc) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.kill()
	}
}

// cluster is three nats-server processes in one JetStream cluster.
type cluster struct {
	nodes []*hubProc
}

// startCluster starts three servers with routes to one another, and
// waits until JetStream has a meta leader.
func startCluster(o options, dir string) (*cluster, error) {
	ports := []int{freePort(), freePort(), freePort()}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &cluster{}
	for i := range 3 {
		h, err := startHubNoWait(o, filepath.Join(dir, fmt.Sprintf("n%d", i)), "-n", fmt.Sprintf("node-%d", i+1),
			"--cluster_name", "genlbench", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, h)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		nc, err := nats.Connect(c.urls())
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("the cluster has no JetStream meta leader after a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startHubNoWait starts a JetStream server that may wait for its routes.
func startHubNoWait(o options, dir string, extra ...string) (*hubProc, error) {
	port := freePort()
	h := &hubProc{bin: o.natsServer, url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		args: append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir}, extra...)}
	h.log = &syncbuf.Buffer{}
	h.cmd = exec.Command(h.bin, h.args...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nats-server %s (make bench builds it): %w", h.bin, err)
	}
	return h, nil
}

func (c *cluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.url)
	}
	return strings.Join(u, ",")
}

func (c *cluster) pids() []int {
	var p []int
	for _, n := range c.nodes {
		p = append(p, n.pid())
	}
	return p
}

func (c *cluster) stop() {
	for _, n := range c.nodes {
		n.stop()
	}
}

// natsServerBinary checks the nats-server binary is there.
func natsServerBinary(path string) error {
	if _, err := os.Stat(path); err != nil {
		return errors.Join(fmt.Errorf("nats-server binary: %w", err),
			errors.New("build it with: go build -o build/nats-server github.com/nats-io/nats-server/v2 (make bench does)"))
	}
	return nil
}
