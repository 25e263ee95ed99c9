package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// Writer is the sink the bridge delivers to: each batch becomes one record
// of the log, its messages encoded once, as the fleet's server is to get
// them (subject, Nats-Msg-Id, payload), with its meta. A batch counts as
// delivered once its record is written and, with Config.Sync 0 (always),
// synced to the disk: a power cut then loses nothing the bridge counted
// delivered. Syncs are shared: one fdatasync covers every record written
// while the one before it ran.
//
// A batch the log has no room for (its limit, or its disk full) is
// refused whole with sink.ErrSpoolFull: its events are counted as
// spool_full, and its loss records wait for room. A batch of loss records
// alone may use a reserve the events may not, and when even that fails
// they go straight to the fleet's server, if it is reachable: loss records
// are never the ones given up on while they can be delivered.
//
// Its methods follow sink.Sink and the batcher's pipelined sink: Submit,
// Deliver and Flush from one goroutine at a time; done runs on the
// caller's goroutine (interval syncing, a refusal) or the syncer's.
type Writer struct {
	s    *Spool
	enc  *sink.Encoder
	meta meta
	rec  []byte
}

// Submit writes b to the log and calls done once it counts as delivered
// (see Writer), or refused.
func (w *Writer) Submit(ctx context.Context, b *sink.Batch, done func(*sink.Batch, error)) {
	s := w.s
	if s.isClosed() {
		done(b, sink.AllUndelivered(b, sink.ErrClosed))
		return
	}
	if s.sy.always && !s.sy.waitRoom(ctx) {
		done(b, sink.AllUndelivered(b, ctx.Err()))
		return
	}
	seq, err := w.write(b)
	if err != nil {
		if len(b.Events) == 0 && s.direct(ctx, w.enc, b) == nil {
			done(b, nil)
			return
		}
		done(b, sink.AllUndelivered(b, err))
		return
	}
	if s.sy.always {
		s.sy.enqueue(seq, b, done)
		return
	}
	s.sy.wrote()
	done(b, nil)
}

// Deliver is Submit, waiting for the result.
func (w *Writer) Deliver(ctx context.Context, b *sink.Batch) error {
	result := make(chan error, 1)
	w.Submit(ctx, b, func(_ *sink.Batch, err error) { result <- err })
	return <-result
}

// Flush syncs what is written and waits until every batch submitted is
// done.
func (w *Writer) Flush(ctx context.Context) error {
	w.s.sy.flush()
	return nil
}

// Close does nothing: the Spool closes the log.
func (w *Writer) Close(context.Context) error { return nil }

// write encodes b into a record and appends it to the log, or returns
// why it cannot (wrapping sink.ErrSpoolFull).
func (w *Writer) write(b *sink.Batch) (uint64, error) {
	s := w.s
	msgs := w.enc.Encode(b, s.hubMaxPayload())
	s.marksMu.Lock()
	w.meta.build(b, msgs, s.coveredLocked)
	s.marksMu.Unlock()
	rec := beginRecord(w.rec)
	rec = appendMeta(rec, &w.meta)
	metaEnd := len(rec)
	rec = appendPackHeader(rec)
	for i := range msgs {
		m := &msgs[i]
		rec = appendPacked(rec, m.Subject, m.Hdr, m.Data)
	}
	w.rec = rec
	if err := s.room(len(rec), len(b.Events) == 0); err != nil {
		return 0, err
	}
	seq := s.seg.next.Load()
	now := time.Now().UnixNano()
	sealRecord(rec, seq, now, metaEnd)
	seg, off, err := s.seg.append(rec)
	if err != nil {
		s.storeFailed(err)
		return 0, fmt.Errorf("%w: %v", sink.ErrSpoolFull, err)
	}
	s.tail.put(seg, off, rec)
	s.wroteBytes(len(rec))
	s.marksMu.Lock()
	s.noteLocked(&w.meta, seq)
	s.marksMu.Unlock()
	s.appended()
	return seq, nil
}

// coveredLocked is what the log covered of k's instance so far. Called
// with marksMu held.
func (s *Spool) coveredLocked(k markKey) uint64 {
	if m := s.marks[k]; m != nil {
		return m.written
	}
	return 0
}

// noteLocked records what record seq, described by m, covers. Called with
// marksMu held.
func (s *Spool) noteLocked(m *meta, seq uint64) {
	for i := range m.Parts {
		p := &m.Parts[i]
		k := m.markKey(p)
		ms := s.marks[k]
		if ms == nil {
			ms = &markState{}
			s.marks[k] = ms
		}
		if p.Kind == partEvents {
			ms.kernel = p.Kernel
		}
		ms.written = max(ms.written, p.Last)
		ms.record = seq
	}
	pruneMarks(s.marks)
}

// directWait bounds how long a batch of loss records waits to go straight
// to the fleet's server (the batcher waits meanwhile).
const directWait = 2 * time.Second

// direct publishes a batch of loss records straight to the fleet's
// server, through the forwarder, when the log cannot take it and the
// server takes messages: loss records are not given up on while the
// server is reachable. It returns nil once the server has them; else the
// batcher keeps them for later.
func (s *Spool) direct(ctx context.Context, enc *sink.Encoder, b *sink.Batch) error {
	f := s.forwarder()
	if f == nil || f.dead() || !f.stalledSince().IsZero() {
		return errors.New("not forwarding")
	}
	ctx, cancel := context.WithTimeout(ctx, directWait)
	defer cancel()
	encoded := enc.Encode(b, s.hubMaxPayload())
	msgs := make([]sink.Msg, len(encoded))
	for i := range encoded {
		m := &encoded[i]
		msgs[i] = sink.Msg{Subject: m.Subject, Hdr: append([]byte(nil), m.Hdr...), Data: append([]byte(nil), m.Data...)}
	}
	return f.urgentSend(ctx, msgs)
}

// lossMsgs encodes loss records into messages of their own (a copy).
func lossMsgs(enc *sink.Encoder, losses []event.Loss, maxPayload int) []sink.Msg {
	encoded := enc.Encode(&sink.Batch{Losses: losses}, maxPayload)
	var buf []byte
	for i := range encoded {
		buf = append(buf, encoded[i].Hdr...)
		buf = append(buf, encoded[i].Data...)
	}
	msgs := make([]sink.Msg, len(encoded))
	at := 0
	for i := range encoded {
		m := &encoded[i]
		hdr := buf[at : at+len(m.Hdr)]
		at += len(m.Hdr)
		data := buf[at : at+len(m.Data)]
		at += len(m.Data)
		msgs[i] = sink.Msg{Subject: m.Subject, Hdr: hdr, Data: data}
	}
	return msgs
}
