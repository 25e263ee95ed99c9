//go:build linux

package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"golang.org/x/sys/unix"
)

type sockState struct {
	arena arena // text of the events this reader decodes
	sock  *eventSocket
	token uint32 // nlmsg_seq of this socket's markers
}

// tick bounds every wait on a socket, so that a reader never depends on a
// single wake-up: it looks at the socket and its drop counter at least this
// often while events come. On a quiet socket the wait doubles with every
// wait that ends with nothing read, up to idleTick: an idle daemon wakes
// rarely (a drop without an event to show it, an skb the kernel could not
// allocate, is then counted within idleTick). The first event read brings
// the wait back to tick.
const (
	tick     = 250 * time.Millisecond
	idleTick = 4 * time.Second
)

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
	if b.cfg.Resume != nil {
		// Where the last run stopped: asked here, not before joining, so
		// that a slow answer (the fleet's server being waited for) leaves
		// the kernel's events in the socket rather than unread.
		rp := &r.seq.resume
		rp.bootID, rp.instance, rp.seq, rp.ok = b.cfg.Resume(b.cfg.Host, r.ctl.Family, r.ctl.Group)
	}
	out := make([]dgram, 0, b.cfg.ReadBatch)
	readPause := min(b.cfg.Linger/lingerSlices, maxReadPause)
	var ev event.Event
	var deadline time.Time
	wait := tick
	draining := false
	for {
		now := time.Now()
		if !draining && now.After(deadline.Add(-wait/2)) {
			deadline = now.Add(wait)
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
			r.seq.Empty(d, now)
		}
		if empty {
			// Left the group and drained: every drop has happened and is
			// now placed; nothing more can arrive.
			if d, err := r.sock.drops(); err == nil {
				r.seq.Empty(d, now)
			}
			r.seq.Final(now)
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
			} else {
				wait = min(2*wait, idleTick) // a quiet socket
			}
			r.seq.Drops(now)
			continue
		}
		wait = tick
		r.process(pushCtx, out, now, now.UnixNano(), &ev)
		r.seq.Drops(now)
		if len(out) < cap(out) && readPause > 0 && !draining {
			// A short read: the socket is nearly empty. Events wait for
			// the batch's linger anyway, so they may wait in the socket
			// a slice of it too, and be read several at a time, instead
			// of waking the reader for each one.
			time.Sleep(readPause)
		}
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
				r.seq.Marker(now)
				continue
			}
			if !b.cfg.AllowUserspaceSenders {
				b.ledger.add(r.seq.record(event.ReasonSenderRejected, 1, 0, 0, recvNS), false)
				continue
			}
		}
		if d.truncated {
			taken++
			r.seq.Malformed(now)
			continue
		}
		data := d.data
		for len(data) > 0 {
			msg, rest, err := nextMessage(data)
			taken++
			if err != nil {
				r.seq.Malformed(now)
				break
			}
			data = rest
			if msgType(msg) < genlMinID {
				taken--
				r.ignored.Add(1)
				continue
			}
			*ev = event.Event{Host: b.cfg.Host, BootID: b.cfg.BootID, Family: r.ctl.Family, Group: r.ctl.Group, RecvNS: recvNS}
			if err := r.dec.decode(msg, ev, &r.arena); err != nil {
				r.seq.Malformed(now)
				continue
			}
			r.seq.Event(ev, now)
			r.received.Add(1)
			if r.givenUp || !b.q.push(ctx, ev) {
				// Past the shutdown deadline: this event never reaches the sink.
				r.givenUp = true
				b.ledger.add(event.LossOf(ev, event.ReasonPublishFailed, recvNS), false)
			}
		}
	}
}
