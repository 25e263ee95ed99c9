//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/procstat"
	"github.com/genlbridge/genlbridge/internal/syncbuf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drain is the catch-up after an outage of the hub: what the spool took
// while the hub was down, and how fast it went out once the hub was back
// (live events going on at the same rate meanwhile).
type drain struct {
	OutageSec    float64 `json:"outage_s"`
	Rate         int     `json:"rate_per_s"`
	Backlog      uint64  `json:"backlog"`
	BacklogMiB   float64 `json:"backlog_mib"`
	Seconds      float64 `json:"drain_s"`
	EventsPerSec float64 `json:"events_per_s"`
	Sent         uint64  `json:"sent"`
	InHub        uint64  `json:"in_hub"`
	// PeakRSSMiB is the bridge's peak RSS through the outage and the drain.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	Error      string  `json:"error,omitempty"`
}

// idle is the daemon's cost with no events, in one configuration.
type idle struct {
	Config      string  `json:"config"`
	Seconds     float64 `json:"seconds"`
	CorePercent float64 `json:"core_percent"`
	WakeupsPerS float64 `json:"wakeups_per_s"` // voluntary context switches of all its threads
	Error       string  `json:"error,omitempty"`
}

// bridgeProc is a genlbridge run process for the drain and idle
// measurements.
type bridgeProc struct {
	cmd     *exec.Cmd
	metrics string
	stderr  *syncbuf.Buffer
}

func startBridge(o options, env ...string) (*bridgeProc, error) {
	port := freePort()
	b := &bridgeProc{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), stderr: &syncbuf.Buffer{}}
	b.cmd = exec.Command(o.bridge, "run")
	b.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), fmt.Sprintf("GENLBRIDGE_HTTP_ADDR=127.0.0.1:%d", port),
		"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl", "GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true"}, env...)
	b.cmd.Stderr = b.stderr
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	if err := b.waitMetric("genlbridge_subscription_joined", 30*time.Second, func(v float64) bool { return v == 1 }); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// waitMetric polls the metric until cond holds.
func (b *bridgeProc) waitMetric(name string, timeout time.Duration, cond func(float64) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if v := scrape(b.metrics, name); v >= 0 && cond(v) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not as wanted after %s (now %v): %s", name, timeout, scrape(b.metrics, name), lastLines(b.stderr.String(), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bridgeProc) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// measureDrain: the hub (a nats-server process with JetStream, restarted on
// the same port and store) is killed for outage while the bridge, with the
// fleet's configuration, takes rate events/s into its spool; then it
// starts again, live events go on at the same rate, and the backlog's
// drain rate is backlog / time until the spool is empty. At the end the
// hub's stream must hold every event. The bridge's peak RSS through it
// all is taken.
func measureDrain(o options, outage time.Duration, rate int) (*drain, error) {
	ns, err := netnstest.New("genlbench")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "genlbench-drain")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	hub, err := startHub(o, true, filepath.Join(dir, "hub"))
	if err != nil {
		return nil, err
	}
	defer func() { hub.stop() }()
	env := append(modeEnv(fleetDefault, filepath.Join(dir, "spool")), "GENLBRIDGE_NATS_URL="+hub.url, "GENLBRIDGE_NETNS="+ns.Path,
		"GENLBRIDGE_DATA_DIR="+filepath.Join(dir, "data"), "GENLBRIDGE_NODE_NAME=drain", "GENLBRIDGE_SPOOL_MAX_BYTES=4GiB")
	b, err := startBridge(o, env...)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	peak := newPeakRSS(b.cmd.Process.Pid)
	defer peak.stop()
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		return nil, err
	}
	defer snd.Close()

	d := &drain{OutageSec: outage.Seconds(), Rate: rate}
	hub.kill()
	n := int(float64(rate) * outage.Seconds())
	if err := pace(snd.SendExmpl, rate, n); err != nil {
		return nil, err
	}
	d.Sent = uint64(n)
	if err := b.waitMetric("genlbridge_events_published_total", time.Minute, func(v float64) bool { return v == float64(n) }); err != nil {
		return nil, fmt.Errorf("spooling the outage: %w", err)
	}
	// The hub was down from the first event: every one is in the spool
	// (genlbridge_spool_messages counts packs, not events).
	d.Backlog = uint64(n)
	d.BacklogMiB = max(0, scrape(b.metrics, "genlbridge_spool_bytes")) / (1 << 20)

	if err := hub.start(); err != nil {
		return nil, fmt.Errorf("restart the hub: %w", err)
	}
	up := time.Now()
	live := newLiveSender(snd, uint64(n+1), rate)
	err = b.waitMetric("genlbridge_spool_messages", 10*time.Minute, func(v float64) bool { return v == 0 })
	d.Seconds = time.Since(up).Seconds()
	sentLive := live.stop()
	if err != nil {
		return nil, fmt.Errorf("draining: %w", err)
	}
	if live.err != nil {
		return nil, live.err
	}
	d.EventsPerSec = float64(d.Backlog) / d.Seconds
	d.Sent += sentLive
	total := d.Sent
	// The live events still in flight reach the hub: wait while the
	// count moves (a message may hold a batch of events).
	var last uint64
	moved := time.Now()
	for {
		if d.InHub, err = streamEvents(hub.url); err != nil {
			return nil, err
		}
		if d.InHub >= total {
			break
		}
		if d.InHub != last {
			last, moved = d.InHub, time.Now()
		} else if time.Since(moved) > time.Minute {
			break
		}
		time.Sleep(time.Second)
	}
	d.PeakRSSMiB = peak.stop()
	if d.InHub != total {
		return d, fmt.Errorf("the hub's stream holds %d events of %d sent", d.InHub, total)
	}
	return d, nil
}

// streamEvents is how many events the hub's GENL stream holds (a batched
// message holds one a line), read with an ordered consumer.
func streamEvents(url string) (uint64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, "GENL")
	if err != nil {
		return 0, err
	}
	msgs := st.CachedInfo().State.Msgs
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	var n uint64
	for read := uint64(0); read < msgs; {
		batch, err := c.Fetch(1024, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			for _, line := range bytes.Split(bytes.TrimSpace(m.Data()), []byte{'\n'}) {
				if bytes.Contains(line, []byte(`"type":"event"`)) {
					n++
				}
			}
		}
		if err := batch.Error(); err != nil {
			return 0, err
		}
		if got == 0 {
			return 0, fmt.Errorf("reading the stream: %d of %d messages", read, msgs)
		}
		read += uint64(got)
	}
	return n, nil
}

// liveSender sends events at a steady rate until stopped.
type liveSender struct {
	quit chan struct{}
	wg   sync.WaitGroup
	sent uint64
	err  error
}

func newLiveSender(snd *inject.Sender, first uint64, rate int) *liveSender {
	l := &liveSender{quit: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		start := time.Now()
		for {
			select {
			case <-l.quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
			want := uint64(time.Since(start).Seconds() * float64(rate))
			if want <= l.sent {
				continue
			}
			if err := snd.SendExmpl(first+l.sent, int(want-l.sent)); err != nil {
				l.err = err
				return
			}
			l.sent = want
		}
	}()
	return l
}

// stop stops it and returns how many it sent.
func (l *liveSender) stop() uint64 {
	close(l.quit)
	l.wg.Wait()
	return l.sent
}

// idleConfig is a daemon configuration whose idle cost is measured.
type idleConfig struct {
	name string
	// hub: the server the bridge is pointed at ("" none: it embeds one);
	// js says whether it has JetStream.
	hub, js bool
	env     []string
}

// idleSpool names the configuration whose idle cost has a target.
const idleSpool = "the fleet's settings: remote JetStream, spool on"

var idleConfigs = []idleConfig{
	{name: "embedded server (no GENLBRIDGE_NATS_URL)"},
	{name: "remote server, core NATS, no spool", hub: true, env: []string{"GENLBRIDGE_SINK=nats", "GENLBRIDGE_SPOOL=off"}},
	{name: idleSpool, hub: true, js: true, env: fleetEnv},
}

// measureIdle starts the daemon with one subscription and no events, lets
// it settle, and measures its CPU time and wake-ups over d.
func measureIdle(o options, c idleConfig, d time.Duration) (idle, error) {
	p := idle{Config: c.name}
	ns, err := netnstest.New("genlbench")
	if err != nil {
		return p, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "genlbench-idle")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(dir)
	env := append([]string{"GENLBRIDGE_NETNS=" + ns.Path, "GENLBRIDGE_DATA_DIR=" + filepath.Join(dir, "data"),
		"GENLBRIDGE_SPOOL_DIR=" + filepath.Join(dir, "spool")}, c.env...)
	if c.hub {
		hub, err := startHub(o, c.js, filepath.Join(dir, "hub"))
		if err != nil {
			return p, err
		}
		defer hub.stop()
		env = append(env, "GENLBRIDGE_NATS_URL="+hub.url)
	}
	b, err := startBridge(o, env...)
	if err != nil {
		return p, err
	}
	defer b.stop()
	time.Sleep(5 * time.Second) // start-up work done, the reader's wait grown
	pid := b.cmd.Process.Pid
	cpu0, err1 := procstat.CPU(pid)
	v0, _, err2 := procstat.Switches(pid)
	start := time.Now()
	time.Sleep(d)
	cpu1, err3 := procstat.CPU(pid)
	v1, _, err4 := procstat.Switches(pid)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return p, err
	}
	p.Seconds = time.Since(start).Seconds()
	p.CorePercent = 100 * (cpu1 - cpu0).Seconds() / p.Seconds
	p.WakeupsPerS = float64(v1-v0) / p.Seconds
	return p, nil
}

// peakRSS samples a process's resident memory every 100 ms and keeps the
// highest (VmHWM is the kernel's own peak, but it counts from the
// process's start; this one is the sampled highest while it runs).
type peakRSS struct {
	quit chan struct{}
	done chan struct{}
	peak int64
}

func newPeakRSS(pid int) *peakRSS {
	p := &peakRSS{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if _, hwm, err := procstat.RSS(pid); err == nil {
				p.peak = max(p.peak, hwm)
			}
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stop ends the sampling and returns the peak in MiB (it may be called
// again).
func (p *peakRSS) stop() float64 {
	select {
	case <-p.done:
	default:
		close(p.quit)
		<-p.done
	}
	return float64(p.peak) / (1 << 20)
}
