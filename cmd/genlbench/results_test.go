//go:build linux

package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummaryAndTargets(t *testing.T) {
	r := &results{Machine: "test"}
	for i, eps := range []float64{900e3, 1000e3, 1100e3} {
		r.Points = append(r.Points, point{Mode: "raw", Offered: 0, Sent: 100, Delivered: 100, EventsPerSec: eps, PeakRSSMiB: float64(10 + i)})
	}
	for _, eps := range []float64{880e3, 870e3, 990e3} {
		r.Points = append(r.Points, point{Mode: "bridge-batch", Offered: 0, Sent: 100, Delivered: 100, EventsPerSec: eps, PeakRSSMiB: 30})
	}
	r.Points = append(r.Points, point{Mode: "naive", Offered: 0, EventsPerSec: 100e3, Sent: 100, Delivered: 90, LostActual: 10},
		point{Mode: "bridge-event", Offered: 10000, EventsPerSec: 10e3, P50us: 1200, P99us: 2500, P999us: 4000, Sent: 100, Delivered: 100},
		point{Mode: "bridge-event", Offered: 100000, EventsPerSec: 99e3, AllocsPerEv: 2.1, Sent: 100, Delivered: 100},
		point{Mode: "raw", Offered: 10000, Error: "boom"},
		point{Mode: "bridge-js", Offered: 0, EventsPerSec: 100e3, Sent: 100, Delivered: 100},
		point{Mode: "bridge-spool", Offered: 0, EventsPerSec: 85e3, Sent: 100, Delivered: 100},
		point{Mode: "bridge-spool", Offered: 10000, EventsPerSec: 10e3, P99us: 12000, Sent: 100, Delivered: 100})
	r.Drain = &drain{OutageSec: 60, Rate: 10000, Backlog: 600000, Seconds: 15, EventsPerSec: 40000, Sent: 750000, InHub: 750000}
	r.Idle = []idle{{Config: idleSpool, Seconds: 60, CorePercent: 0.3, WakeupsPerS: 40},
		{Config: "embedded server (no GENLBRIDGE_NATS_URL)", Error: "no luck"}}
	r.Lossless = []point{{Mode: "bridge-event", Offered: 400000, Sent: 4000000, Delivered: 4000000, Achieved: 250000}}
	r.summarize()
	var raw, batch *summary
	for i := range r.Summary {
		switch r.Summary[i].Mode {
		case "raw":
			raw = &r.Summary[i]
		case "bridge-batch":
			batch = &r.Summary[i]
		}
	}
	if raw == nil || raw.EventsPerSec != 1000e3 || raw.MinEPS != 900e3 || raw.MaxEPS != 1100e3 || raw.Runs != 3 || raw.PeakRSSMiB != 12 {
		t.Fatalf("raw summary %+v", raw)
	}
	if batch.EventsPerSec != 880e3 {
		t.Fatalf("batch median %v", batch.EventsPerSec)
	}
	want := map[string]bool{
		"bridge-batch / raw ceiling (max rate)":                              true,  // 0.88
		"bridge-batch / naive (max rate)":                                    true,  // 8.8
		"bridge-event p99 latency at 10k/s (ms)":                             true,  // 2.5
		"bridge-event allocations per event at 100k/s":                       false, // 2.1
		"bridge peak RSS, MiB (no embedded server)":                          true,
		"bridge-spool / bridge-js, end to end into JetStream (max rate)":     true,  // 0.85
		"bridge-spool p99 latency kernel -> subscriber at 10k/s (ms)":        false, // 12
		"spool drain after a 60s outage at 10k/s, live events on (events/s)": true,  // 40000
		"idle CPU with the spool on, % of a core":                            false, // 0.3
	}
	got := map[string]bool{}
	for _, x := range r.Ratios {
		got[x.Name] = x.Holds
	}
	for name, holds := range want {
		if h, ok := got[name]; !ok || h != holds {
			t.Errorf("target %q: holds=%v present=%v, want holds=%v", name, h, ok, holds)
		}
	}
	var out bytes.Buffer
	r.print(&out)
	for _, s := range []string{"bridge-batch", "MET ", "MISS", "failed: raw at 10k/s: boom", "drained in 15.0s = 40000 events/s",
		"idle, " + idleSpool + ": 0.300% of a core over 60s, 40.0 wake-ups/s", "idle, embedded server (no GENLBRIDGE_NATS_URL): failed: no luck"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := drawChart(r, path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != 1200 {
		t.Fatalf("chart: %v %v", err, img.Bounds())
	}
}

func TestQuantileAndKernelNS(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	if quantile(v, 0.5) != 3 || quantile(v, 0.99) != 5 || quantile(nil, 0.5) != 0 {
		t.Fatal("quantile")
	}
	if v[0] != 5 {
		t.Fatal("quantile sorted its input")
	}
}
