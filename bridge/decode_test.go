package bridge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/genlbridge/genlbridge/ynl"
	"github.com/genlbridge/genlbridge/ynl/specs"
	"github.com/mdlayher/netlink"
)

// genlMessage builds a netlink message of type typ with a genl header and attrs.
func genlMessage(typ uint16, cmd, version uint8, attrs []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+genlHdrLen+len(attrs))
	binary.NativeEndian.PutUint32(b[0:4], uint32(nlmsgHdrLen+genlHdrLen+len(attrs)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	b = append(b, cmd, version, 0, 0)
	return append(b, attrs...)
}

func exmplAttrs(t testing.TB, msg string, jiffies, seq, ts uint64) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.String(exmpl.AttrMsg, msg)
	ae.Uint64(exmpl.AttrJiffies, jiffies)
	ae.Uint64(exmpl.AttrSeq, seq)
	ae.Uint64(exmpl.AttrTimestamp, ts)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedAttrs is the seed module's payload: attribute 1 alone, 50 bytes, text,
// NUL, garbage.
func seedAttrs(text string) []byte {
	buf := bytes.Repeat([]byte{0xA5}, exmpl.SeedPayloadLen)
	copy(buf, text)
	buf[len(text)] = 0
	b, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: exmpl.AttrMsg, Data: buf}})
	return b
}

// decoderFor is the decoder of a subscription to family/group with dec,
// with the embedded specs (as the daemon has them with nothing installed).
func decoderFor(t testing.TB, family, group, dec string) *msgDecoder {
	t.Helper()
	f, _, err := resolveDecoder(Subscription{Family: family, Group: group, Decoder: dec}, embeddedRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	return newMsgDecoder(f, group)
}

func embeddedRegistry(t testing.TB) *ynl.Registry {
	t.Helper()
	reg, errs := specs.EmbeddedRegistry()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return reg
}

// decodeMessage decodes msg as a subscription with decoder dec would.
func decodeMessage(msg []byte, dec string, e *event.Event, a *arena) error {
	f, _, err := resolveDecoder(Subscription{Family: "f", Group: "g", Decoder: dec}, nil)
	if err != nil {
		return err
	}
	return newMsgDecoder(f, "g").decode(msg, e, a)
}

func TestDecodeExmpl(t *testing.T) {
	msg := genlMessage(30, exmpl.CmdDo, exmpl.Version, exmplAttrs(t, "Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001))
	var e event.Event
	if err := decodeMessage(msg, DecodeExmpl, &e, nil); err != nil {
		t.Fatal(err)
	}
	want := event.Event{Cmd: 1, Version: 1, Seq: 77, Jiffies: 4295000123, KernelNS: 1795000000000000001,
		Format: event.FormatExmpl, Msg: "Hello from kernel at jiffies 4295000123"}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got %+v\nwant %+v", e, want)
	}
}

func TestDecodeSeedPayload(t *testing.T) {
	msg := genlMessage(30, exmpl.CmdDo, exmpl.Version, seedAttrs("Hello from kernel at jiffies 4294937296"))
	var e event.Event
	if err := decodeMessage(msg, DecodeExmpl, &e, nil); err != nil {
		t.Fatal(err)
	}
	if e.Format != event.FormatSeed || e.Msg != "Hello from kernel at jiffies 4294937296" || e.Jiffies != 4294937296 || e.Seq != 0 {
		t.Fatalf("got %+v", e)
	}
	// Text without a number still decodes; jiffies stays unknown.
	msg = genlMessage(30, exmpl.CmdDo, exmpl.Version, seedAttrs("Hello"))
	e = event.Event{}
	if err := decodeMessage(msg, DecodeExmpl, &e, nil); err != nil || e.Msg != "Hello" || e.Jiffies != 0 {
		t.Fatalf("got %+v, %v", e, err)
	}
}

func TestArena(t *testing.T) {
	var a arena
	var strs []string
	for i := 0; i < 5000; i++ { // several blocks
		strs = append(strs, a.string([]byte(fmt.Sprintf("event %d", i))))
	}
	for i, s := range strs {
		if s != fmt.Sprintf("event %d", i) {
			t.Fatalf("string %d = %q", i, s)
		}
	}
	big := bytes.Repeat([]byte("x"), arenaBlock)
	if s := a.string(big); len(s) != arenaBlock {
		t.Fatal("large string")
	}
	if a.string(nil) != "" {
		t.Fatal("empty string")
	}
	allocs := testing.AllocsPerRun(1000, func() { _ = a.string([]byte("Hello from kernel at jiffies 4295000123")) })
	if allocs > 0.01 {
		t.Fatalf("%.3f allocations per string, want ~0", allocs)
	}
}

func TestDecodeGeneric(t *testing.T) {
	attrs := []netlink.Attribute{{Type: 1, Data: []byte{2, 0, 0, 0}}, {Type: 3, Data: []byte{}}, {Type: 0x8000 | 4, Data: []byte{1, 2, 3, 4, 5}}}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	var e event.Event
	if err := decodeMessage(genlMessage(20, 2, 1, b), DecodeGeneric, &e, &arena{}); err != nil {
		t.Fatal(err)
	}
	if e.Format != event.FormatGeneric || e.Cmd != 2 || len(e.Attrs) != 3 {
		t.Fatalf("got %+v", e)
	}
	for i, a := range attrs {
		if e.Attrs[i].Type != a.Type || !bytes.Equal(e.Attrs[i].Data, a.Data) {
			t.Fatalf("attr %d: got %+v want %+v", i, e.Attrs[i], a)
		}
	}
	// Appending to one attribute's bytes must not overwrite the next one's.
	_ = append(e.Attrs[0].Data, 9, 9, 9, 9)
	if e.Attrs[1].Type != 3 || !bytes.Equal(e.Attrs[2].Data, []byte{1, 2, 3, 4, 5}) {
		t.Fatal("attribute data shares capacity")
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := genlMessage(30, 1, 1, exmplAttrs(t, "x", 1, 2, 3))
	cases := map[string][]byte{
		"short header":       good[:nlmsgHdrLen+2],
		"attr len too large": func() []byte { b := bytes.Clone(good); binary.NativeEndian.PutUint16(b[20:22], 400); return b }(),
		"attr len below 4":   func() []byte { b := bytes.Clone(good); binary.NativeEndian.PutUint16(b[20:22], 2); return b }(),
		"trailing bytes":     append(bytes.Clone(good), 1, 2),
		"u64 with 4 bytes": genlMessage(30, 1, 1, func() []byte {
			b, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: exmpl.AttrSeq, Data: []byte{1, 2, 3, 4}}})
			return b
		}()),
	}
	for name, msg := range cases {
		for _, dec := range []string{DecodeExmpl, DecodeGeneric} {
			if name == "u64 with 4 bytes" && dec == DecodeGeneric {
				continue // any length is fine when kept as bytes
			}
			var e event.Event
			if err := decodeMessage(msg, dec, &e, &arena{}); !errors.Is(err, errMalformed) {
				t.Errorf("%s/%s: err = %v, want malformed", name, dec, err)
			}
		}
	}
	if _, _, err := nextMessage([]byte{1, 2, 3}); !errors.Is(err, errMalformed) {
		t.Errorf("nextMessage on 3 bytes: %v", err)
	}
	b := bytes.Clone(good)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)+8))
	if _, _, err := nextMessage(b); !errors.Is(err, errMalformed) {
		t.Errorf("nextMessage with nlmsg_len past the datagram: %v", err)
	}
}

func TestNextMessageSplitsDatagram(t *testing.T) {
	a := genlMessage(30, 1, 1, exmplAttrs(t, "a", 1, 1, 1))
	c := genlMessage(30, 1, 1, exmplAttrs(t, "bc", 1, 2, 1))
	d := append(bytes.Clone(a), c...)
	m1, rest, err := nextMessage(d)
	if err != nil || !bytes.Equal(m1, a) {
		t.Fatalf("first: %v", err)
	}
	m2, rest, err := nextMessage(rest)
	if err != nil || !bytes.Equal(m2, c) || len(rest) != 0 {
		t.Fatalf("second: %v, rest %d", err, len(rest))
	}
}

// TestDecodeNetdevBySpec: netdev's dev-add-ntf, by the embedded spec.
func TestDecodeNetdevBySpec(t *testing.T) {
	msg := netdevDevAdd(t, 3)
	d := decoderFor(t, "netdev", "mgmt", DecodeAuto)
	var e event.Event
	if err := d.decode(msg, &e, &arena{}); err != nil {
		t.Fatal(err)
	}
	want := `{"ifindex":3,"xdp-features":["basic","redirect","ndo-xmit"],"xdp-zc-max-segs":1,"xdp-rx-metadata-features":["timestamp","hash"],"xsk-features":[]}`
	if e.Format != event.FormatYNL || e.Op != "dev-add-ntf" || string(e.Fields) != want || e.Raw != nil || e.Seq != 0 {
		t.Fatalf("got format %q op %q attrs %s raw %s seq %d, want op dev-add-ntf attrs %s", e.Format, e.Op, e.Fields, e.Raw, e.Seq, want)
	}
	// An attribute the spec does not know, and one of the wrong length:
	// kept raw and counted, the others decoded.
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(1, 7)
	ae.Uint16(3, 1) // xdp-features is a u64
	ae.Bytes(99, []byte{1, 2})
	b, _ := ae.Encode()
	e = event.Event{}
	if err := d.decode(genlMessage(30, 2, 1, b), &e, &arena{}); err != nil {
		t.Fatal(err)
	}
	if e.Op != "dev-add-ntf" || !strings.HasPrefix(string(e.Fields), `{"ifindex":7`) || !strings.Contains(string(e.Raw), `"type":99`) ||
		d.rawUnknown.Load() != 1 || d.rawBadLength.Load() != 1 {
		t.Fatalf("op %q attrs %s raw %s unknown %d bad length %d", e.Op, e.Fields, e.Raw, d.rawUnknown.Load(), d.rawBadLength.Load())
	}
	// A cmd the spec has no message for: generic, counted.
	e = event.Event{}
	if err := d.decode(genlMessage(30, 200, 1, b), &e, &arena{}); err != nil || e.Format != event.FormatGeneric || d.fallback.Load() != 1 {
		t.Fatalf("cmd 200: format %q, fallback %d, %v", e.Format, d.fallback.Load(), err)
	}
}

// netdevDevAdd is NETDEV_CMD_DEV_ADD_NTF as the kernel sends it for a veth.
func netdevDevAdd(t testing.TB, ifindex uint32) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(1, ifindex) // NETDEV_A_DEV_IFINDEX
	ae.Uint64(3, 7)       // NETDEV_A_DEV_XDP_FEATURES: basic, redirect, ndo-xmit
	ae.Uint32(4, 1)       // NETDEV_A_DEV_XDP_ZC_MAX_SEGS
	ae.Uint64(5, 3)       // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: timestamp, hash
	ae.Uint64(6, 0)       // NETDEV_A_DEV_XSK_FEATURES
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return genlMessage(30, 2, 1, b)
}

// parseSeedJiffies is the reference's reading of the seed's text, as the
// bridge read it before the spec engine: N from "... at jiffies N", at most
// 20 digits and no overflow, else 0.
func parseSeedJiffies(msg []byte) uint64 {
	i := bytes.LastIndex(msg, []byte("at jiffies "))
	if i < 0 {
		return 0
	}
	digits := msg[i+len("at jiffies "):]
	if len(digits) == 0 || len(digits) > 20 {
		return 0
	}
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0
		}
		v = v*10 + d
	}
	return v
}

func TestParseSeedJiffies(t *testing.T) {
	for in, want := range map[string]uint64{
		"Hello from kernel at jiffies 123":                  123,
		"Hello from kernel at jiffies 18446744073709551615": 18446744073709551615,
		"Hello from kernel at jiffies 18446744073709551616": 0,
		"Hello from kernel at jiffies -5":                   0,
		"Hello from kernel at jiffies +5":                   0,
		"Hello from kernel at jiffies ":                     0,
		"no number":                                         0,
	} {
		if got := parseSeedJiffies([]byte(in)); got != want {
			t.Errorf("%q: got %d want %d", in, got, want)
		}
	}
}

// referenceExmpl decodes with netlink.AttributeDecoder, off the hot path.
func referenceExmpl(attrs []byte) (event.Event, error) {
	var e event.Event
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return e, err
	}
	haveMsg, other := false, false
	var msg []byte
	for ad.Next() {
		switch ad.Type() {
		case exmpl.AttrMsg:
			msg, haveMsg = ad.Bytes(), true
		case exmpl.AttrJiffies, exmpl.AttrSeq, exmpl.AttrTimestamp:
			other = true
			if len(ad.Bytes()) != 8 {
				return e, errMalformed
			}
			v := ad.Uint64()
			switch ad.Type() {
			case exmpl.AttrJiffies:
				e.Jiffies = v
			case exmpl.AttrSeq:
				e.Seq = v
			default:
				e.KernelNS = int64(v)
			}
		default:
			other = true
		}
	}
	if err := ad.Err(); err != nil {
		return e, err
	}
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	e.Msg = string(msg)
	e.Format = event.FormatExmpl
	if haveMsg && !other {
		e.Format, e.Jiffies = event.FormatSeed, parseSeedJiffies(msg)
	}
	return e, nil
}

func FuzzDecode(f *testing.F) {
	f.Add(genlMessage(30, 1, 1, exmplAttrs(f, "Hello from kernel at jiffies 5", 5, 1, 2)))
	f.Add(genlMessage(30, 1, 1, seedAttrs("Hello from kernel at jiffies 42")))
	f.Add(genlMessage(20, 2, 1, []byte{8, 0, 1, 0, 2, 0, 0, 0}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the bytes, splitting and decoding never panics.
		rest := data
		for len(rest) > 0 {
			msg, r, err := nextMessage(rest)
			if err != nil {
				break
			}
			rest = r
			for _, dec := range []string{DecodeExmpl, DecodeGeneric} {
				var e event.Event
				_ = decodeMessage(msg, dec, &e, &arena{})
			}
		}
		// On a well-formed attribute stream the hand decoder agrees with
		// netlink.AttributeDecoder.
		if len(data) < nlmsgHdrLen+genlHdrLen {
			return
		}
		msg := genlMessage(30, 1, 1, data[nlmsgHdrLen+genlHdrLen:])
		var got event.Event
		err := decodeMessage(msg, DecodeExmpl, &got, &arena{})
		want, rerr := referenceExmpl(msg[nlmsgHdrLen+genlHdrLen:])
		if err != nil && rerr == nil && hasZeroLengthAttr(msg[nlmsgHdrLen+genlHdrLen:]) {
			// netlink.AttributeDecoder takes nla_len 0 as an empty
			// attribute; the kernel's nla_ok() does not, nor do we.
			return
		}
		if (err == nil) != (rerr == nil) {
			t.Fatalf("hand decoder err %v, reference err %v", err, rerr)
		}
		if err == nil {
			got.Cmd, got.Version = 0, 0
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("hand decoder %+v\nreference %+v", got, want)
			}
		}
	})
}

func BenchmarkDecodeExmpl(b *testing.B) {
	msg := genlMessage(30, 1, 1, exmplAttrs(b, "Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001))
	b.ReportAllocs()
	var e event.Event
	var a arena
	for b.Loop() {
		e = event.Event{}
		if err := decodeMessage(msg, DecodeExmpl, &e, &a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeNetdevDevAdd(b *testing.B) {
	d := decoderFor(b, "netdev", "mgmt", DecodeAuto)
	msg := netdevDevAdd(b, 3)
	b.ReportAllocs()
	var e event.Event
	var a arena
	for b.Loop() {
		e = event.Event{}
		if err := d.decode(msg, &e, &a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSideBySide decodes an exmpl event and netdev's
// dev-add-ntf in turns, 64 of each per round, and reports both costs and
// their ratio (target: netdev within 3x of exmpl), measured in one run so
// that the machine's load weighs on both alike.
func BenchmarkDecodeSideBySide(b *testing.B) {
	ex := decoderFor(b, exmpl.FamilyName, exmpl.GroupName, DecodeAuto)
	nd := decoderFor(b, "netdev", "mgmt", DecodeAuto)
	exMsg := genlMessage(30, 1, 1, exmplAttrs(b, "Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001))
	ndMsg := netdevDevAdd(b, 3)
	var e event.Event
	var a arena
	var exT, ndT time.Duration
	const round = 64
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		for range round {
			e = event.Event{}
			_ = ex.decode(exMsg, &e, &a)
		}
		t1 := time.Now()
		for range round {
			e = event.Event{}
			_ = nd.decode(ndMsg, &e, &a)
		}
		t2 := time.Now()
		exT += t1.Sub(t0)
		ndT += t2.Sub(t1)
	}
	n := float64(b.N * round)
	b.ReportMetric(float64(exT.Nanoseconds())/n, "exmpl-ns/event")
	b.ReportMetric(float64(ndT.Nanoseconds())/n, "netdev-ns/event")
	b.ReportMetric(float64(ndT)/float64(exT), "netdev/exmpl")
}

func BenchmarkDecodeGeneric(b *testing.B) {
	msg := genlMessage(20, 2, 1, exmplAttrs(b, "Hello", 1, 2, 3))
	b.ReportAllocs()
	var e event.Event
	var a arena
	for b.Loop() {
		e = event.Event{}
		if err := decodeMessage(msg, DecodeGeneric, &e, &a); err != nil {
			b.Fatal(err)
		}
	}
}

func hasZeroLengthAttr(b []byte) bool {
	for len(b) >= nlaHdrLen {
		if binary.NativeEndian.Uint16(b[0:2]) == 0 {
			return true
		}
		_, _, rest, err := nextAttr(b)
		if err != nil {
			return false
		}
		b = rest
	}
	return false
}
