package bridge

import "sync/atomic"

// reader is one subscription's receive side: its socket (sockState, per
// system), its sequencer and the state that only its goroutine touches,
// plus counters anyone may read. Its I/O loop is in reader_linux.go.
type reader struct {
	b   *Bridge
	ctl *subControl
	dec *msgDecoder
	sockState
	seq sequencer

	read     atomic.Uint64 // messages taken from the socket (Stats.Read)
	received atomic.Uint64 // of them, decoded into events
	ignored  atomic.Uint64 // netlink control messages skipped

	// givenUp: the shutdown deadline passed while an event waited for queue
	// space; every event read from then on is counted, not queued.
	givenUp bool
}
