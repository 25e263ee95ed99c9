//go:build linux

package main

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/genlbridge/genlbridge/internal/procstat"
)

// allModes are the pipelines genlbench knows, in the order they are run.
//
//	raw                recvmmsg that only counts: the ceiling of this machine
//	bridge-batch       genlbridge, core NATS, one message per batch
//	bridge-event       genlbridge, core NATS, one message per event
//	bridge-ynl         the same, netdev's own messages decoded by its YNL spec
//	bridge-js          genlbridge into JetStream, one message per event, published as fast batches
//	bridge-js-ack      the same, one acknowledgement a message (GENLBRIDGE_STREAM_FAST_BATCH=false)
//	bridge-js-batch    genlbridge into JetStream, one message per batch
//	bridge-spool       the node's spool (synced always) in front of JetStream, one message per event
//	bridge-spool-1s    the same, the spool synced every second
//	bridge-spool-batch the spool in front of JetStream, one message per batch
//	bridge-fleet       the DaemonSet's settings (fleetEnv): the spool in front of JetStream, batches lingering
//	naive              netlink.Conn.Receive + one nats.Publish per event
//	js-bare            a bare JetStream PublishAsync loop (no kernel), for reference
var allModes = []string{"raw", "bridge-batch", "bridge-event", "bridge-ynl", "bridge-js", "bridge-js-ack", "bridge-js-batch",
	"bridge-spool", "bridge-spool-1s", "bridge-spool-batch", "bridge-fleet", "naive", "js-bare"}

// fleetDefault is the configuration every node of a fleet runs (the
// DaemonSet's): the spool in front of a remote JetStream.
const fleetDefault = "bridge-fleet"

// fleetEnv is what deploy/base/daemonset.yaml sets that changes the cost
// of an event (TestFleetEnvIsTheDaemonSets keeps them equal): the spool,
// synced always, in front of JetStream, one message per batch of the
// events that share a subject, a batch lingering 20 ms for more.
var fleetEnv = []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on", "GENLBRIDGE_SPOOL_SYNC=always",
	"GENLBRIDGE_MESSAGE_MODE=batch", "GENLBRIDGE_BATCH_LINGER=20ms", "GOMEMLIMIT=96MiB"}

// usesJS says whether a mode's hub needs JetStream.
func usesJS(mode string) bool {
	return strings.HasPrefix(mode, "bridge-js") || strings.HasPrefix(mode, "bridge-spool") || mode == "bridge-fleet"
}

// modeEnv is a bridge mode's settings.
func modeEnv(mode, spoolDir string) []string {
	switch mode {
	case "bridge-ynl":
		// netdev's own messages, decoded by the embedded netdev spec.
		return []string{"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:ynl"}
	case "bridge-batch":
		return []string{"GENLBRIDGE_MESSAGE_MODE=batch"}
	case "bridge-js":
		return []string{"GENLBRIDGE_SINK=jetstream"}
	case "bridge-js-ack":
		return []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_STREAM_FAST_BATCH=false"}
	case "bridge-js-batch":
		return []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_MESSAGE_MODE=batch"}
	case "bridge-spool":
		return []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on", "GENLBRIDGE_SPOOL_DIR=" + spoolDir}
	case "bridge-spool-1s":
		return []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on", "GENLBRIDGE_SPOOL_DIR=" + spoolDir, "GENLBRIDGE_SPOOL_SYNC=1s"}
	case "bridge-spool-batch":
		return []string{"GENLBRIDGE_SINK=jetstream", "GENLBRIDGE_SPOOL=on", "GENLBRIDGE_SPOOL_DIR=" + spoolDir, "GENLBRIDGE_MESSAGE_MODE=batch"}
	case "bridge-fleet":
		return append(slices.Clone(fleetEnv), "GENLBRIDGE_SPOOL_DIR="+spoolDir)
	}
	return nil
}

// steadySample is what a steady window reads at its ends.
type steadySample struct {
	progress    uint64
	cpu, hubCPU time.Duration
	mallocs     float64 // the bridge's (go_memstats_mallocs_total), -1: not a bridge
}

// steadyWindow samples a pipeline's CPU time, its allocations and its
// hub's CPU time when the run's progress (events delivered, or sent)
// passes 20% and 90% of n: per-event costs over a steady stretch, without
// start-up and the last stragglers.
type steadyWindow struct {
	pid      int
	hubPids  []int
	metrics  string
	n        uint64
	progress func() uint64
	quit     chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	a, b   steadySample
	na, nb bool
}

func newSteadyWindow(pid int, hubPids []int, metrics string, n uint64, progress func() uint64) *steadyWindow {
	w := &steadyWindow{pid: pid, hubPids: hubPids, metrics: metrics, n: n, progress: progress, quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *steadyWindow) sample() steadySample {
	s := steadySample{progress: w.progress(), mallocs: -1}
	s.cpu, _ = procstat.CPU(w.pid)
	for _, p := range w.hubPids {
		c, _ := procstat.CPU(p)
		s.hubCPU += c
	}
	if w.metrics != "" {
		s.mallocs = scrape(w.metrics, "go_memstats_mallocs_total")
	}
	return s
}

func (w *steadyWindow) run() {
	defer close(w.done)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		p := w.progress()
		w.mu.Lock()
		switch {
		case !w.na && p >= w.n/5:
			w.a, w.na = w.sample(), true
		case w.na && !w.nb && p >= w.n*9/10:
			w.b, w.nb = w.sample(), true
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// stop ends the sampling and returns the window's ends, if both were
// reached.
func (w *steadyWindow) stop() (a, b steadySample, ok bool) {
	select {
	case <-w.done:
	default:
		close(w.quit)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.a, w.b, w.na && w.nb && w.b.progress > w.a.progress
}
