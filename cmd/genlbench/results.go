//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

type results struct {
	Machine  string         `json:"machine"`
	Started  time.Time      `json:"started"`
	Points   []point        `json:"points"`
	Lossless []point        `json:"lossless,omitempty"`
	Drain    *drain         `json:"drain,omitempty"`
	Idle     []idle         `json:"idle,omitempty"`
	Cluster  []clusterPoint `json:"cluster,omitempty"`
	Summary  []summary      `json:"summary"`
	Ratios   []ratio        `json:"ratios"`
}

// summary is the median (and spread) of the repeats of one mode and rate.
type summary struct {
	Mode          string  `json:"mode"`
	Offered       int     `json:"offered_per_s"`
	Runs          int     `json:"runs"`
	EventsPerSec  float64 `json:"events_per_s"`
	MinEPS        float64 `json:"min_events_per_s"`
	MaxEPS        float64 `json:"max_events_per_s"`
	Sent          uint64  `json:"sent"`
	Achieved      float64 `json:"achieved_per_s"`
	LostActual    int64   `json:"lost_actual"`
	LostCounted   uint64  `json:"lost_counted"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	P999us        float64 `json:"p999_us"`
	CPUusPerEv    float64 `json:"cpu_us_per_event"`
	HubCPUusPerEv float64 `json:"hub_cpu_us_per_event"`
	AllocsPerEv   float64 `json:"allocs_per_event"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
}

type ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Holds  bool    `json:"holds"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func (r *results) summarize() {
	type key struct {
		mode string
		rate int
	}
	var order []key
	groups := map[key][]point{}
	for _, p := range r.Points {
		if p.Error != "" {
			continue
		}
		k := key{p.Mode, p.Offered}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], p)
	}
	for _, k := range order {
		ps := groups[k]
		col := func(f func(p point) float64) []float64 {
			out := make([]float64, len(ps))
			for i, p := range ps {
				out[i] = f(p)
			}
			return out
		}
		eps := col(func(p point) float64 { return p.EventsPerSec })
		s := summary{Mode: k.mode, Offered: k.rate, Runs: len(ps), EventsPerSec: median(eps), MinEPS: slices.Min(eps), MaxEPS: slices.Max(eps),
			P50us: median(col(func(p point) float64 { return p.P50us })), P99us: median(col(func(p point) float64 { return p.P99us })),
			P999us: median(col(func(p point) float64 { return p.P999us })), CPUusPerEv: median(col(func(p point) float64 { return p.CPUusPerEv })),
			HubCPUusPerEv: median(col(func(p point) float64 { return p.HubCPUusPerEv })),
			AllocsPerEv:   median(col(func(p point) float64 { return p.AllocsPerEv })), PeakRSSMiB: slices.Max(col(func(p point) float64 { return p.PeakRSSMiB })),
			Achieved: median(col(func(p point) float64 { return p.Achieved }))}
		for _, p := range ps {
			s.Sent += p.Sent
			s.LostActual += p.LostActual
			s.LostCounted += p.LostCounted
		}
		r.Summary = append(r.Summary, s)
	}
	get := func(mode string, rate int) *summary {
		for i := range r.Summary {
			if r.Summary[i].Mode == mode && r.Summary[i].Offered == rate {
				return &r.Summary[i]
			}
		}
		return nil
	}
	add := func(name, target string, v float64, holds bool) {
		r.Ratios = append(r.Ratios, ratio{Name: name, Value: v, Target: target, Holds: holds})
	}
	raw, batch, naive := get("raw", 0), get("bridge-batch", 0), get("naive", 0)
	if ev, y := get("bridge-event", 0), get("bridge-ynl", 0); ev != nil && y != nil {
		v := y.EventsPerSec / ev.EventsPerSec
		add("bridge-ynl (netdev spec) / bridge-event (exmpl) (max rate)", ">= 0.9", v, v >= 0.9)
	}
	if raw != nil && batch != nil {
		v := batch.EventsPerSec / raw.EventsPerSec
		add("bridge-batch / raw ceiling (max rate)", ">= 0.85", v, v >= 0.85)
	}
	if naive != nil && batch != nil {
		v := batch.EventsPerSec / naive.EventsPerSec
		add("bridge-batch / naive (max rate)", ">= 4", v, v >= 4)
	}
	if js, bare := get("bridge-js", 0), get("js-bare", 0); js != nil && bare != nil {
		v := js.EventsPerSec / bare.EventsPerSec
		add("bridge-js per event / bare PublishAsync", ">= 0.9", v, v >= 0.9)
	}
	if sp, js := get("bridge-spool", 0), get("bridge-js", 0); sp != nil && js != nil {
		v := sp.EventsPerSec / js.EventsPerSec
		add("bridge-spool / bridge-js, end to end into JetStream (max rate)", ">= 0.8", v, v >= 0.8)
	}
	if sp := get("bridge-spool", 10000); sp != nil {
		add("bridge-spool p99 latency kernel -> subscriber at 10k/s (ms)", "<= 10", sp.P99us/1000, sp.P99us <= 10000)
	}
	// The spool's sync setting, side by side: what syncing before a batch
	// counts as delivered costs against syncing every second.
	for _, rate := range []int{10000, 0} {
		if al, iv := get("bridge-spool", rate), get("bridge-spool-1s", rate); al != nil && iv != nil {
			add(fmt.Sprintf("spool sync always / every 1s, events/s at %s", rateName(rate)), "(measured)", al.EventsPerSec/iv.EventsPerSec, true)
			add(fmt.Sprintf("spool sync always / every 1s, CPU per event at %s", rateName(rate)), "(measured)", al.CPUusPerEv/iv.CPUusPerEv, true)
			add(fmt.Sprintf("spool p99 at %s, sync always against every 1s (ms)", rateName(rate)), fmt.Sprintf("(every 1s: %.1f)", iv.P99us/1000), al.P99us/1000, true)
		}
	}
	if d := r.Drain; d != nil && d.Error == "" {
		add(fmt.Sprintf("spool drain after a %.0fs outage at %dk/s, live events on (events/s)", d.OutageSec, d.Rate/1000), "> rate (it catches up)",
			d.EventsPerSec, d.EventsPerSec > float64(d.Rate))
	}
	for _, p := range r.Idle {
		if p.Error == "" && p.Config == idleSpool {
			add("idle CPU with the spool on, % of a core", "<= 0.1", p.CorePercent, p.CorePercent <= 0.1)
		}
	}
	if len(r.Lossless) > 0 {
		var lost int64
		slowest := math.Inf(1)
		ok := true
		for _, p := range r.Lossless {
			lost += p.LostActual
			slowest = min(slowest, p.Achieved)
			ok = ok && p.Error == "" && p.LostActual == 0
		}
		secs := float64(r.Lossless[0].Sent) / 400000
		add(fmt.Sprintf("lossless at 400k/s for %.0fs, defaults (events lost over %d runs)", secs, len(r.Lossless)), "== 0", float64(lost), ok)
		// The claim holds only if the generator really offered the rate.
		add("  ... rate the generator achieved there, slowest run (events/s)", ">= 380000", slowest, slowest >= 380000)
	}
	for _, m := range []string{"bridge-event", "bridge-batch"} {
		if s := get(m, 10000); s != nil {
			add(m+" p99 latency at 10k/s (ms)", "<= linger + 2 ms = 3 ms", s.P99us/1000, s.P99us <= 3000)
		}
	}
	for _, m := range []string{"bridge-batch", "bridge-event"} {
		if s := get(m, 100000); s != nil {
			add(m+" allocations per event at 100k/s", "<= 1", s.AllocsPerEv, s.AllocsPerEv <= 1)
		}
	}
	peak := 0.0
	for _, s := range r.Summary {
		if s.Mode == "bridge-batch" || s.Mode == "bridge-event" {
			peak = max(peak, s.PeakRSSMiB)
		}
	}
	if peak > 0 {
		add("bridge peak RSS, MiB (no embedded server)", "<= 64", peak, peak <= 64)
	}
	r.fleetTargets(get)
}

// fleetTargets are the targets of the fleet's configuration (the spool in
// front of a remote JetStream, one message per event): its CPU per event
// against the raw ceiling's, its rate against the core NATS pipeline's,
// its memory at any rate and through an outage, and its allocations.
func (r *results) fleetTargets(get func(string, int) *summary) {
	add := func(name, target string, v float64, holds bool) {
		r.Ratios = append(r.Ratios, ratio{Name: name, Value: v, Target: target, Holds: holds})
	}
	fl := fleetDefault
	if f, raw := get(fl, 10000), get("raw", 10000); f != nil && raw != nil && raw.CPUusPerEv > 0 {
		v := f.CPUusPerEv / raw.CPUusPerEv
		add(fmt.Sprintf("fleet default (%s) CPU per event at 10k/s / raw ceiling's (%.1f / %.1f µs)", fl, f.CPUusPerEv, raw.CPUusPerEv), "<= 3", v, v <= 3)
	}
	if f, ev := get(fl, 0), get("bridge-event", 0); f != nil && ev != nil {
		v := f.EventsPerSec / ev.EventsPerSec
		add(fmt.Sprintf("fleet default events/s at max / core NATS per event's (%.0f / %.0f)", f.EventsPerSec, ev.EventsPerSec), ">= 0.5", v, v >= 0.5)
	}
	peak := 0.0
	for _, s := range r.Summary {
		if s.Mode == fl {
			peak = max(peak, s.PeakRSSMiB)
		}
	}
	if d := r.Drain; d != nil && d.Error == "" {
		peak = max(peak, d.PeakRSSMiB)
	}
	if peak > 0 {
		add("fleet default peak RSS at any rate and through the outage, MiB", "<= 128", peak, peak <= 128)
	}
	for _, m := range []string{"bridge-event", "bridge-js", fl} {
		if s := get(m, 100000); s != nil {
			add(m+" allocations per event at 100k/s (one message per event)", "<= 1", s.AllocsPerEv, s.AllocsPerEv <= 1)
		}
	}
	for _, m := range []string{"bridge-js-ack", "bridge-js", "bridge-js-batch", fl, "bridge-spool-batch"} {
		if s := get(m, 100000); s != nil && s.HubCPUusPerEv > 0 {
			add(m+" hub CPU per event at 100k/s (µs)", "(measured)", s.HubCPUusPerEv, true)
		}
	}
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\ngenlbench on %s, %s\n\n", r.Machine, r.Started.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\toffered\tachieved\truns\tevents/s\t(min-max)\tsent\tlost\tcounted\tp50 µs\tp99 µs\tp99.9 µs\tcpu µs/ev\thub µs/ev\tallocs/ev\tpeak RSS MiB\t")
	for _, s := range r.Summary {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%d\t%.0f\t(%.0f-%.0f)\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t\n", s.Mode, rateName(s.Offered), s.Achieved, s.Runs,
			s.EventsPerSec, s.MinEPS, s.MaxEPS, s.Sent, s.LostActual, s.LostCounted, s.P50us, s.P99us, s.P999us, s.CPUusPerEv, s.HubCPUusPerEv, s.AllocsPerEv, s.PeakRSSMiB)
	}
	tw.Flush()
	if len(r.Cluster) > 0 {
		fmt.Fprintln(w, "\na three-server JetStream cluster, R3 stream, one bridge as fast as it goes (servers, bridge and generator on the same cores):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tevents/s\tservers' cpu µs/ev (sum)\tbridge cpu µs/ev\t")
		for _, c := range r.Cluster {
			if c.Error != "" {
				fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\n", c.Mode, c.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t\n", c.Mode, c.EventsPerSec, c.ServersCPUusPerEv, c.BridgeCPUusPerEv)
		}
		tw.Flush()
	}
	for _, p := range r.Lossless {
		fmt.Fprintf(w, "lossless run: offered 400k/s, achieved %.0f/s, sent %d, delivered %d in %.1fs, lost %d\n", p.Achieved, p.Sent, p.Delivered, p.Seconds, p.LostActual)
	}
	for _, p := range r.Points {
		if p.Error != "" {
			fmt.Fprintf(w, "failed: %s at %s: %s\n", p.Mode, rateName(p.Offered), p.Error)
		}
	}
	if d := r.Drain; d != nil {
		if d.Error != "" {
			fmt.Fprintf(w, "drain: failed: %s\n", d.Error)
		} else {
			fmt.Fprintf(w, "drain: a %.0fs hub outage at %d events/s spooled %d events (%.0f MiB); drained in %.1fs = %.0f events/s with live events at %d/s; %d sent, %d in the hub; bridge peak RSS %.1f MiB\n",
				d.OutageSec, d.Rate, d.Backlog, d.BacklogMiB, d.Seconds, d.EventsPerSec, d.Rate, d.Sent, d.InHub, d.PeakRSSMiB)
		}
	}
	for _, p := range r.Idle {
		if p.Error != "" {
			fmt.Fprintf(w, "idle, %s: failed: %s\n", p.Config, p.Error)
			continue
		}
		fmt.Fprintf(w, "idle, %s: %.3f%% of a core over %.0fs, %.1f wake-ups/s\n", p.Config, p.CorePercent, p.Seconds, p.WakeupsPerS)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, x := range r.Ratios {
		mark := "MET "
		if !x.Holds {
			mark = "MISS"
		}
		fmt.Fprintf(w, "  %s  %-70s %10.2f  (target %s)\n", mark, x.Name, x.Value, x.Target)
	}
}
