// Package event holds what flows from the kernel to the sinks: the Event a
// generic netlink multicast message becomes, the Loss record that marks a hole
// in the stream, and their JSON encoding.
//
// Values are plain data. An Event or Loss is owned by whoever holds it; the
// bridge hands batches of them to one sink at a time and does not touch them
// while the sink works. Strings in an Event that are the same for every event
// of a subscription (Host, BootID, Family, Group) are shared, not copied.
package event

// Format says which schema an event was decoded with.
const (
	// FormatExmpl is the CONTROL_EXMPL module's schema: one attribute per field.
	FormatExmpl = "exmpl"
	// FormatSeed is the seed module's payload: attribute 1 alone, a fixed
	// 50-byte buffer "Hello from kernel at jiffies N\0<garbage>".
	FormatSeed = "seed"
	// FormatGeneric keeps every attribute as type number -> bytes.
	FormatGeneric = "generic"
	// FormatYNL is decoded with the family's YNL spec: Op names the
	// message, Fields holds its attributes by name.
	FormatYNL = "ynl"
)

// Sequence sources.
const (
	// SeqKernel: Seq is the module's own counter (SEQ attribute), so a gap is a loss.
	SeqKernel = "kernel"
	// SeqBridge: the family carries no sequence; Seq counts the events this
	// bridge received on the subscription, starting at 1.
	SeqBridge = "bridge"
)

// Version is the format of the JSON records AppendJSON and AppendLossJSON
// write, their "v" field. 2: 64-bit integers above 2^53-1 as strings,
// times in RFC 3339, instances in µs. Records without "v" are version 1
// (times and instances in ns, as JSON numbers); UnmarshalJSON reads both.
const Version = 2

// Event is one generic netlink multicast message with its metadata.
// Zero means "unknown" for Jiffies, KernelNS and Seq (a kernel's 64-bit jiffies
// start near 2^32, sequences start at 1). Its JSON form is AppendJSON's
// (README.md, "The event format"), not encoding/json's reflection of the
// struct.
type Event struct {
	Host      string
	BootID    string
	Family    string
	Group     string
	Cmd       uint8
	Version   uint8
	Seq       uint64
	SeqSource string
	// Instance identifies what Seq counts within: the family registration
	// the bridge saw (SeqKernel) or the bridge's run (SeqBridge), in µs
	// since the epoch of when it began (a JSON number any language holds
	// exactly). It changes when a module is reloaded or the bridge
	// restarts, so (BootID, Family, Group, Instance, Seq) is unique.
	Instance uint64
	Jiffies  uint64
	// KernelNS is the kernel's wall-clock time of the event, ns since the
	// epoch: JSON "kernel_time".
	KernelNS int64
	// RecvNS is when the bridge read the event from its socket, ns since the
	// epoch: JSON "recv_time".
	RecvNS int64
	Format string
	// Op is the name of a FormatYNL event's message, its spec's operation
	// (e.g. "dev-add-ntf").
	Op  string
	Msg string
	// Attrs holds every attribute of a FormatGeneric event, in wire order:
	// JSON "attrs", an array of {"type":N,"data":"<base64>"}.
	Attrs []Attr
	// Fields holds a FormatYNL event's attributes by their spec's names, as
	// the text of one JSON object: JSON "attrs".
	Fields []byte
	// Raw lists the attributes of a FormatYNL event its spec could not
	// decode (unknown, or of a length that does not fit their type), as
	// the text of one JSON array of {"path","type","data"}: JSON "raw".
	Raw []byte
}

// Attr is one netlink attribute kept as it was on the wire. Type includes the
// NLA_F_NESTED and NLA_F_NET_BYTEORDER flag bits.
type Attr struct {
	Type uint16 `json:"type"`
	Data []byte `json:"data"`
}

// Loss reasons. Every event lost anywhere is counted under exactly one of them.
const (
	// ReasonOverrun: the kernel dropped events because the socket's receive
	// buffer was full (counted exactly from SO_MEMINFO).
	ReasonOverrun = "overrun"
	// ReasonSeqGap: the module's sequence skipped numbers that no overrun
	// explains (the module dropped them, or the bridge was not listening).
	ReasonSeqGap = "seq_gap"
	// ReasonQueueFull: the bridge's queue was full and its policy dropped events.
	ReasonQueueFull = "queue_full"
	// ReasonSenderRejected: a message came from a userspace sender and such
	// senders are not allowed.
	ReasonSenderRejected = "sender_rejected"
	// ReasonMalformed: a message could not be decoded (truncated, bad lengths).
	ReasonMalformed = "malformed"
	// ReasonPublishFailed: the sink gave up delivering events: at shutdown,
	// once the deadline has passed.
	ReasonPublishFailed = "publish_failed"
	// ReasonPublishDenied: the server refused the events' messages for
	// permissions: the bridge's identity may not publish on their subject
	// (a node name that is not the one its credentials are for).
	ReasonPublishDenied = "publish_denied"
	// ReasonSpoolFull: the node's spool was full (GENLBRIDGE_SPOOL_MAX_BYTES,
	// or its disk) while the fleet's server could not take events: new
	// events were dropped; nothing already spooled was.
	ReasonSpoolFull = "spool_full"
	// ReasonSpoolDamaged: events the node's spool had taken were found
	// damaged or missing on its disk (a checksum that fails, a file cut
	// short or deleted) before they were forwarded.
	ReasonSpoolDamaged = "spool_damaged"
)

// Reasons lists every loss reason, for metrics and docs.
var Reasons = []string{ReasonOverrun, ReasonSeqGap, ReasonQueueFull, ReasonSenderRejected, ReasonMalformed, ReasonPublishFailed,
	ReasonPublishDenied, ReasonSpoolFull, ReasonSpoolDamaged}

// Loss marks events that did not make it, published in-band next to the
// events so consumers see holes in the stream itself. FirstSeq and LastSeq
// bound the lost sequence numbers when they are known (both zero otherwise).
// Its JSON form is AppendLossJSON's.
type Loss struct {
	Host     string
	BootID   string
	Family   string
	Group    string
	Reason   string
	Count    uint64
	FirstSeq uint64
	LastSeq  uint64
	// Instance is the Event.Instance the range belongs to (0 without a range).
	Instance uint64
	// TimeNS is when the bridge noticed the loss, ns since the epoch: JSON
	// "time".
	TimeNS int64
}

// LossOf is the loss record of one event e lost for reason at time now. It
// carries e's sequence number and instance when the module numbered the event
// (SeqKernel); a sequence the bridge assigned is no position in the module's
// stream, so such a record carries no range.
func LossOf(e *Event, reason string, now int64) Loss {
	l := Loss{Host: e.Host, BootID: e.BootID, Family: e.Family, Group: e.Group, Reason: reason, Count: 1, TimeNS: now}
	if e.SeqSource == SeqKernel && e.Seq != 0 {
		l.FirstSeq, l.LastSeq, l.Instance = e.Seq, e.Seq, e.Instance
	}
	return l
}
