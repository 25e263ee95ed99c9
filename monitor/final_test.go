package monitor_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/monitor"
	"github.com/prometheus/client_golang/prometheus"
)

// stopDuring is a collector that stops the monitor while a scrape gathers.
type stopDuring struct {
	mon  *monitor.Monitor
	desc *prometheus.Desc
}

func (c *stopDuring) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *stopDuring) Collect(ch chan<- prometheus.Metric) {
	c.mon.SetStopped()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

// The final scrape is the first one whose body says genlbridge_stopped 1,
// even when the bridge stops while a scrape gathers: WaitFinalScrape ends
// exactly when a watcher has seen the final counts.
func TestFinalScrapeIsTheOneThatSaysStopped(t *testing.T) {
	for i := range 50 {
		mon := monitor.New(monitor.Options{Version: "test"})
		mon.Registry().MustRegister(&stopDuring{mon: mon, desc: prometheus.NewDesc("test_stopper", "stops the monitor", nil, nil)})
		srv := httptest.NewServer(mon.Handler())
		scrape := func() bool {
			resp, err := srv.Client().Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.Contains(string(b), "\ngenlbridge_stopped 1\n")
		}
		served := scrape()
		if got := mon.FinalServed(); got != served {
			t.Fatalf("run %d: the scrape served stopped=%v, WaitFinalScrape done=%v", i, served, got)
		}
		if !served {
			// The next scrape surely says it, and ends the wait.
			if !scrape() || !mon.FinalServed() {
				t.Fatalf("run %d: the second scrape did not end the wait", i)
			}
		}
		srv.Close()
	}
}
