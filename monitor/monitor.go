// Package monitor exposes a running bridge to operators: Prometheus metrics
// (names prefixed genlbridge_), /healthz and /readyz over HTTP.
//
// Counters are read from the bridge when Prometheus scrapes (bridge.Stats and
// bridge.Subscriptions), so the hot path pays nothing for them; histograms
// are fed by the bridge's OnDelivered hook from its batcher goroutine.
// A Monitor is safe for concurrent use; its HTTP server runs until Serve's
// context ends.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/genlbridge/genlbridge/spool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Source is what the monitor reads from a bridge.
type Source interface {
	Stats() bridge.Stats
	Subscriptions() []bridge.SubscriptionStatus
}

// Connectivity reports whether the sink can deliver now (nil: yes).
type Connectivity func() error

// Spool is the node's spool as the monitor reads it (spool.Spool).
type Spool interface {
	Stats() spool.Stats
	// Ready returns nil while forwarding works (or nothing waits).
	Ready() error
}

// Monitor holds the metrics registry and the readiness rules.
type Monitor struct {
	reg   *prometheus.Registry
	src   atomic.Pointer[Source]
	pprof bool
	conn  Connectivity
	// RequireJoined makes a waiting subscription unready.
	requireJoined bool
	spool         Spool
	denials       Denials
	deniedFor     time.Duration

	// stopped: the bridge has stopped and its counts are final;
	// finalScraped is closed once /metrics has served them.
	stopped      atomic.Bool
	finalScraped chan struct{}
	finalOnce    sync.Once

	batchSize    prometheus.Histogram
	publishSecs  prometheus.Histogram
	kernelToAck  prometheus.Histogram
	deliverFails prometheus.Counter
}

// Options of New.
type Options struct {
	Version string
	// Connected reports the sink's connection (nil: always connected).
	Connected Connectivity
	// RequireJoined: /readyz fails while any subscription waits for its
	// family; otherwise waiting is ready as configured (the module may load later).
	RequireJoined bool
	// Pprof adds Go's profiling endpoints under /debug/pprof/.
	Pprof bool
	// Spool, if set, is exported (genlbridge_spool_*) and makes /readyz
	// fail while forwarding is stalled.
	Spool Spool
	// Denials, if set, are exported (genlbridge_permission_denied_total)
	// and make /healthz fail while the server has refused publishes for
	// permissions for longer than DeniedFor (default a minute): a node
	// whose identity may not publish what it must is not healthy.
	Denials   Denials
	DeniedFor time.Duration
}

// Denials is what natsconn.Denials tells the monitor.
type Denials interface {
	Counts() (publish, subscribe uint64)
	Persisting(min time.Duration) (since time.Time, subject string, ok bool)
}

// New returns a Monitor with every metric registered. Call SetSource once
// the bridge exists; until then the bridge's metrics are absent and /readyz fails.
func New(o Options) *Monitor {
	m := &Monitor{reg: prometheus.NewRegistry(), conn: o.Connected, requireJoined: o.RequireJoined, pprof: o.Pprof,
		finalScraped: make(chan struct{}), spool: o.Spool, denials: o.Denials, deniedFor: o.DeniedFor}
	if m.deniedFor <= 0 {
		m.deniedFor = time.Minute
	}
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "genlbridge_batch_size_events", Help: "Events in each batch handed to the sink.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	m.publishSecs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "genlbridge_publish_duration_seconds", Help: "Time the sink took to deliver a batch, retries included.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14),
	})
	m.kernelToAck = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "genlbridge_kernel_to_ack_seconds", Help: "From the kernel's timestamp of an event to its delivery being confirmed (events that carry a timestamp).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 16),
	})
	m.deliverFails = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "genlbridge_delivery_failures_total", Help: "Deliveries the sink gave up on (each batch once).",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "genlbridge_build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": o.Version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(m.batchSize, m.publishSecs, m.kernelToAck, m.deliverFails, build, &statsCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Spool != nil {
		m.reg.MustRegister(&spoolCollector{s: o.Spool})
	}
	if o.Denials != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "genlbridge_permission_denied_total",
			Help:        "Publishes (op=publish) and subscriptions (op=subscribe) the NATS server refused for permissions; the events of refused publishes are counted as publish_denied.",
			ConstLabels: prometheus.Labels{"op": "publish"}}, func() float64 { p, _ := o.Denials.Counts(); return float64(p) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "genlbridge_permission_denied_total",
				Help:        "Publishes (op=publish) and subscriptions (op=subscribe) the NATS server refused for permissions; the events of refused publishes are counted as publish_denied.",
				ConstLabels: prometheus.Labels{"op": "subscribe"}}, func() float64 { _, sub := o.Denials.Counts(); return float64(sub) }))
	}
	return m
}

// Healthy returns nil unless the server has refused publishes for
// permissions for longer than DeniedFor.
func (m *Monitor) Healthy() error {
	if m.denials == nil {
		return nil
	}
	if since, subject, ok := m.denials.Persisting(m.deniedFor); ok {
		return fmt.Errorf("the nats server has refused publishes for permissions since %s (latest subject %s): this identity may not publish what the bridge must",
			since.UTC().Format(time.RFC3339), subject)
	}
	return nil
}

// SetStopped says the bridge has stopped: every count is final, and
// genlbridge_stopped reads 1 from now on.
func (m *Monitor) SetStopped() { m.stopped.Store(true) }

// WaitFinalScrape waits until /metrics has served the final counts once
// (after SetStopped), or ctx ends. The daemon waits so briefly at exit,
// when told to, so that whoever watches it sees where it stopped.
func (m *Monitor) WaitFinalScrape(ctx context.Context) {
	select {
	case <-m.finalScraped:
	case <-ctx.Done():
	}
}

// FinalServed reports whether /metrics has served the final counts (what
// WaitFinalScrape waits for).
func (m *Monitor) FinalServed() bool {
	select {
	case <-m.finalScraped:
		return true
	default:
		return false
	}
}

// Registry is the monitor's registry (tests, extra collectors).
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// SetSource attaches the bridge.
func (m *Monitor) SetSource(s Source) { m.src.Store(&s) }

// OnDelivered feeds the histograms; pass it as bridge.Config.OnDelivered.
func (m *Monitor) OnDelivered(b *sink.Batch, took time.Duration, err error) {
	m.batchSize.Observe(float64(len(b.Events)))
	m.publishSecs.Observe(took.Seconds())
	if err != nil {
		m.deliverFails.Inc()
		return
	}
	now := time.Now().UnixNano()
	for i := range b.Events {
		if k := b.Events[i].KernelNS; k != 0 && now > k {
			m.kernelToAck.Observe(float64(now-k) / 1e9)
		}
	}
}

var (
	descReceived = prometheus.NewDesc("genlbridge_events_received_total",
		"Events read from the kernel and decoded.", []string{"subscription"}, nil)
	descSocketDrops = prometheus.NewDesc("genlbridge_socket_drops_total",
		"Datagrams the kernel dropped on the subscription's socket (SO_MEMINFO; /proc/net/netlink Drops).", []string{"subscription"}, nil)
	descJoined = prometheus.NewDesc("genlbridge_subscription_joined",
		"1 while the subscription's group is joined, 0 while it waits for its family or the kernel refuses its join.", []string{"subscription"}, nil)
	descJoinRefused = prometheus.NewDesc("genlbridge_subscription_join_refused_total",
		"Joins of the subscription's group the kernel refused, by reason: permission (EPERM/EACCES: the group takes a capability the process lacks).",
		[]string{"subscription", "reason"}, nil)
	descJoins = prometheus.NewDesc("genlbridge_subscription_joins_total",
		"Times the subscription's group was joined (re-joins after a module reload included).", []string{"subscription"}, nil)
	descRawAttrs = prometheus.NewDesc("genlbridge_ynl_attributes_raw_total",
		"Attributes the subscription's YNL spec could not decode, kept raw in their events (\"raw\"), by reason: unknown (the spec does not know it), bad_length (its length does not fit its type), too_deep (nested deeper than the decoder follows).",
		[]string{"subscription", "reason"}, nil)
	descFallback = prometheus.NewDesc("genlbridge_ynl_generic_fallback_total",
		"Messages of a command the subscription's YNL spec has no message for, published in the generic form.", []string{"subscription"}, nil)
	descPublished = prometheus.NewDesc("genlbridge_events_published_total",
		"Events the sink delivered.", nil, nil)
	descLossRecords = prometheus.NewDesc("genlbridge_loss_records_published_total",
		"Loss records the sink delivered.", nil, nil)
	descDropped = prometheus.NewDesc("genlbridge_events_dropped_total",
		"Events lost, by reason: overrun, seq_gap, queue_full, sender_rejected, malformed, publish_failed, publish_denied, spool_full, spool_damaged.", []string{"reason"}, nil)
	descQueueDepth = prometheus.NewDesc("genlbridge_queue_depth",
		"Events waiting in the queue between readers and sink.", nil, nil)
	descQueueCap = prometheus.NewDesc("genlbridge_queue_capacity",
		"Events the queue holds at most.", nil, nil)
	descLossWaiting = prometheus.NewDesc("genlbridge_loss_records_waiting",
		"Loss records waiting for the sink now (while the spool is full, until it has room).", nil, nil)
	descLossFailed = prometheus.NewDesc("genlbridge_loss_records_failed_total",
		"Loss records the sink gave up on (past the shutdown deadline); their events are counted all the same.", nil, nil)
	descBatches = prometheus.NewDesc("genlbridge_batches_total",
		"Batches handed to the sink.", nil, nil)
	descStopped = prometheus.NewDesc("genlbridge_stopped",
		"1 once the bridge has stopped and every count is final (it is about to exit), else 0.", nil, nil)
	descConnected = prometheus.NewDesc("genlbridge_sink_connected",
		"1 while the sink is connected (for NATS: the client's connection state).", nil, nil)
)

type statsCollector struct{ m *Monitor }

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descSocketDrops, descJoined, descJoinRefused, descJoins, descRawAttrs, descFallback, descPublished,
		descLossRecords, descLossFailed, descLossWaiting, descDropped, descQueueDepth, descQueueCap, descBatches, descConnected, descStopped} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 1.0
	if c.m.conn != nil && c.m.conn() != nil {
		connected = 0
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	stopped := 0.0
	if c.m.stopped.Load() {
		stopped = 1
	}
	ch <- prometheus.MustNewConstMetric(descStopped, prometheus.GaugeValue, stopped)
	p := c.m.src.Load()
	if p == nil {
		return
	}
	src := *p
	for _, s := range src.Subscriptions() {
		name := s.Subscription.String()
		joined := 0.0
		if s.State == bridge.StateJoined {
			joined = 1
		}
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(s.Received), name)
		ch <- prometheus.MustNewConstMetric(descSocketDrops, prometheus.CounterValue, float64(s.SocketDrops), name)
		ch <- prometheus.MustNewConstMetric(descJoined, prometheus.GaugeValue, joined, name)
		ch <- prometheus.MustNewConstMetric(descJoins, prometheus.CounterValue, float64(s.Joins), name)
		ch <- prometheus.MustNewConstMetric(descJoinRefused, prometheus.CounterValue, float64(s.JoinRefused), name, bridge.RefusedPermission)
		if s.Spec != "" {
			ch <- prometheus.MustNewConstMetric(descRawAttrs, prometheus.CounterValue, float64(s.RawUnknown), name, "unknown")
			ch <- prometheus.MustNewConstMetric(descRawAttrs, prometheus.CounterValue, float64(s.RawBadLength), name, "bad_length")
			ch <- prometheus.MustNewConstMetric(descRawAttrs, prometheus.CounterValue, float64(s.RawTooDeep), name, "too_deep")
			ch <- prometheus.MustNewConstMetric(descFallback, prometheus.CounterValue, float64(s.Fallback), name)
		}
	}
	st := src.Stats()
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descLossRecords, prometheus.CounterValue, float64(st.LossRecords))
	ch <- prometheus.MustNewConstMetric(descLossFailed, prometheus.CounterValue, float64(st.LossRecordsFailed))
	ch <- prometheus.MustNewConstMetric(descLossWaiting, prometheus.GaugeValue, float64(st.LossRecordsWaiting))
	var spoolLost map[string]uint64 // events the spool had taken and lost
	if c.m.spool != nil {
		spoolLost = c.m.spool.Stats().Lost
	}
	for _, r := range event.Reasons {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Lost[r]+spoolLost[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(st.QueueDepth))
	ch <- prometheus.MustNewConstMetric(descQueueCap, prometheus.GaugeValue, float64(st.QueueCapacity))
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(st.Batches))
}

var (
	descSpoolMsgs = prometheus.NewDesc("genlbridge_spool_messages",
		"Records in the node's spool not wholly forwarded to the fleet's server: one per batch (its events' messages).", nil, nil)
	descSpoolBytes = prometheus.NewDesc("genlbridge_spool_bytes",
		"Bytes the spool takes on its disk (its segment files, forwarded records waiting for their segment to go included).", nil, nil)
	descSpoolMax = prometheus.NewDesc("genlbridge_spool_max_bytes",
		"The spool's limit (GENLBRIDGE_SPOOL_MAX_BYTES); when full, new events are counted as spool_full.", nil, nil)
	descSpoolAge = prometheus.NewDesc("genlbridge_spool_oldest_age_seconds",
		"How long the oldest record not forwarded has waited (0: none).", nil, nil)
	descSpoolFwd = prometheus.NewDesc("genlbridge_spool_forwarded_total",
		"Messages (one per event, or per batched message) forwarded from the spool and acknowledged by the fleet's server (rate: the forward rate).", nil, nil)
	descSpoolUp = prometheus.NewDesc("genlbridge_spool_forwarding",
		"1 while forwarding works or nothing waits, 0 while it is stalled (the fleet's server does not take messages).", nil, nil)
	descSpoolErr = prometheus.NewDesc("genlbridge_spool_store_errors_total",
		"Failed writes, syncs and reads of the spool's disk (full, or an I/O error); new events are counted as spool_full until a write succeeds.", nil, nil)
	descSpoolRefused = prometheus.NewDesc("genlbridge_spool_refused_total",
		"Messages the fleet's server refused for good (too large for it, a permanent error): dropped from the spool, their events counted as publish_failed and published as loss records, each logged.", nil, nil)
	descSpoolDamaged = prometheus.NewDesc("genlbridge_spool_damaged_total",
		"Records of the spool found damaged or missing on its disk (a checksum that fails, a file cut short or deleted), each logged with its place; their events are counted as spool_damaged and published as loss records.", nil, nil)
)

type spoolCollector struct{ s Spool }

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSpoolMsgs, descSpoolBytes, descSpoolMax, descSpoolAge, descSpoolFwd, descSpoolUp, descSpoolErr, descSpoolRefused, descSpoolDamaged} {
		ch <- d
	}
}

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	up := 0.0
	if st.Forwarding {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descSpoolMsgs, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(descSpoolBytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descSpoolMax, prometheus.GaugeValue, float64(st.MaxBytes))
	ch <- prometheus.MustNewConstMetric(descSpoolAge, prometheus.GaugeValue, st.OldestAge.Seconds())
	ch <- prometheus.MustNewConstMetric(descSpoolFwd, prometheus.CounterValue, float64(st.Forwarded))
	ch <- prometheus.MustNewConstMetric(descSpoolUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descSpoolErr, prometheus.CounterValue, float64(st.StoreErrors))
	ch <- prometheus.MustNewConstMetric(descSpoolRefused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(descSpoolDamaged, prometheus.CounterValue, float64(st.Damaged))
}

// Ready returns nil when the bridge is ready: the sink is connected, the
// spool (if any) forwards, no subscription's join was refused for
// permission, and every subscription is joined (or waiting, unless
// RequireJoined).
func (m *Monitor) Ready() error {
	p := m.src.Load()
	if p == nil {
		return errors.New("bridge not started")
	}
	if m.conn != nil {
		if err := m.conn(); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	if m.spool != nil {
		if err := m.spool.Ready(); err != nil {
			return err
		}
	}
	var waiting, refused []string
	for _, s := range (*p).Subscriptions() {
		switch s.State {
		case bridge.StateJoined:
		case bridge.StateRefused:
			refused = append(refused, s.Subscription.String())
		default:
			waiting = append(waiting, s.Subscription.String())
		}
	}
	// A refusal is a deployment error, not a module yet to load: never ready.
	if len(refused) > 0 {
		return fmt.Errorf("join refused for permission (a capability the process lacks): %s", strings.Join(refused, ", "))
	}
	if len(waiting) > 0 && m.requireJoined {
		return fmt.Errorf("waiting for %s", strings.Join(waiting, ", "))
	}
	return nil
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		// Final is what this scrape served: genlbridge_stopped 1 (the
		// bridge may stop while it gathers).
		var final bool
		g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			mfs, err := m.reg.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "genlbridge_stopped" && len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetGauge().GetValue() == 1 {
					final = true
				}
			}
			return mfs, err
		})
		promhttp.HandlerFor(g, promhttp.HandlerOpts{Registry: m.reg}).ServeHTTP(w, r)
		if final {
			m.finalOnce.Do(func() { close(m.finalScraped) })
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Healthy(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if m.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Listen opens addr for Serve; split from Serve so that the caller learns of
// a bad or busy address before it starts anything else.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics and health on %q: %w", addr, err)
	}
	return l, nil
}

// Serve serves Handler on l until ctx ends, then shuts the server down.
func (m *Monitor) Serve(ctx context.Context, l net.Listener, log *slog.Logger) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("serving metrics and health", "addr", l.Addr().String(), "paths", "/metrics /healthz /readyz")
	select {
	case err := <-done:
		return fmt.Errorf("metrics and health server: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	}
}

// NATSConnected reports a NATS connection's state as Connectivity.
func NATSConnected(nc interface {
	IsConnected() bool
	Status() nats.Status
}) Connectivity {
	return func() error {
		if nc.IsConnected() {
			return nil
		}
		return fmt.Errorf("nats %s", strings.ToLower(nc.Status().String()))
	}
}
