package sink

import (
	"bufio"
	"context"
	"io"
	"sync"

	"github.com/genlbridge/genlbridge/event"
)

// Writer writes every record as one JSON line to an io.Writer (standard
// output for debugging). Loss records are lines with "type":"loss".
type Writer struct {
	mu  sync.Mutex
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a sink writing JSON lines to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 1024)}
}

// Deliver writes the batch and flushes it. A write error gives up on the
// whole batch: a broken output does not heal by retrying.
func (s *Writer) Deliver(ctx context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Losses {
		s.buf = append(event.AppendLossJSON(s.buf[:0], &b.Losses[i]), '\n')
		s.w.Write(s.buf)
	}
	for i := range b.Events {
		s.buf = append(event.AppendJSON(s.buf[:0], &b.Events[i]), '\n')
		s.w.Write(s.buf)
	}
	if err := s.w.Flush(); err != nil {
		return AllUndelivered(b, err)
	}
	return nil
}

// Close flushes.
func (s *Writer) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}
