//go:build linux

package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// This file is the bridge's lifecycle: starting every goroutine, stopping
// them in order, and the shutdown that delivers or counts what is left.

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
		r.seq.counter = s
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
