// Package bridge reads generic netlink multicast groups and moves their
// messages, decoded and stamped with metadata, through a bounded queue into
// batches that a sink.Sink delivers.
//
// Data flows one way: kernel socket -> reader (one goroutine per
// subscription) -> bounded queue -> batcher (one goroutine) -> sink. A
// controller goroutine joins the groups by name and re-joins them when a
// family is registered again. Every goroutine is started and stopped by
// Bridge.Run; none outlives it.
//
// Nothing is lost silently: the kernel's drop counter, sequence gaps, queue
// drops, rejected senders, malformed messages and failed deliveries are each
// counted by reason (Stats) and, where they are holes in the stream, published
// in-band as event.Loss records ahead of the events that follow them.
//
// The receive path (recvmmsg through the Go netpoller) is Linux-only; on
// other systems Run returns an error.
package bridge

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/genlbridge/genlbridge/internal/opt"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/genlbridge/genlbridge/ynl"
)

// Config is what a Bridge needs. The zero value of a field takes the
// documented default (see Defaults).
type Config struct {
	// Subscriptions to join; at least one.
	Subscriptions []Subscription
	// Specs are the YNL specs that decode the subscriptions' families (see
	// Subscription.Decoder); nil: only the embedded CONTROL_EXMPL spec.
	Specs *ynl.Registry
	// Host and BootID are stamped on every event.
	Host   string
	BootID string
	// NetNS is a file descriptor of the network namespace to open sockets in
	// (0: the caller's). Families that are not netns-aware exist only in the
	// initial namespace.
	NetNS int
	// ReceiveBuffer is the socket receive buffer requested, in bytes
	// (SO_RCVBUFFORCE, falling back to SO_RCVBUF).
	ReceiveBuffer int
	// AllowUserspaceSenders accepts messages that a userspace process sent to
	// the group (tests and benchmarks); off, they are counted and dropped.
	AllowUserspaceSenders bool
	// QueueSize bounds the queue between readers and batcher, in events.
	QueueSize int
	// QueuePolicy is PolicyBlock, PolicyDropNewest or PolicyDropOldest.
	QueuePolicy string
	// BatchEvents, BatchBytes and Linger cut batches: by count, by estimated
	// encoded size, and by the time the first event of a batch may wait.
	BatchEvents int
	BatchBytes  int
	Linger      time.Duration
	// ReadBatch is how many datagrams one recvmmsg call reads at most.
	ReadBatch int
	// ResyncInterval is how often every subscription is resolved again, in
	// case a registration notification was lost.
	ResyncInterval time.Duration
	// ShutdownTimeout bounds the delivery of what is queued once Run's
	// context ends.
	ShutdownTimeout time.Duration
	// Resume, if set, says where a previous run stopped: the boot id,
	// instance and kernel sequence of the last event of host's family/group
	// that reached the sink (ok false: unknown). Each subscription's reader
	// calls it once, from its own goroutine, before it reads its socket
	// (which the controller may have joined already: the kernel queues the
	// events there while it waits). When the first event's boot id is the
	// same and its sequence is past the stored one, the registration went
	// on while nobody listened: the events in between are published as a
	// seq_gap loss and the stored instance is kept. A sequence at or below
	// the stored one is a new registration (the module restarts at 1).
	Resume func(host, family, group string) (bootID string, instance, seq uint64, ok bool)
	Logger *slog.Logger
	// OnDelivered, if set, is called by the batcher goroutine after each
	// delivery attempt with the batch, how long the sink took and its error.
	// It must not keep b or block (metrics).
	OnDelivered func(b *sink.Batch, took time.Duration, err error)
}

// Defaults returns the default configuration (without subscriptions).
func Defaults() Config {
	return Config{
		ReceiveBuffer:   64 << 20,
		QueueSize:       16384,
		QueuePolicy:     PolicyBlock,
		BatchEvents:     1024,
		BatchBytes:      512 << 10,
		Linger:          time.Millisecond,
		ReadBatch:       64,
		ResyncInterval:  30 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// slotSize is the receive buffer of one datagram; longer ones are truncated
// and counted as malformed. Multicast notifications are far smaller.
const slotSize = 16 << 10

// Bridge moves events from the kernel to a sink. Create it with New, run it
// once with Run; Stats and Subscriptions may be called at any time from any
// goroutine.
type Bridge struct {
	cfg    Config
	sink   sink.Sink
	log    *slog.Logger
	ledger *ledger
	q      *queue
	bat    *batcher
	ctrl   []*subControl
	// startNS identifies this run of the bridge in events whose sequence
	// the bridge assigns.
	startNS int64
	readers []*reader // one per subscription, same order as ctrl
	ran     atomic.Bool
}

// New checks cfg and returns a Bridge that delivers to s.
func New(cfg Config, s sink.Sink) (*Bridge, error) {
	d := Defaults()
	opt.Default(&cfg.ReceiveBuffer, d.ReceiveBuffer)
	opt.Default(&cfg.QueueSize, d.QueueSize)
	opt.Default(&cfg.QueuePolicy, d.QueuePolicy)
	opt.Default(&cfg.BatchEvents, d.BatchEvents)
	opt.Default(&cfg.BatchBytes, d.BatchBytes)
	opt.Default(&cfg.Linger, d.Linger)
	opt.Default(&cfg.ReadBatch, d.ReadBatch)
	opt.Default(&cfg.ResyncInterval, d.ResyncInterval)
	opt.Default(&cfg.ShutdownTimeout, d.ShutdownTimeout)
	opt.Default(&cfg.Logger, slog.Default())
	if s == nil {
		return nil, errors.New("no sink")
	}
	if len(cfg.Subscriptions) == 0 {
		return nil, errors.New("no subscription: want at least one family/group")
	}
	if cfg.Linger < 0 || cfg.ResyncInterval < 0 || cfg.ShutdownTimeout < 0 || cfg.ReceiveBuffer < 0 {
		return nil, fmt.Errorf("linger %v, resync interval %v, shutdown timeout %v, receive buffer %d: none may be negative",
			cfg.Linger, cfg.ResyncInterval, cfg.ShutdownTimeout, cfg.ReceiveBuffer)
	}
	if cfg.ReceiveBuffer > 1<<30 {
		return nil, fmt.Errorf("receive buffer %d: want at most 1GiB, the most a socket buffer can be", cfg.ReceiveBuffer)
	}
	if cfg.BatchEvents < 1 || cfg.BatchBytes < 1 || cfg.ReadBatch < 1 || cfg.ReadBatch > 1024 {
		return nil, fmt.Errorf("batch limits %d events, %d bytes, read batch %d: want positive, read batch at most 1024",
			cfg.BatchEvents, cfg.BatchBytes, cfg.ReadBatch)
	}
	if cfg.Host == "" {
		cfg.Host = Hostname()
	}
	if cfg.BootID == "" {
		cfg.BootID = BootID()
	}
	l := newLedger()
	q, err := newQueue(cfg.QueueSize, cfg.QueuePolicy, l)
	if err != nil {
		return nil, err
	}
	b := &Bridge{cfg: cfg, sink: s, log: cfg.Logger, ledger: l, q: q, startNS: time.Now().UnixNano()}
	b.bat = &batcher{q: q, ledger: l, sink: s, maxEvents: cfg.BatchEvents, maxBytes: cfg.BatchBytes, linger: cfg.Linger,
		log: cfg.Logger, observe: cfg.OnDelivered}
	for _, sub := range cfg.Subscriptions {
		fam, origin, err := resolveDecoder(sub, cfg.Specs)
		if err != nil {
			return nil, err
		}
		c := &subControl{Subscription: sub, state: StateWaiting, spec: fam, specOrigin: origin}
		b.ctrl = append(b.ctrl, c)
		if fam != nil {
			cfg.Logger.Info("decoding with a YNL spec", "subscription", sub.String(), "spec", origin, "format", cmp.Or(fam.Format, event.FormatYNL))
			for _, w := range fam.Warnings() {
				cfg.Logger.Warn("the spec has what this decoder does not know", "subscription", sub.String(), "warning", w)
			}
		} else {
			cfg.Logger.Info("decoding generically (no YNL spec of the family)", "subscription", sub.String())
		}
		r := &reader{b: b, ctl: c, dec: newMsgDecoder(fam, sub.Group)}
		r.seq = sequencer{tmpl: event.Loss{Host: cfg.Host, BootID: cfg.BootID, Family: sub.Family, Group: sub.Group},
			runInstance: uint64(b.startNS / 1000), losses: l}
		b.readers = append(b.readers, r)
	}
	return b, nil
}

// Subscriptions returns the state of every subscription.
func (b *Bridge) Subscriptions() []SubscriptionStatus {
	out := make([]SubscriptionStatus, len(b.ctrl))
	for i, s := range b.ctrl {
		out[i] = s.status()
		out[i].Received = b.readers[i].received.Load()
		out[i].SocketDrops = b.readers[i].seq.socketDrops.Load()
		d := b.readers[i].dec
		out[i].RawUnknown, out[i].RawBadLength, out[i].RawTooDeep = d.rawUnknown.Load(), d.rawBadLength.Load(), d.rawTooDeep.Load()
		out[i].Fallback = d.fallback.Load()
	}
	return out
}

// Stats counts what went through the bridge since New.
type Stats struct {
	// Read counts messages taken from the sockets (control messages and
	// rejected senders aside); Received those of them decoded into events.
	// Every message read ends up delivered or counted: Read == Delivered +
	// Lost[queue_full, malformed, publish_failed, spool_full] once the bridge has stopped.
	Read     uint64
	Received uint64
	// QueueCapacity is the queue's size.
	QueueCapacity int
	// Delivered counts events the sink delivered; LossRecords the loss
	// records it delivered.
	Delivered   uint64
	LossRecords uint64
	// LossRecordsFailed counts loss records the sink gave up on (at shutdown).
	LossRecordsFailed uint64
	// LossRecordsWaiting is the number of loss records waiting for the
	// sink now (while the spool is full they wait for room).
	LossRecordsWaiting int
	// Lost counts lost events by reason (event.Reason*).
	Lost map[string]uint64
	// SocketDrops is the kernel's drop count summed over the sockets.
	SocketDrops uint64
	// Ignored counts netlink control messages (NOOP, DONE, ...) skipped.
	Ignored uint64
	// QueueDepth is the number of events queued now.
	QueueDepth int
	Batches    uint64
}

// Stats returns the counters. Safe to call at any time.
func (b *Bridge) Stats() Stats {
	st := Stats{
		Delivered:          b.bat.delivered.Load(),
		LossRecords:        b.bat.lossDelivered.Load(),
		LossRecordsFailed:  b.bat.lossFailed.Load(),
		LossRecordsWaiting: b.ledger.waiting(),
		Lost:               b.ledger.countsByReason(),
		QueueDepth:         b.q.depth(),
		QueueCapacity:      cap(b.q.ch),
		Batches:            b.bat.batches.Load(),
	}
	for _, r := range b.readers {
		st.Read += r.read.Load()
		st.Received += r.received.Load()
		st.SocketDrops += r.seq.socketDrops.Load()
		st.Ignored += r.ignored.Load()
	}
	return st
}

// Hostname returns NODE_NAME if set (Kubernetes' downward API), else the
// kernel's hostname.
func Hostname() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// BootID returns /proc/sys/kernel/random/boot_id, or "" when it cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
