package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleEvent() Event {
	return Event{
		Host: "node-1.example", BootID: "630f1920-7243-4465-bfcf-0cef91172f87",
		Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Cmd: 1, Version: 1,
		Seq: 42, SeqSource: SeqKernel, Jiffies: 4295123456, KernelNS: 1795000000123456789,
		RecvNS: 1795000000123999999, Format: FormatExmpl, Msg: "Hello from kernel at jiffies 4295123456",
	}
}

func roundTrip(t *testing.T, e Event) {
	t.Helper()
	b := AppendJSON(nil, &e)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	var got Envelope
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if got.Type != "event" {
		t.Fatalf("type = %q", got.Type)
	}
	want := e
	for _, s := range []*string{&want.Host, &want.BootID, &want.Family, &want.Group, &want.SeqSource, &want.Format, &want.Msg} {
		*s = strings.Map(func(r rune) rune { return r }, *s) // each invalid byte -> U+FFFD, like encoding/json
	}
	if len(want.Attrs) == 0 {
		want.Attrs = nil
	}
	for i := range want.Attrs {
		if len(want.Attrs[i].Data) == 0 {
			want.Attrs[i].Data = []byte{}
		}
	}
	if !reflect.DeepEqual(got.Event, want) {
		t.Fatalf("round trip differs\n got %+v\nwant %+v\njson %s", got.Event, want, b)
	}
	// The same struct through encoding/json must decode to the same value.
	std, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var viaStd Event
	if err := json.Unmarshal(std, &viaStd); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaStd, want) {
		t.Fatalf("encoding/json differs from AppendJSON\n std %+v\nmine %+v", viaStd, got.Event)
	}
}

func TestAppendJSONEquivalence(t *testing.T) {
	e := sampleEvent()
	roundTrip(t, e)

	g := sampleEvent()
	g.Format, g.Msg, g.SeqSource, g.Jiffies, g.KernelNS = FormatGeneric, "", SeqBridge, 0, 0
	g.Family, g.Group = "netdev", "mgmt"
	g.Attrs = []Attr{{Type: 1, Data: []byte{1, 0, 0, 0}}, {Type: 0x8000 | 3, Data: []byte{}}, {Type: 2, Data: []byte("x\x00y")}}
	roundTrip(t, g)

	y := sampleEvent()
	y.Format, y.Msg, y.SeqSource, y.Jiffies, y.KernelNS, y.Op = FormatYNL, "", SeqBridge, 0, 0, "dev-add-ntf"
	y.Family, y.Group = "netdev", "mgmt"
	y.Fields = []byte(`{"ifindex":3,"xdp-features":["basic","redirect"],"big":18446744073709551615}`)
	y.Raw = []byte(`[{"path":"","type":17,"data":"AQI="}]`)
	roundTrip(t, y)

	for _, s := range []string{"", "quote\" back\\ slash", "ctl\x00\x01\x1f\t\r\n", "<html>&amp;", "ünï©ødé ✓ 𝄞",
		"bad \xff\xfe utf8", "line\u2028sep\u2029", strings.Repeat("é", 300)} {
		x := sampleEvent()
		x.Msg, x.Host = s, s
		roundTrip(t, x)
	}
}

func TestAppendLossJSON(t *testing.T) {
	for _, l := range []Loss{
		{Host: "h", BootID: "b", Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: ReasonOverrun, Count: 7, FirstSeq: 10, LastSeq: 16, TimeNS: 5},
		{Host: "h", BootID: "b", Family: "netdev", Group: "mgmt", Reason: ReasonQueueFull, Count: 3, TimeNS: 6},
	} {
		b := AppendLossJSON(nil, &l)
		var env Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if env.Type != "loss" || env.Loss() != l {
			t.Fatalf("got %+v from %s, want %+v", env.Loss(), b, l)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("Hello from kernel at jiffies 1", "host", uint64(1), []byte{1, 2})
	f.Add("\xff\x00\"\\", "a.b.c", uint64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, msg, host string, seq uint64, data []byte) {
		e := sampleEvent()
		e.Msg, e.Host, e.Seq = msg, host, seq
		if data != nil {
			e.Attrs = []Attr{{Type: 9, Data: data}}
		}
		roundTrip(t, e)
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sampleEvent()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodingJSON(b *testing.B) {
	e := sampleEvent()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, _ := json.Marshal(&e)
		n = len(out)
	}
	b.SetBytes(int64(n))
}

// ynlEvent is netdev's dev-add-ntf as the bridge publishes it.
func ynlEvent() Event {
	e := sampleEvent()
	e.Family, e.Group, e.Format, e.Op, e.Msg, e.SeqSource, e.Jiffies, e.KernelNS = "netdev", "mgmt", FormatYNL, "dev-add-ntf", "", SeqBridge, 0, 0
	e.Fields = []byte(`{"ifindex":3,"xdp-features":["basic","redirect","ndo-xmit"],"xdp-zc-max-segs":1,"xdp-rx-metadata-features":["timestamp","hash"],"xsk-features":[]}`)
	return e
}

func BenchmarkAppendJSONYNL(b *testing.B) {
	e := ynlEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
}

// BenchmarkAppendJSONSideBySide writes an exmpl event and a ynl event
// (netdev dev-add-ntf) in turns and reports both costs and their ratio
// (target: the ynl event within 2x of the exmpl one), from one run.
func BenchmarkAppendJSONSideBySide(b *testing.B) {
	ex, y := sampleEvent(), ynlEvent()
	buf := make([]byte, 0, 1024)
	var exT, yT time.Duration
	const round = 64
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		for range round {
			buf = AppendJSON(buf[:0], &ex)
		}
		t1 := time.Now()
		for range round {
			buf = AppendJSON(buf[:0], &y)
		}
		t2 := time.Now()
		exT += t1.Sub(t0)
		yT += t2.Sub(t1)
	}
	n := float64(b.N * round)
	b.ReportMetric(float64(exT.Nanoseconds())/n, "exmpl-ns/event")
	b.ReportMetric(float64(yT.Nanoseconds())/n, "ynl-ns/event")
	b.ReportMetric(float64(yT)/float64(exT), "ynl/exmpl")
}

// exactInADouble walks a JSON text and fails on any number a double (a
// JavaScript Number) does not hold exactly.
func exactInADouble(t *testing.T, b []byte) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if n, ok := tok.(json.Number); ok {
			i, err := n.Int64()
			if err != nil || i > 1<<53-1 || i < -(1<<53-1) {
				t.Fatalf("%s in %s: not exact in a double", n, b)
			}
		}
	}
}

// Format 2: every top-level field reads exactly in JavaScript: 64-bit
// integers beyond 2^53-1 as strings, times as RFC 3339 with nanoseconds,
// instances in µs.
func TestFormat2ExactEverywhere(t *testing.T) {
	e := sampleEvent()
	e.Seq, e.Jiffies, e.Instance = 1<<63+5, 1<<53, 1795000000123456
	e.KernelNS, e.RecvNS = 1795000000123456789, 1795000000123999999
	b := AppendJSON(nil, &e)
	exactInADouble(t, b)
	for _, want := range []string{`{"v":2,"type":"event",`, `"seq":"9223372036854775813"`, `"jiffies":"9007199254740992"`, `"instance":1795000000123456`,
		`"kernel_time":"2026-11-18T11:06:40.123456789Z"`, `"recv_time":"2026-11-18T11:06:40.123999999Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	roundTrip(t, e)
	l := Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: ReasonSeqGap, Count: 1 << 60, FirstSeq: 1<<62 + 1, LastSeq: 1<<62 + 1<<60,
		Instance: 1795000000123456, TimeNS: 1795000000123456789}
	lb := AppendLossJSON(nil, &l)
	exactInADouble(t, lb)
	if want := `{"v":2,"type":"loss","host":"h","boot_id":"b","family":"f","group":"g","reason":"seq_gap","count":"1152921504606846976",` +
		`"first_seq":"4611686018427387905","last_seq":"5764607523034234880","instance":1795000000123456,"time":"2026-11-18T11:06:40.123456789Z"}`; string(lb) != want {
		t.Errorf("loss\n got %s\nwant %s", lb, want)
	}
	var back Loss
	if err := json.Unmarshal(lb, &back); err != nil || back != l {
		t.Errorf("loss round trip: %+v %v", back, err)
	}
	// Envelope writes back what it read, either type.
	for _, rec := range [][]byte{b, lb} {
		var env Envelope
		if err := json.Unmarshal(rec, &env); err != nil || env.V != 2 {
			t.Fatalf("%s: %v (v%d)", rec, err, env.V)
		}
		again, _ := json.Marshal(env)
		if string(again) != string(rec) {
			t.Errorf("Envelope\n got %s\nwant %s", again, rec)
		}
	}
}

// Format 1's records, as streams written before format 2 hold them, read
// into the same values.
func TestFormat1Reads(t *testing.T) {
	v1 := `{"type":"event","host":"h","boot_id":"b","family":"f","group":"g","cmd":1,"version":1,"seq":5,"seq_src":"kernel","instance":1795000000123456789,` +
		`"jiffies":99,"kernel_ns":1795000000123456789,"recv_ns":1795000000123999999,"format":"exmpl","msg":"hi"}`
	var env Envelope
	if err := json.Unmarshal([]byte(v1), &env); err != nil {
		t.Fatal(err)
	}
	// The instance in µs, as format 2 writes the same registration's.
	if env.V != 1 || env.Seq != 5 || env.Instance != 1795000000123456 || env.KernelNS != 1795000000123456789 || env.RecvNS != 1795000000123999999 {
		t.Errorf("%+v", env)
	}
	l1 := `{"type":"loss","host":"h","boot_id":"b","family":"f","group":"g","reason":"overrun","count":3,"first_seq":4,"last_seq":6,"instance":7,"time_ns":1795000000123456789}`
	if err := json.Unmarshal([]byte(l1), &env); err != nil {
		t.Fatal(err)
	}
	if want := (Loss{Host: "h", BootID: "b", Family: "f", Group: "g", Reason: "overrun", Count: 3, FirstSeq: 4, LastSeq: 6, Instance: 7, TimeNS: 1795000000123456789}); env.Loss() != want {
		t.Errorf("%+v", env.Loss())
	}
	if err := json.Unmarshal([]byte(`{"v":3,"type":"event"}`), &env); err == nil || !strings.Contains(err.Error(), "v3") {
		t.Errorf("v3 read: %v", err)
	}
}
