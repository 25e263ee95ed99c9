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
		point{Mode: "raw", Offered: 10000, Error: "boom"})
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
		"bridge-batch / raw ceiling (max rate)":        true,  // 0.88
		"bridge-batch / naive (max rate)":              true,  // 8.8
		"bridge-event p99 latency at 10k/s (ms)":       true,  // 2.5
		"bridge-event allocations per event at 100k/s": false, // 2.1
		"bridge peak RSS, MiB (no embedded server)":    true,
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
	for _, s := range []string{"bridge-batch", "MET ", "MISS", "failed: raw at 10k/s: boom"} {
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
