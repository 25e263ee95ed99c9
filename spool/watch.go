package spool

import (
	"context"
	"time"
)

// watchEvery is how often watch looks: the logs say within it when
// forwarding stops or resumes (/readyz and the metrics say it at once).
const watchEvery = 5 * time.Second

// watch is the spool's own goroutine, stopped by Close. Every watchEvery,
// and at once when the store fails, it logs forwarding stopping and
// resuming, notices a store whose JetStream was disabled, replaces a
// failed store, takes new events again once the disk has room, and starts
// the forwarder where it could not start before.
//
// A store fails for good on its first failed write (nats-server refuses
// every later one, and on a full disk even an acknowledgement is a write):
// new events are refused (spool_full) and nothing is forwarded until the
// disk has reserve bytes free; then a new store on the same directory
// takes its place, forwards what is spooled and takes new events. Open
// caps the limit below what the disk can hold, so that the spool itself
// fills its limit (spool_full, cleanly) before its disk: a full disk is
// another writer's doing.
func (s *Spool) watch() {
	defer close(s.done)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var handled uint64 // failures seen so far
	down := false      // the current store has failed; a new one is due
	startErr := ""     // why the last start of a forwarder failed, as logged
	for {
		select {
		case <-s.quit:
			return
		case <-s.kick:
		case <-t.C:
		}
		if st := s.current(); st != nil && !st.srv.JetStreamEnabled() && !down {
			s.storeError("the spool's JetStream is disabled (its store failed)")
		}
		if gen := s.failGen.Load(); gen != handled {
			handled = gen
			if !down {
				down = true
				s.log.Error("the spool's store failed: new events are counted as spool_full until it works again",
					"err", s.Stats().LastError, "dir", s.cfg.Dir)
				// What the failed store held in flight comes back now,
				// as spool_full.
				s.stopStore()
			}
		}
		if down {
			// A store on a disk without room would fail at once: wait
			// for room (another writer filled it, or it is smaller than
			// the limit). Then a new store takes events again.
			free, known := freeBytes(s.cfg.Dir)
			if known && free < s.reserve() {
				continue
			}
			if err := s.reopen(); err != nil {
				s.log.Warn("the spool's store cannot be opened again yet", "err", err)
				continue
			}
			down = false
			s.broken.Store(false)
			s.log.Info("the spool's store works again: new events are spooled", "dir", s.cfg.Dir, "free_bytes", free)
		}
		if f := s.forwarder(); f != nil && f.dead() {
			// Its stream's connection closed under it: another one takes over.
			s.mu.Lock()
			if s.fwd == f {
				s.fwd = nil
			}
			s.mu.Unlock()
			s.log.Warn("spool: the forwarder stopped; starting another")
		}
		if f := s.forwarder(); f == nil {
			// Logged when the reason changes, not every watchEvery.
			err := s.startForwarder(context.Background())
			switch {
			case err != nil && err.Error() != startErr:
				s.log.Warn("spool: cannot start forwarding yet; trying again", "err", err, "every", watchEvery)
				startErr = err.Error()
			case err == nil && startErr != "" && s.forwarder() != nil:
				st := s.Stats()
				s.log.Info("spool: forwarding to the fleet's server", "messages", st.Messages, "bytes", st.Bytes)
				startErr = ""
			}
		} else {
			f.stalledSince() // logs the changes
		}
	}
}

// reserve is the free space the disk must have before new events are
// spooled again after a failure: a sixteenth of the limit, between 1 and
// 64 MiB.
func (s *Spool) reserve() uint64 {
	return uint64(min(max(s.cfg.MaxBytes/16, 1<<20), 64<<20))
}

// stopStore stops the forwarder and the failed store's sink: batches it
// had not stored are done, with the store's error.
func (s *Spool) stopStore() {
	s.mu.Lock()
	f := s.fwd
	s.fwd = nil
	s.mu.Unlock()
	if f != nil {
		f.close()
	}
	if st := s.current(); st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = st.sink.Close(ctx)
		cancel()
	}
}

// reopen replaces the current store with a new one on the same directory.
func (s *Spool) reopen() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if old := s.current(); old != nil {
		_ = old.close(ctx)
	}
	st, err := s.openStore(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.st.Store(st)
	}
	s.mu.Unlock()
	if closed {
		return st.close(ctx)
	}
	return nil
}
