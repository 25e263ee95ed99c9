//go:build linux

package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

type sockState struct {
	arena arena // text of the events this reader decodes
	sock  *eventSocket
	token uint32 // nlmsg_seq of this socket's markers
}

// tick bounds every wait on a socket, so that a reader never depends on a
// single wake-up: it looks at the socket and its drop counter at least this often.
const tick = 250 * time.Millisecond

// Run opens the sockets, joins the groups and moves events to the sink until
// ctx ends. Then it stops reading, delivers what is queued within
// Config.ShutdownTimeout, and returns. It returns an error only when it
// cannot start or when the control plane fails; a Bridge runs once.
func (b *Bridge) Run(ctx context.Context) error {
	if b.ran.Swap(true) {
		return errors.New("bridge already ran")
	}
	cfgNS := &netlink.Config{NetNS: b.cfg.NetNS}
	query, err := genetlink.Dial(cfgNS)
	if err != nil {
		return fmt.Errorf("dial generic netlink: %w", err)
	}
	defer query.Close()
	notify, err := genetlink.Dial(cfgNS)
	if err != nil {
		return fmt.Errorf("dial generic netlink: %w", err)
	}
	defer notify.Close()
	// Large enough that a burst of registrations cannot overrun it.
	_ = notify.SetReadBuffer(1 << 20)
	if err := joinNotify(query, notify); err != nil {
		return err
	}

	for i, r := range b.readers {
		s, granted, err := openEventSocket(b.cfg.NetNS, b.cfg.ReceiveBuffer, b.cfg.ReadBatch, slotSize)
		if err != nil {
			for _, o := range b.readers[:i] {
				o.sock.close()
			}
			return fmt.Errorf("open socket for %s: %w", r.ctl.String(), err)
		}
		r.sock, r.token = s, uint32(b.startNS)^uint32(i+1)
		r.ctl.m = r
		b.log.Info("socket ready", "subscription", r.ctl.String(), "rcvbuf_requested", b.cfg.ReceiveBuffer,
			"rcvbuf_granted", granted, "events_it_holds", granted/930)
		if granted/2 < b.cfg.ReceiveBuffer {
			b.log.Warn("receive buffer smaller than requested (no CAP_NET_ADMIN?); bursts may overrun sooner",
				"subscription", r.ctl.String(), "requested", b.cfg.ReceiveBuffer, "granted", granted)
		}
	}

	ctrl := &controller{query: query, notify: notify, subs: b.ctrl, resync: b.cfg.ResyncInterval, log: b.log}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	if b.cfg.Resume != nil {
		for _, r := range b.readers {
			rp := &r.resume
			rp.bootID, rp.instance, rp.seq, rp.ok = b.cfg.Resume(b.cfg.Host, r.ctl.Family, r.ctl.Group)
		}
	}

	var readers sync.WaitGroup
	for _, r := range b.readers {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.run(readCtx)
		}()
	}
	deliverCtx, cancelDeliver := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeliver()
	batDone := make(chan struct{})
	go func() {
		defer close(batDone)
		b.bat.run(deliverCtx)
	}()
	ctrlErr := make(chan error, 1)
	go func() { ctrlErr <- ctrl.run(readCtx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-ctrlErr:
		b.log.Error("control plane failed; stopping", "err", runErr)
	}

	// Stop reading: wake every reader, wait for them, then let the batcher
	// drain the queue within the deadline.
	stopReading()
	notify.Close() // ends the controller's receive goroutine
	if runErr == nil {
		<-ctrlErr
	}
	query.Close() // only now: the controller may have been resolving
	for _, r := range b.readers {
		_ = r.sock.setDeadline(time.Unix(1, 0))
	}
	readers.Wait()
	close(b.q.ch)
	queued := b.q.depth()
	timer := time.AfterFunc(b.cfg.ShutdownTimeout, cancelDeliver)
	<-batDone
	timer.Stop()
	for _, r := range b.readers {
		r.sock.close()
	}
	st := b.Stats()
	b.log.Info("stopped", "queued_at_stop", queued, "received", st.Received, "delivered", st.Delivered,
		"lost", st.Lost, "socket_drops", st.SocketDrops)
	return runErr
}

// join, leave and mark make a reader the controller's member.
func (r *reader) join(g uint32) error  { return r.sock.join(g) }
func (r *reader) leave(g uint32) error { return r.sock.leave(g) }

// mark sends a NLMSG_NOOP to the socket itself. It reaches the reader after
// everything queued before it, which is what tells old events from the new
// registration's (their sequence starts over).
func (r *reader) mark() error {
	var m [nlmsgHdrLen]byte
	binary.NativeEndian.PutUint32(m[0:4], nlmsgHdrLen)
	binary.NativeEndian.PutUint16(m[4:6], unix.NLMSG_NOOP)
	binary.NativeEndian.PutUint32(m[8:12], r.token)
	binary.NativeEndian.PutUint32(m[12:16], r.sock.pid)
	var err error
	for try := 0; try < 50; try++ {
		var serr error
		cerr := r.sock.rc.Control(func(fd uintptr) {
			serr = unix.Sendto(int(fd), m[:], unix.MSG_DONTWAIT, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: r.sock.pid})
		})
		if err = errors.Join(cerr, serr); err == nil || !errors.Is(err, unix.EAGAIN) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // receive buffer full: the reader is draining it
	}
	return err
}

func (r *reader) isMarker(d *dgram) bool {
	return d.pid == r.sock.pid && len(d.data) == nlmsgHdrLen &&
		binary.NativeEndian.Uint16(d.data[4:6]) == unix.NLMSG_NOOP &&
		binary.NativeEndian.Uint32(d.data[8:12]) == r.token
}

// run reads the socket until ctx ends.
func (r *reader) run(ctx context.Context) {
	b := r.b
	out := make([]dgram, 0, b.cfg.ReadBatch)
	var ev event.Event
	var deadline time.Time
	for ctx.Err() == nil {
		now := time.Now()
		if now.After(deadline.Add(-tick / 2)) {
			deadline = now.Add(tick)
			_ = r.sock.setDeadline(deadline)
			// Run cancels, then sets a past deadline: checking after arming
			// ours means one of the two is always seen.
			if ctx.Err() != nil {
				return
			}
		}
		var err error
		out, err = r.sock.recv(out)
		now = time.Now()
		if d, ok := r.sock.takeEmpty(); ok {
			// Read while the socket was empty, before what recv returned
			// now arrived: drops no gap has placed are the newest events.
			r.countDrops(d)
			r.publishPendingDrops(now, true)
		}
		if err != nil {
			if ctx.Err() != nil || isClosed(err) {
				return
			}
			if !isTimeout(err) {
				b.log.Error("receive", "subscription", r.ctl.String(), "err", err)
				time.Sleep(tick)
			}
			r.refreshDrops(now)
			continue
		}
		recvNS := now.UnixNano()
		if !r.process(ctx, out, now, recvNS, &ev) {
			return
		}
		r.refreshDrops(now)
	}
}

// process handles one read batch. It returns false when ctx ended while it
// was blocked on the queue; everything read and not queued is then counted.
func (r *reader) process(ctx context.Context, out []dgram, now time.Time, recvNS int64, ev *event.Event) bool {
	b := r.b
	var taken uint64 // messages taken from the socket (Stats.Read)
	defer func() { r.read.Add(taken) }()
	for i := range out {
		d := &out[i]
		if d.pid != 0 {
			if r.isMarker(d) {
				r.newInstance(now)
				continue
			}
			if !b.cfg.AllowUserspaceSenders {
				b.ledger.add(r.lossRecord(event.ReasonSenderRejected, 1, 0, 0, recvNS), false)
				continue
			}
		}
		if d.truncated {
			taken++
			r.malformed(recvNS)
			continue
		}
		data := d.data
		for len(data) > 0 {
			msg, rest, err := nextMessage(data)
			taken++
			if err != nil {
				r.malformed(recvNS)
				break
			}
			data = rest
			if msgType(msg) < genlMinID {
				taken--
				r.ignored.Add(1)
				continue
			}
			*ev = event.Event{Host: b.cfg.Host, BootID: b.cfg.BootID, Family: r.ctl.Family, Group: r.ctl.Group, RecvNS: recvNS}
			if err := decodeMessage(msg, r.decoder, ev, &r.arena); err != nil {
				r.malformed(recvNS)
				continue
			}
			r.sequence(ev, now)
			r.received.Add(1)
			if !b.q.push(ctx, ev) {
				// Stopped while the queue was full: this event and the
				// rest of what was read never reach the sink.
				n := 1 + countMessages(data)
				for j := i + 1; j < len(out); j++ {
					if out[j].pid == 0 || b.cfg.AllowUserspaceSenders {
						n += countMessages(out[j].data)
					}
				}
				taken += uint64(n - 1)
				b.ledger.add(r.lossRecord(event.ReasonPublishFailed, uint64(n), 0, 0, recvNS), false)
				return false
			}
		}
	}
	return true
}

func (r *reader) lossRecord(reason string, count, first, last uint64, now int64) event.Loss {
	l := event.Loss{Host: r.b.cfg.Host, BootID: r.b.cfg.BootID, Family: r.ctl.Family, Group: r.ctl.Group,
		Reason: reason, Count: count, FirstSeq: first, LastSeq: last, TimeNS: now}
	if first != 0 {
		l.Instance = r.instance
	}
	return l
}

// malformed counts a message that could not be decoded. In a family with a
// sequence it is also a hole the next event shows: that gap takes it first,
// so it is not counted twice.
func (r *reader) malformed(now int64) {
	r.b.ledger.add(r.lossRecord(event.ReasonMalformed, 1, 0, 0, now), true)
	if r.kernelSeq {
		r.malformedAhead++
	}
}

// countMessages counts the netlink messages in a datagram (at least one).
func countMessages(d []byte) int {
	n := 0
	for len(d) > 0 {
		_, rest, err := nextMessage(d)
		n++
		if err != nil {
			break
		}
		d = rest
	}
	return max(n, 1)
}

// newInstance starts a new registration of the family: its sequence starts
// at 1, so the first event of it shows any gap from 1. Drops still unplaced
// stay pending: the next gap or empty socket places them (drops of the old
// registration's tail are normally placed before the marker, when the socket
// was found empty; if not, the counts stay exact and only their range is the
// new registration's).
func (r *reader) newInstance(now time.Time) {
	r.refreshDrops(now)
	r.aheadReported, r.malformedAhead = 0, 0
	r.haveSeq, r.fresh, r.lastSeq = false, true, 0
	r.instance = r.nextInstance(now)
}

// nextInstance is the receive time in ns, made larger than the previous
// instance when both fall in the same read.
func (r *reader) nextInstance(now time.Time) uint64 {
	return max(uint64(now.UnixNano()), r.instance+1)
}

// sequence stamps ev's sequence and accounts for any gap before it.
func (r *reader) sequence(ev *event.Event, now time.Time) {
	if ev.Seq == 0 {
		r.bridgeSeq++
		ev.Seq, ev.SeqSource, ev.Instance = r.bridgeSeq, event.SeqBridge, uint64(r.b.startNS)
		return
	}
	ev.SeqSource = event.SeqKernel
	r.kernelSeq = true
	switch {
	case !r.haveSeq && r.fresh:
		// The first event of a registration we saw begin.
		if ev.Seq > 1 {
			r.gap(1, ev.Seq-1, now)
		}
	case !r.haveSeq:
		r.instance = r.nextInstance(now)
		if rp := &r.resume; rp.ok && rp.bootID == r.b.cfg.BootID && ev.Seq > rp.seq {
			// The registration the last run saw went on without us.
			r.instance = rp.instance
			if ev.Seq > rp.seq+1 {
				r.gap(rp.seq+1, ev.Seq-1, now)
			}
		}
	case ev.Seq == r.lastSeq+1:
		if r.aheadReported > 0 || r.malformedAhead > 0 {
			// What was placed after lastSeq was not this sequence's (the
			// drop counter also counts other datagrams): nothing to place.
			r.aheadReported, r.malformedAhead = 0, 0
		}
	case ev.Seq > r.lastSeq+1:
		r.gap(r.lastSeq+1, ev.Seq-1, now)
	default:
		// The sequence went back without a marker: a new registration whose
		// notifications we did not see.
		r.newInstance(now)
		if ev.Seq > 1 {
			r.gap(1, ev.Seq-1, now)
		}
	}
	r.haveSeq, r.fresh, r.lastSeq = true, false, ev.Seq
	r.resume.ok = false
	ev.Instance = r.instance
}

// gap accounts for the missing sequence numbers first..last: first as drops
// already published ahead of it, then as the kernel's drops not yet placed,
// and the rest as a sequence gap. The drop counter is read when the gap shows,
// so it may include drops that a later gap will show; the counts stay exact,
// only a module's own loss racing an overrun could be labelled as the other.
func (r *reader) gap(first, last uint64, now time.Time) {
	r.refreshDrops(now)
	n := last - first + 1
	ns := now.UnixNano()
	// Messages counted as malformed were holes in this sequence too.
	if a := min(n, r.malformedAhead); a > 0 {
		r.malformedAhead -= a
		first += a
		n -= a
	}
	// Drops happen in order: those published ahead are the oldest.
	if a := min(n, r.aheadReported); a > 0 {
		r.aheadReported -= a
		first += a
		n -= a
	}
	if a := min(n, r.pendingDrops); a > 0 {
		r.b.ledger.add(r.lossRecord(event.ReasonOverrun, a, first, first+a-1, ns), true)
		r.pendingDrops -= a
		first += a
		n -= a
	}
	if n > 0 {
		r.b.ledger.add(r.lossRecord(event.ReasonSeqGap, n, first, last, ns), true)
	}
}

// refreshDrops reads the kernel's drop counter. Drops on a socket whose
// family has shown no sequence are published at once; otherwise they wait
// for the gap that places them, or for the socket to be found empty (see run).
func (r *reader) refreshDrops(now time.Time) {
	d, err := r.sock.drops()
	if err != nil {
		return
	}
	r.countDrops(d)
	if !r.kernelSeq {
		r.publishPendingDrops(now, false)
	}
}

// countDrops takes the kernel's drop counter d (which wraps at 2^32).
func (r *reader) countDrops(d uint32) {
	if delta := d - r.dropsSeen; delta != 0 {
		r.dropsSeen = d
		r.socketDrops.Add(uint64(delta))
		r.pendingDrops += uint64(delta)
	}
}

// publishPendingDrops publishes the drops no gap has placed yet. ranged says
// they are the events right after the last one read (the socket was found
// empty): they get that range, and the gap that shows them later is not
// counted again.
func (r *reader) publishPendingDrops(now time.Time, ranged bool) {
	if r.pendingDrops == 0 {
		return
	}
	var first, last uint64
	if ranged && r.haveSeq {
		first = r.lastSeq + r.aheadReported + 1
		last = first + r.pendingDrops - 1
		r.aheadReported += r.pendingDrops
	}
	r.b.ledger.add(r.lossRecord(event.ReasonOverrun, r.pendingDrops, first, last, now.UnixNano()), true)
	r.pendingDrops = 0
}
