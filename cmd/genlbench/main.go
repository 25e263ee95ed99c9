//go:build linux

// Command genlbench measures genlbridge end to end against what the kernel
// and NATS allow, side by side in one run: a generator multicasts
// CONTROL_EXMPL-shaped events from userspace into netdev/mgmt in a private
// network namespace (root needed), and each pipeline is run as its own
// process so that its CPU time, allocations and peak RSS are its own:
//
//	raw           recvmmsg that only counts: the ceiling of this machine
//	bridge-batch  genlbridge run, one NATS message per batch
//	bridge-event  genlbridge run, one NATS message per event (the default)
//	bridge-js     genlbridge run into JetStream, one message per event
//	bridge-spool  the node's spool (GENLBRIDGE_SPOOL_SYNC=always) in front of the same JetStream
//	bridge-spool-1s  the same, the spool synced every second
//	naive         netlink.Conn.Receive + one nats.Publish per event
//	js-bare       a bare JetStream PublishAsync loop (no kernel) into the same subscriber, for reference
//
// It prints a table, writes results.json and chart.png to -out, and says
// whether each target holds.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/internal/procstat"
	"github.com/genlbridge/genlbridge/internal/syncbuf"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/internal/inject"
	"github.com/genlbridge/genlbridge/internal/netnstest"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "raw" || os.Args[1] == "naive") {
		childMain(os.Args[1], os.Args[2:])
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "gen" {
		// genlbench gen NETNS-PATH RATE COUNT: only the generator, for profiling by hand.
		if err := genOnly(os.Args[2], os.Args[3], os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, "genlbench gen:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genlbench:", err)
		os.Exit(1)
	}
}

type options struct {
	bridge     string
	natsServer string
	cluster    bool
	out        string
	modes      []string
	rates      []int
	repeat     int
	maxEv      int
	maxDur     time.Duration
	lossless   time.Duration
	outage     time.Duration
	idle       time.Duration
}

func run() error {
	var o options
	modes := flag.String("modes", strings.Join(allModes, ","), "pipelines to measure")
	rates := flag.String("rates", "10000,100000,0", "offered rates in events/s; 0 is as fast as possible")
	flag.StringVar(&o.bridge, "bridge", "build/genlbridge", "the genlbridge binary")
	flag.StringVar(&o.natsServer, "nats-server", "build/nats-server", "the nats-server binary the hub runs as (make bench builds it)")
	flag.BoolVar(&o.cluster, "cluster", true, "measure a three-server JetStream cluster (R3) in each JetStream mode")
	flag.StringVar(&o.out, "out", "build/bench", "directory for results.json and chart.png")
	flag.IntVar(&o.repeat, "repeat", 3, "runs of each point (median and spread are reported)")
	flag.IntVar(&o.maxEv, "events", 1000000, "events per point at most")
	flag.DurationVar(&o.maxDur, "duration", 10*time.Second, "offered time per point at most (events = min(-events, rate*duration))")
	flag.DurationVar(&o.lossless, "lossless", 10*time.Second, "length of the lossless check at 400k events/s with default settings (0: skip)")
	flag.DurationVar(&o.outage, "outage", 60*time.Second, "length of the hub outage whose spooled backlog is drained (at 10k events/s; 0: skip)")
	flag.DurationVar(&o.idle, "idle", time.Minute, "how long the idle daemon's CPU is measured, in each configuration (0: skip)")
	flag.Parse()
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates a network namespace and multicasts into it")
	}
	if err := natsServerBinary(o.natsServer); err != nil {
		return err
	}
	o.modes = strings.Split(*modes, ",")
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			return fmt.Errorf("rate %q: want a whole number", r)
		}
		o.rates = append(o.rates, n)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	help, _ := exec.Command(o.bridge, "run", "--help").CombinedOutput()
	jsOK := strings.Contains(string(help), "jetstream")

	res := &results{Machine: machine(), Started: time.Now().UTC()}
	total := 0
	for _, m := range o.modes {
		if m == "js-bare" {
			total += o.repeat
		} else {
			total += len(o.rates) * o.repeat
		}
	}
	done := 0
	for rep := 0; rep < o.repeat; rep++ {
		for _, mode := range o.modes {
			if usesJS(mode) && !jsOK {
				continue
			}
			rs := o.rates
			if mode == "js-bare" {
				rs = []int{0}
			}
			for _, rate := range rs {
				done++
				fmt.Fprintf(os.Stderr, "[%d/%d] %s at %s ... ", done, total, mode, rateName(rate))
				n := o.maxEv
				if rate > 0 {
					n = min(n, int(float64(rate)*o.maxDur.Seconds()))
				}
				p, err := measure(self, o, mode, rate, n, nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "failed:", err)
					p = &point{Mode: mode, Offered: rate, Error: err.Error()}
				} else {
					fmt.Fprintf(os.Stderr, "%.0f ev/s, lost %d\n", p.EventsPerSec, p.LostActual)
				}
				res.Points = append(res.Points, *p)
			}
		}
	}
	if o.lossless > 0 {
		for rep := 0; rep < o.repeat; rep++ {
			fmt.Fprintf(os.Stderr, "[lossless %d/%d] bridge-event, defaults, 400k/s for %s ... ", rep+1, o.repeat, o.lossless)
			p, err := measure(self, o, "bridge-event", 400000, int(400000*o.lossless.Seconds()), nil)
			if err != nil {
				fmt.Fprintln(os.Stderr, "failed:", err)
				p = &point{Mode: "bridge-event", Offered: 400000, Error: err.Error()}
			} else {
				fmt.Fprintf(os.Stderr, "lost %d of %d\n", p.LostActual, p.Sent)
			}
			p.Label = "lossless"
			res.Lossless = append(res.Lossless, *p)
		}
	}
	if o.outage > 0 {
		fmt.Fprintf(os.Stderr, "[drain] a %s outage of the hub at 10k/s, then the spool drains with live events ... ", o.outage)
		d, err := measureDrain(o, o.outage, 10000)
		if err != nil {
			fmt.Fprintln(os.Stderr, "failed:", err)
			d = &drain{Error: err.Error()}
		} else {
			fmt.Fprintf(os.Stderr, "%d spooled, drained in %.1fs (%.0f events/s)\n", d.Backlog, d.Seconds, d.EventsPerSec)
		}
		res.Drain = d
	}
	if o.idle > 0 {
		for _, c := range idleConfigs {
			fmt.Fprintf(os.Stderr, "[idle] %s for %s ... ", c.name, o.idle)
			p, err := measureIdle(o, c, o.idle)
			if err != nil {
				fmt.Fprintln(os.Stderr, "failed:", err)
				p = idle{Config: c.name, Error: err.Error()}
			} else {
				fmt.Fprintf(os.Stderr, "%.3f%% of a core\n", p.CorePercent)
			}
			res.Idle = append(res.Idle, p)
		}
	}
	if o.cluster {
		for rep := 0; rep < o.repeat; rep++ {
			for _, m := range clusterModes {
				fmt.Fprintf(os.Stderr, "[cluster %d/%d] %s into three servers, R3 ... ", rep+1, o.repeat, m)
				c, err := measureCluster(self, o, m, 300000)
				if err != nil {
					fmt.Fprintln(os.Stderr, "failed:", err)
					if c == nil {
						c = &clusterPoint{Mode: m}
					}
					c.Error = err.Error()
				} else {
					fmt.Fprintf(os.Stderr, "%.0f events/s, servers %.2f µs/event\n", c.EventsPerSec, c.ServersCPUusPerEv)
				}
				res.Cluster = append(res.Cluster, *c)
			}
		}
	}
	res.summarize()
	res.print(os.Stdout)
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), b, 0o644); err != nil {
		return err
	}
	if err := drawChart(res, filepath.Join(o.out, "chart.png")); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(o.out, "results.json"), filepath.Join(o.out, "chart.png"))
	return nil
}

func rateName(r int) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%dk/s", r/1000)
}

func machine() string {
	host, _ := os.Hostname()
	var u syscall.Utsname
	syscall.Uname(&u)
	rel := make([]byte, 0, 65)
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, linux %s, %d CPUs (%s)", host, rel, numCPU(), cpu)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// point is one measured run.
type point struct {
	Mode    string `json:"mode"`
	Label   string `json:"label,omitempty"`
	Offered int    `json:"offered_per_s"` // 0: as fast as possible
	Sent    uint64 `json:"sent"`
	// Delivered counts events at the end of the pipeline (the subscriber,
	// or the raw receiver); LostCounted what the pipeline itself counted
	// as lost; LostActual is Sent - Delivered.
	Delivered   uint64  `json:"delivered"`
	LostCounted uint64  `json:"lost_counted"`
	LostActual  int64   `json:"lost_actual"`
	Seconds     float64 `json:"seconds"`
	// Achieved is the rate the generator really offered (sent / sending
	// time): on a busy machine it falls short of Offered.
	Achieved     float64 `json:"achieved_per_s"`
	EventsPerSec float64 `json:"events_per_s"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p999_us"`
	CPUusPerEv   float64 `json:"cpu_us_per_event"`
	// HubCPUusPerEv is the hub's (the nats-server process's) CPU per event.
	HubCPUusPerEv float64   `json:"hub_cpu_us_per_event"`
	AllocsPerEv   float64   `json:"allocs_per_event"`
	PeakRSSMiB    float64   `json:"peak_rss_mib"`
	Latencies     []float64 `json:"-"`
	Error         string    `json:"error,omitempty"`
}

// child is a pipeline process.
type child struct {
	cmd     *exec.Cmd
	stdout  *bufio.Reader
	stderr  *syncbuf.Buffer
	metrics string // URL of /metrics for a bridge
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startChild(self string, o options, mode string, ns *netnstest.NS, natsURL, spoolDir string, env []string) (*child, error) {
	c := &child{stderr: &syncbuf.Buffer{}}
	switch mode {
	case "raw":
		c.cmd = exec.Command(self, "raw", ns.Path)
	case "naive":
		c.cmd = exec.Command(self, "naive", ns.Path, natsURL)
	default:
		port := freePort()
		c.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		c.cmd = exec.Command(o.bridge, "run")
		c.cmd.Env = append(os.Environ(),
			"GENLBRIDGE_NATS_URL="+natsURL,
			"GENLBRIDGE_NETNS="+ns.Path,
			"GENLBRIDGE_SUBSCRIBE=netdev/mgmt:exmpl",
			"GENLBRIDGE_ALLOW_USERSPACE_SENDERS=true",
			fmt.Sprintf("GENLBRIDGE_HTTP_ADDR=127.0.0.1:%d", port),
			"GENLBRIDGE_SPOOL=off",
		)
		c.cmd.Env = append(c.cmd.Env, modeEnv(mode, spoolDir)...)
		c.cmd.Env = append(c.cmd.Env, env...)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.stdout = bufio.NewReader(out)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	if c.metrics == "" {
		line, err := c.stdout.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "READY" {
			c.kill()
			return nil, fmt.Errorf("%s did not start: %v %q: %s", mode, err, line, c.stderr.String())
		}
		return c, nil
	}
	for !strings.Contains(c.stderr.String(), "msg=joined") || scrape(c.metrics, "go_memstats_mallocs_total") < 0 {
		if time.Now().After(deadline) {
			c.kill()
			return nil, fmt.Errorf("bridge did not join within 10s: %s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, nil
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// stop sends SIGTERM and returns what a raw or naive child reports.
func (c *child) stop() (childReport, error) {
	var rep childReport
	c.cmd.Process.Signal(syscall.SIGTERM)
	if c.metrics == "" {
		line, err := c.stdout.ReadString('\n')
		if err == nil {
			err = json.Unmarshal([]byte(line), &rep)
		}
		c.cmd.Wait()
		return rep, err
	}
	io.Copy(io.Discard, c.stdout)
	err := c.cmd.Wait()
	return rep, err
}

// scrape returns the value of a metric line starting with name, or -1.
func scrape(url, name string) float64 {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total, found := 0.0, false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				total += v
				found = true
			}
		}
	}
	if !found {
		return -1
	}
	return total
}

// measure runs one point: a fresh namespace, server, pipeline and subscriber.
func measure(self string, o options, mode string, rate, n int, env []string) (*point, error) {
	if mode == "js-bare" {
		return measureJSBare(o, n)
	}
	ns, err := netnstest.New("genlbench")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "genlbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := startHub(o, usesJS(mode), filepath.Join(dir, "hub"))
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	var sub *natstest.Counter
	if mode != "raw" {
		if sub, err = natstest.Count(srv.url, "genl.>", sampleEvery); err != nil {
			return nil, err
		}
		defer sub.Close()
	}
	ch, err := startChild(self, o, mode, ns, srv.url, filepath.Join(dir, "spool"), env)
	if err != nil {
		return nil, err
	}
	defer ch.kill()
	pid := ch.cmd.Process.Pid
	snd, err := inject.New(ns.FD(), "netdev", "mgmt")
	if err != nil {
		return nil, err
	}
	defer snd.Close()

	send := snd.SendExmpl
	if mode == "bridge-ynl" {
		send = snd.SendNetdevDevAdd
	}
	// CPU, allocations and the hub's CPU are taken over a steady window,
	// from 20% to 90% of the events (delivered; for raw, sent): start-up
	// and the last stragglers are not per-event costs.
	var sent atomic.Uint64
	progress := func() uint64 {
		if sub == nil {
			return sent.Load()
		}
		d, l := sub.Counts()
		return d + l
	}
	win := newSteadyWindow(pid, []int{srv.pid()}, ch.metrics, uint64(n), progress)
	start := time.Now()
	if err := pace(send, rate, n, &sent); err != nil {
		win.stop()
		return nil, err
	}
	sendEnd := time.Now()
	p := &point{Mode: mode, Offered: rate, Sent: uint64(n), Achieved: float64(n) / sendEnd.Sub(start).Seconds()}
	// Wait until everything is accounted for, or nothing moves for 2 s.
	if sub != nil {
		last, lastChange := uint64(0), time.Now()
		for {
			d, l := sub.Counts()
			if d+l >= uint64(n) {
				break
			}
			if d+l != last {
				last, lastChange = d+l, time.Now()
			}
			if time.Since(lastChange) > 2*time.Second {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else {
		time.Sleep(300 * time.Millisecond) // the raw receiver drains its 32 MiB buffer in far less
	}
	a, b, steady := win.stop()
	_, rss, _ := procstat.RSS(pid)
	if ch.metrics != "" {
		p.LostCounted = uint64(max(0, scrape(ch.metrics, "genlbridge_events_dropped_total")))
	}
	rep, err := ch.stop()
	if err != nil && ch.metrics == "" {
		return nil, fmt.Errorf("%s report: %w: %s", mode, err, ch.stderr.String())
	}
	var end time.Time
	if sub != nil {
		p.Delivered, _ = sub.Counts()
		end = sub.Last()
		p.Latencies = sub.Latencies()
		if ch.metrics == "" {
			p.LostCounted = 0 // the naive pipeline counts nothing
		}
	} else {
		p.Delivered = rep.Received
		p.LostCounted = rep.Drops
		p.Latencies = rep.Latencies
		end = sendEnd
	}
	p.LostActual = int64(p.Sent) - int64(p.Delivered)
	if end.Before(start) {
		end = sendEnd
	}
	p.Seconds = end.Sub(start).Seconds()
	if p.Seconds > 0 {
		p.EventsPerSec = float64(p.Delivered) / p.Seconds
	}
	if steady {
		evs := float64(b.progress - a.progress)
		p.CPUusPerEv = float64((b.cpu - a.cpu).Microseconds()) / evs
		p.HubCPUusPerEv = float64((b.hubCPU - a.hubCPU).Microseconds()) / evs
		if a.mallocs >= 0 && b.mallocs >= 0 {
			p.AllocsPerEv = (b.mallocs - a.mallocs) / evs
		}
	}
	if ch.metrics == "" && p.Delivered > 0 {
		p.AllocsPerEv = float64(rep.Mallocs) / float64(p.Delivered)
	}
	p.PeakRSSMiB = float64(rss) / (1 << 20)
	p.P50us, p.P99us, p.P999us = quantile(p.Latencies, 0.5), quantile(p.Latencies, 0.99), quantile(p.Latencies, 0.999)
	return p, nil
}

// pace sends n events at rate per second (0: as fast as possible), in
// sendmmsg batches, catching up every millisecond; it keeps how many it
// has sent in progress (if not nil).
func pace(send func(first uint64, n int) error, rate, n int, progress ...*atomic.Uint64) error {
	const chunk = 256
	start := time.Now()
	sent := 0
	for sent < n {
		want := n
		if rate > 0 {
			want = min(n, int(time.Since(start).Seconds()*float64(rate))+1)
		}
		if want <= sent {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		k := min(want-sent, chunk)
		if err := send(uint64(sent+1), k); err != nil {
			return err
		}
		sent += k
		for _, p := range progress {
			p.Store(uint64(sent))
		}
	}
	return nil
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func genOnly(nsPath, rateS, countS string) error {
	rate, err1 := strconv.Atoi(rateS)
	n, err2 := strconv.Atoi(countS)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	snd, err := inject.New(int(ns.Fd()), "netdev", "mgmt")
	if err != nil {
		return err
	}
	defer snd.Close()
	start := time.Now()
	if err := pace(snd.SendExmpl, rate, n); err != nil {
		return err
	}
	fmt.Printf("sent %d in %v (%.0f/s)\n", n, time.Since(start), float64(n)/time.Since(start).Seconds())
	return nil
}
