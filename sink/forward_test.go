package sink_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/genlbridge/genlbridge/sink"
)

// TestForwardLetsGoOfWhatIsDone: once a forwarded group is done, the sink
// keeps nothing of the bytes it was given. A spooled message's subject,
// header block and payload are slices of its whole record, so a slot of the
// window that kept any of them kept a record alive: 4,096 slots of batched
// records came to 200 MiB in the bridge at full speed.
func TestForwardLetsGoOfWhatIsDone(t *testing.T) {
	_, nc := startJetStream(t)
	s := newJS(t, nc, sink.JetStreamConfig{Stream: sink.DefaultStream, Manage: true, MaxInFlight: 64})
	const groups, perGroup = 8, 16
	var records []weak.Pointer[byte]
	for g := 0; g < groups; g++ {
		// One "record" a group, each message slicing into it, as the
		// spool's forwarder gives them.
		rec := make([]byte, 1<<20)
		msgs := make([]sink.Msg, perGroup)
		off := 0
		for i := range msgs {
			subj := fmt.Appendf(rec[off:off], "genl.CONTROL_EXMPL.EXMPL_GRP.h%d", g)
			off += len(subj)
			id := fmt.Appendf(rec[off:off], "boot.CONTROL_EXMPL.EXMPL_GRP.7.%d", g*perGroup+i)
			off += len(id)
			hdr := fmt.Appendf(rec[off:off], "NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n", id)
			off += len(hdr)
			data := fmt.Appendf(rec[off:off], `{"v":2,"seq":%d}`, g*perGroup+i)
			off += len(data)
			msgs[i] = sink.Msg{Subject: unsafe.String(unsafe.SliceData(subj), len(subj)), Hdr: hdr, Data: data}
		}
		records = append(records, weak.Make(&rec[0]))
		done := make(chan error, 1)
		s.Forward(context.Background(), msgs, func(refused, unsent []int, err error) {
			if len(refused)+len(unsent) > 0 && err == nil {
				err = fmt.Errorf("refused %v, unsent %v", refused, unsent)
			}
			done <- err
		})
		if err := <-done; err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
	}
	// Every group is done: none of the records may be reachable from
	// the sink (a few GCs, as weak pointers clear at the one after).
	for range 3 {
		runtime.GC()
	}
	kept := 0
	for _, w := range records {
		if w.Value() != nil {
			kept++
		}
	}
	if kept > 0 {
		t.Fatalf("%d of %d forwarded records still reachable after their groups were done", kept, groups)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
