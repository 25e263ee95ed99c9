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
// ctx ends. Then it stops: the controller first, then every socket leaves its
// group, so that the kernel adds nothing more, and what the sockets and the
// queue hold is delivered within Config.ShutdownTimeout; whatever is left
// when it passes is counted as publish_failed, as are the kernel's drops not
// yet placed. It returns an error only when it cannot start or when the
// control plane fails; a Bridge runs once.
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
	defer func() {
		for _, r := range b.readers {
			r.sock.close()
		}
	}()

	ctrl := &controller{query: query, notify: notify, subs: b.ctrl, resync: b.cfg.ResyncInterval, log: b.log}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	defer stopCtrl()

	if b.cfg.Resume != nil {
		for _, r := range b.readers {
			rp := &r.resume
			rp.bootID, rp.instance, rp.seq, rp.ok = b.cfg.Resume(b.cfg.Host, r.ctl.Family, r.ctl.Group)
		}
	}

	// deliverCtx ends only when the shutdown deadline passes: until then
	// readers wait for queue space and the batcher for the sink.
	deliverCtx, cancelDeliver := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeliver()
	drain := make(chan struct{}) // closed once every socket has left its group
	var readers sync.WaitGroup
	for _, r := range b.readers {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.run(drain, deliverCtx)
		}()
	}
	batDone := make(chan struct{})
	go func() {
		defer close(batDone)
		b.bat.run(deliverCtx)
	}()
	ctrlErr := make(chan error, 1)
	go func() { ctrlErr <- ctrl.run(ctrlCtx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-ctrlErr:
		b.log.Error("control plane failed; stopping", "err", runErr)
	}

	// Stop. The deadline covers draining the sockets and the queue.
	timer := time.AfterFunc(b.cfg.ShutdownTimeout, cancelDeliver)
	defer timer.Stop()
	queued := b.q.depth()
	stopCtrl()
	notify.Close() // ends the controller's receive goroutine
	if runErr == nil {
		<-ctrlErr
	}
	query.Close() // only now: the controller may have been resolving
	// The controller has returned: nothing joins again. Leaving the groups
	// stops the kernel from adding events; what it queued before stays in
	// the sockets, and the readers drain it.
	for _, c := range b.ctrl {
		c.leaveAll()
	}
	close(drain)
	for _, r := range b.readers {
		_ = r.sock.setDeadline(time.Unix(1, 0)) // wakes a reader waiting in recv
	}
	readers.Wait()
	close(b.q.ch)
	<-batDone
	st := b.Stats()
	var lost uint64
	for _, n := range st.Lost {
		lost += n
	}
	b.log.Info("stopped", "queued_at_stop", queued, "read", st.Read, "received", st.Received, "delivered", st.Delivered,
		"lost_total", lost, "lost", st.Lost, "accounted", st.Delivered+lost, "socket_drops", st.SocketDrops,
		"loss_records", st.LossRecords, "loss_records_failed", st.LossRecordsFailed)
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

// run reads the socket until drain is closed (the socket has left its
// group), then reads what is left without waiting and returns once the
// socket is found empty. Events wait for queue space until pushCtx ends
// (the shutdown deadline); from then on every event read is counted as
// publish_failed.
func (r *reader) run(drain <-chan struct{}, pushCtx context.Context) {
	b := r.b
	out := make([]dgram, 0, b.cfg.ReadBatch)
	var ev event.Event
	var deadline time.Time
	draining := false
	for {
		now := time.Now()
		if !draining && now.After(deadline.Add(-tick/2)) {
			deadline = now.Add(tick)
			_ = r.sock.setDeadline(deadline)
			// Run closes drain, then sets a past deadline: checking after
			// arming ours means one of the two is always seen.
		}
		if !draining {
			select {
			case <-drain:
				draining = true
			default:
			}
		}
		var err error
		empty := false
		if draining {
			out, empty, err = r.sock.recvNow(out)
		} else {
			out, err = r.sock.recv(out)
		}
		now = time.Now()
		if d, ok := r.sock.takeEmpty(); ok {
			// Read while the socket was empty, before what recv returned
			// now arrived: drops no gap has placed are the newest events.
			r.countDrops(d)
			r.publishPendingDrops(now, true)
		}
		if empty {
			// Left the group and drained: every drop has happened and is
			// now placed; nothing more can arrive.
			r.refreshDrops(now)
			r.publishPendingDrops(now, true)
			return
		}
		if err != nil {
			if isClosed(err) {
				return
			}
			if !isTimeout(err) {
				b.log.Error("receive", "subscription", r.ctl.String(), "err", err)
				if draining {
					return // the rest cannot be read; its drops are counted
				}
				time.Sleep(tick)
			}
			r.refreshDrops(now)
			continue
		}
		r.process(pushCtx, out, now, now.UnixNano(), &ev)
		r.refreshDrops(now)
	}
}

// process handles one read batch. An event waits for queue space until ctx
// ends; from then on this and every later event is counted as
// publish_failed instead (r.givenUp).
func (r *reader) process(ctx context.Context, out []dgram, now time.Time, recvNS int64, ev *event.Event) {
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
			if r.givenUp || !b.q.push(ctx, ev) {
				// Past the shutdown deadline: this event never reaches the sink.
				r.givenUp = true
				b.ledger.add(event.LossOf(ev, event.ReasonPublishFailed, recvNS), false)
			}
		}
	}
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
