//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
)

// clusterPoint is a JetStream mode into a three-server cluster with an R3
// stream: the rate it takes, and what each event costs the three servers
// together.
type clusterPoint struct {
	Mode      string `json:"mode"`
	Sent      uint64 `json:"sent"`
	Delivered uint64 `json:"delivered"`
	// Lost is what the bridge counted lost (socket overruns at this rate).
	Lost         uint64  `json:"lost"`
	EventsPerSec float64 `json:"events_per_s"`
	// ServersCPUusPerEv is the three servers' CPU time per event, summed:
	// what an event costs the cluster.
	ServersCPUusPerEv float64 `json:"servers_cpu_us_per_event"`
	BridgeCPUusPerEv  float64 `json:"bridge_cpu_us_per_event"`
	Error             string  `json:"error,omitempty"`
}

// clusterModes are the ways of publishing into JetStream the cluster
// measurement compares.
var clusterModes = []string{"bridge-js", "bridge-js-ack", "bridge-js-batch", fleetDefault}

// measureCluster runs a bridge in mode as fast as it goes into a fresh
// three-server cluster (R3 stream), n events, and measures the servers'
// CPU per event over the steady window.
func measureCluster(self string, o options, mode string, n int) (*clusterPoint, error) {
	p := &clusterPoint{Mode: mode, Sent: uint64(n)}
	ns, err := netnstest.New("genlbench")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "genlbench-cluster")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c, err := startCluster(o, dir)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	sub, err := natstest.Count(c.urls(), "genl.>", sampleEvery)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	ch, err := startChild(self, o, mode, ns, c.urls(), filepath.Join(dir, "spool"), []string{"GENLBRIDGE_STREAM_REPLICAS=3"})
	if err != nil {
		return nil, err
	}
	defer ch.kill()
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		return nil, err
	}
	defer snd.Close()
	progress := func() uint64 { d, l := sub.Counts(); return d + l }
	win := newSteadyWindow(ch.cmd.Process.Pid, c.pids(), ch.metrics, uint64(n), progress)
	start := time.Now()
	var sent atomic.Uint64
	if err := pace(snd.SendExmpl, 0, n, &sent); err != nil {
		win.stop()
		return nil, err
	}
	last, moved := uint64(0), time.Now()
	for {
		pr := progress()
		if pr >= uint64(n) || time.Since(moved) > 5*time.Second {
			break
		}
		if pr != last {
			last, moved = pr, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	a, b, ok := win.stop()
	p.Delivered, p.Lost = sub.Counts()
	end := sub.Last()
	if secs := end.Sub(start).Seconds(); secs > 0 {
		p.EventsPerSec = float64(p.Delivered) / secs
	}
	if ok {
		evs := float64(b.progress - a.progress)
		p.ServersCPUusPerEv = float64((b.hubCPU - a.hubCPU).Microseconds()) / evs
		p.BridgeCPUusPerEv = float64((b.cpu - a.cpu).Microseconds()) / evs
	}
	_, _ = ch.stop()
	if p.Delivered+p.Lost != p.Sent {
		return p, fmt.Errorf("%d events and %d counted lost reached the cluster's subscriber, of %d", p.Delivered, p.Lost, p.Sent)
	}
	return p, nil
}
