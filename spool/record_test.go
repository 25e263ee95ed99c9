package spool

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
)

// testEvents makes n module-shaped events of host from seq first.
func testEvents(host string, first uint64, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Host: host, BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Cmd: 1, Version: 1,
			Seq: first + uint64(i), SeqSource: event.SeqKernel, Instance: 5, Format: event.FormatExmpl, Msg: fmt.Sprintf("event %d", first+uint64(i))}
	}
	return evs
}

func templates() (sink.Template, sink.Template) {
	e, _ := sink.ParseTemplate(sink.DefaultSubject)
	l, _ := sink.ParseTemplate(sink.DefaultLossSubject)
	return e, l
}

// buildRecord makes the record the writer would of b.
func buildRecord(b *sink.Batch, seq uint64, batched bool, prev func(markKey) uint64) []byte {
	e, l := templates()
	msgs := sink.NewEncoder(sink.EncoderConfig{Subject: e, LossSubject: l, Batched: batched, CloudEvents: true}).Encode(b, 1<<20)
	var m meta
	if prev == nil {
		prev = func(markKey) uint64 { return 0 }
	}
	m.build(b, msgs, prev)
	rec := beginRecord(nil)
	rec = appendMeta(rec, &m)
	end := len(rec)
	rec = appendPackHeader(rec)
	for i := range msgs {
		rec = appendPacked(rec, msgs[i].Subject, msgs[i].Hdr, msgs[i].Data)
	}
	sealRecord(rec, seq, 1234, end)
	return rec
}

func parseRecord(t *testing.T, rec []byte) (header, *meta) {
	t.Helper()
	h, err := parseFixed(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkHeader(rec, &h); err != nil {
		t.Fatal(err)
	}
	if !checkPayload(rec[headerSize+h.metaLen:], &h) {
		t.Fatal("payload checksum")
	}
	var m meta
	if err := parseMeta(rec[headerSize:headerSize+h.metaLen], &m); err != nil {
		t.Fatal(err)
	}
	return h, &m
}

// describe writes a meta's parts as text: kind key msgs instance first-last prev.
func describe(m *meta) string {
	var parts []string
	for _, p := range m.Parts {
		k := m.Keys[p.Key]
		s := fmt.Sprintf("%s/%s msgs=%d %d:%d-%d prev=%d", k.Family, k.Group, p.Msgs, p.Instance, p.First, p.Last, p.Prev)
		if p.Kind == partLoss {
			s = "loss " + p.Reason + fmt.Sprintf(" count=%d ", p.Count) + s
		} else if !p.Kernel {
			s += " bridge"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// A record's meta says what its messages carry: runs of consecutive
// events (one message each: one part), the events of a batched message
// split where their sequence has a hole, and loss records whole.
func TestMetaOfABatch(t *testing.T) {
	evs := append(testEvents("h", 1, 3), testEvents("h", 7, 2)...) // a hole at 4-6
	other := testEvents("h", 1, 2)
	for i := range other {
		other[i].Family, other[i].Instance = "netdev", 9
	}
	bridgeNumbered := event.Event{Host: "h", BootID: "boot", Family: "netdev", Group: "mgmt", Seq: 4, SeqSource: event.SeqBridge, Instance: 77}
	b := &sink.Batch{
		Losses: []event.Loss{{Host: "h", BootID: "boot", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonOverrun,
			Count: 3, FirstSeq: 4, LastSeq: 6, Instance: 5, TimeNS: 99}},
		Events: append(append(evs, other...), bridgeNumbered),
	}
	prev := func(k markKey) uint64 {
		if k.Family == "CONTROL_EXMPL" {
			return 0
		}
		return 100
	}
	for _, tc := range []struct {
		batched bool
		want    string
	}{
		{false, "loss overrun count=3 CONTROL_EXMPL/EXMPL_GRP msgs=1 5:4-6 prev=0; CONTROL_EXMPL/EXMPL_GRP msgs=3 5:1-3 prev=0; " +
			"CONTROL_EXMPL/EXMPL_GRP msgs=2 5:7-8 prev=0; netdev/EXMPL_GRP msgs=2 9:1-2 prev=100; netdev/mgmt msgs=1 77:4-4 prev=100 bridge"},
		{true, "loss overrun count=3 CONTROL_EXMPL/EXMPL_GRP msgs=1 5:4-6 prev=0; CONTROL_EXMPL/EXMPL_GRP msgs=1 5:1-3 prev=0; " +
			"CONTROL_EXMPL/EXMPL_GRP msgs=0 5:7-8 prev=0; netdev/EXMPL_GRP msgs=1 9:1-2 prev=100; netdev/mgmt msgs=1 77:4-4 prev=100 bridge"},
	} {
		rec := buildRecord(b, 42, tc.batched, prev)
		h, m := parseRecord(t, rec)
		if h.seq != 42 || h.time != 1234 {
			t.Fatalf("header %+v", h)
		}
		if got := describe(m); got != tc.want {
			t.Errorf("batched %v:\n got %s\nwant %s", tc.batched, got, tc.want)
		}
		// partsOf names the events of each message; the pack has as many.
		n, err := Unpack(rec[headerSize+h.metaLen:], func(idx int, _, _, data []byte) bool {
			var seqs []uint64
			m.partsOf(idx, func(p part) {
				for s := p.First; s <= p.Last && p.Kind == partEvents; s++ {
					seqs = append(seqs, s)
				}
			})
			for _, s := range seqs {
				if !bytes.Contains(data, fmt.Appendf(nil, `"seq":%d,`, s)) {
					t.Errorf("batched %v: message %d (%s) lacks seq %d its parts name", tc.batched, idx, data, s)
				}
			}
			return true
		})
		if err != nil || n != m.msgs() {
			t.Fatalf("%d messages (%v), the meta says %d", n, err, m.msgs())
		}
		if m.eventCount() != 8 {
			t.Fatalf("events %d, want 8", m.eventCount())
		}
	}
}

// Every byte of a record is covered: a change anywhere is found, in the
// header and meta by one checksum, in the payload by the other.
func TestRecordChecksums(t *testing.T) {
	rec := buildRecord(&sink.Batch{Events: testEvents("h", 1, 3)}, 7, false, nil)
	h, _ := parseRecord(t, rec)
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x20
		fh, err := parseFixed(bad)
		ok := err == nil && checkHeader(bad, &fh) == nil && fh.size() == len(rec) && checkPayload(bad[headerSize+fh.metaLen:], &fh)
		if ok {
			t.Fatalf("byte %d of %d changed and the record still checks", i, len(rec))
		}
		if i >= headerSize+h.metaLen && (err != nil || checkHeader(bad, &fh) != nil) {
			t.Fatalf("byte %d is in the payload, yet the header does not check", i)
		}
	}
}

// After damage, the next valid header is found, and not one of an older
// record.
func TestFindHeader(t *testing.T) {
	r1 := buildRecord(&sink.Batch{Events: testEvents("h", 1, 2)}, 1, false, nil)
	r2 := buildRecord(&sink.Batch{Events: testEvents("h", 3, 2)}, 2, false, nil)
	log := append(append(bytes.Clone(r1), bytes.Repeat([]byte("GBS1garbage"), 5)...), r2...)
	if j := findHeader(log, 1, 2); j != len(log)-len(r2) {
		t.Fatalf("found %d, want %d", j, len(log)-len(r2))
	}
	if j := findHeader(log, 1, 3); j != -1 {
		t.Fatalf("a record numbered below the minimum was taken: %d", j)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := meta{Keys: []metaKey{{"h", "b", "f", "g"}, {"h2", "b", "f2", "g2"}}, Parts: []part{
		{Kind: partEvents, Key: 0, Msgs: 3, Kernel: true, Instance: 1 << 60, First: 1, Last: 3, Prev: 0},
		{Kind: partLoss, Key: 1, Msgs: 1, Instance: 2, First: 4, Last: 9, Prev: 3, Reason: "seq_gap", Count: 6, Time: -5},
		{Kind: partEvents, Key: 1, Msgs: 0, Instance: 2, First: 10, Last: 10, Prev: 3},
	}}
	var got meta
	if err := parseMeta(appendMeta(nil, &m), &got); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, got, m)
	}
}

func FuzzParseMeta(f *testing.F) {
	rec := buildRecord(&sink.Batch{Events: testEvents("h", 1, 3), Losses: []event.Loss{{Reason: "overrun", Count: 2, FirstSeq: 1, LastSeq: 2}}}, 1, true, nil)
	h, _ := parseFixed(rec)
	f.Add(rec[headerSize : headerSize+h.metaLen])
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m meta
		if parseMeta(data, &m) != nil {
			return
		}
		// What parses encodes back to bytes that parse to the same.
		var again meta
		if err := parseMeta(appendMeta(nil, &m), &again); err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("%x parses to %+v, which does not round-trip: %v", data, m, err)
		}
		// A part may claim up to 2^30 messages: walk the first ones and
		// the last, not all (one input must not take seconds).
		n := m.msgs()
		for i := 0; i <= n; i++ {
			if i == 256 && n > 512 {
				i = n - 256
			}
			m.partsOf(i, func(part) {})
		}
	})
}
