package spool

import (
	"testing"

	"github.com/genlbridge/genlbridge/sink"
)

// A reader at the end of a segment the forwarder deleted meanwhile (every
// record of it forwarded) goes on to the next one: it does not take the
// end of a deleted segment for the end of the log.
func TestScannerPastADeletedSegment(t *testing.T) {
	dir := t.TempDir()
	l, _, err := openLog(dir, 1, 1, 0) // a record a segment
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	for i := range 3 {
		if _, _, err := l.append(buildRecord(&sink.Batch{Events: testEvents("h", uint64(1+10*i), 10)}, uint64(i+1), false, nil)); err != nil {
			t.Fatal(err)
		}
	}
	sc := newScanner(l, 1)
	defer sc.close()
	if it, ok, err := sc.next(); !ok || err != nil || it.rec.seq != 1 {
		t.Fatalf("first record: %+v %v %v", it, ok, err)
	}
	if n, err := l.dropBefore(2); n != 1 || err != nil {
		t.Fatalf("dropped %d segments: %v", n, err)
	}
	for want := uint64(2); want <= 3; want++ {
		it, ok, err := sc.next()
		if !ok || err != nil || it.kind != itemRecord || it.rec.seq != want {
			t.Fatalf("after the deletion: %+v %v %v, want record %d", it, ok, err, want)
		}
	}
	if _, ok, _ := sc.next(); ok {
		t.Fatal("a record past the end")
	}
}
