package ynl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/genlbridge/genlbridge/kmod"
)

// The CONTROL_EXMPL family through the engine, with kmod's spec and the
// format-exmpl override, against a copy of genlbridge's hand decoder
// (bridge/decode.go, decodeExmpl): the fields must be the same.

func exmplFamily(t testing.TB) *Family {
	t.Helper()
	return mustCompile(t, "kmod/control_exmpl.yaml", kmod.Spec, "testdata/control_exmpl.override.yaml", readTestdata(t, "control_exmpl.override.yaml"))
}

// refExmpl is the hand decoder's result.
type refExmpl struct {
	seq, jiffies uint64
	ns           int64
	msg          string
	seed         bool
}

// refDecodeExmpl is bridge's decodeExmpl, its attribute walk included.
func refDecodeExmpl(b []byte) (refExmpl, error) {
	var r refExmpl
	var msg []byte
	haveMsg, other := false, false
	for len(b) > 0 {
		if len(b) < 4 {
			return r, fmt.Errorf("%w: %d trailing bytes after the attributes", ErrMalformed, len(b))
		}
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return r, fmt.Errorf("%w: attribute length %d with %d bytes left", ErrMalformed, l, len(b))
		}
		t, data := binary.NativeEndian.Uint16(b[2:4]), b[4:l]
		b = b[min(align4(l), len(b)):]
		switch typ := t & 0x3fff; typ {
		case 1:
			msg, haveMsg = data, true
		case 2, 3, 4:
			if len(data) != 8 {
				return r, fmt.Errorf("%w: attribute %d has %d bytes, want 8", ErrMalformed, typ, len(data))
			}
			v := binary.NativeEndian.Uint64(data)
			switch typ {
			case 2:
				r.jiffies = v
			case 3:
				r.seq = v
			default:
				r.ns = int64(v)
			}
			other = true
		default:
			other = true
		}
	}
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	r.msg = string(msg)
	if haveMsg && !other {
		r.seed = true
		r.jiffies = parseSeedJiffies(msg)
	}
	return r, nil
}

func exmplPayload(msg string, jiffies, seq, ts uint64) []byte {
	return cat(nla(1, strz(msg)), nla(2, u64(jiffies)), nla(3, u64(seq)), nla(4, u64(ts)))
}

// seedPayload is the seed module's: attribute 1 alone, 50 bytes, text, NUL, garbage.
func seedPayload(text string) []byte {
	buf := bytes.Repeat([]byte{0xA5}, 50)
	copy(buf, text)
	buf[len(text)] = 0
	return nla(1, buf)
}

func engineExmpl(m *Message, payload []byte) (refExmpl, error) {
	var out Output
	err := m.Decode(&out, payload)
	if len(out.JSON) != 0 || len(out.Raw) != 0 {
		return refExmpl{}, fmt.Errorf("format exmpl wrote JSON %q raw %q", out.JSON, out.Raw)
	}
	return refExmpl{seq: out.Seq, jiffies: out.Jiffies, ns: out.KernelNS, msg: string(out.Msg), seed: out.Seed}, err
}

func TestExmpl(t *testing.T) {
	f := exmplFamily(t)
	if f.Name != "CONTROL_EXMPL" || f.Format != FormatExmpl || f.Meta.Seq == "" {
		t.Fatalf("family %+v", f)
	}
	m := f.Lookup("EXMPL_GRP", 1)
	if m == nil || m.Name != "do" {
		t.Fatalf("EXMPL_GRP/1 = %v", m)
	}
	if m7 := f.Lookup("EXMPL_GRP", 7); m7 == nil || m7.Name != "do" {
		t.Fatalf("EXMPL_GRP/7 = %v", m7)
	}
	cases := []struct {
		name    string
		payload []byte
		want    refExmpl
		err     bool
	}{
		{"event", exmplPayload("Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001),
			refExmpl{seq: 77, jiffies: 4295000123, ns: 1795000000000000001, msg: "Hello from kernel at jiffies 4295000123"}, false},
		{"seed", seedPayload("Hello from kernel at jiffies 4294937296"), refExmpl{jiffies: 4294937296, msg: "Hello from kernel at jiffies 4294937296", seed: true}, false},
		{"seed without number", seedPayload("Hello"), refExmpl{msg: "Hello", seed: true}, false},
		{"seed number too large", seedPayload("at jiffies 99999999999999999999"), refExmpl{msg: "at jiffies 99999999999999999999", seed: true}, false},
		{"msg and pad", cat(nla(1, strz("at jiffies 5")), nla(5, nil)), refExmpl{msg: "at jiffies 5"}, false},
		{"msg and count", cat(nla(1, strz("x")), nla(6, u32(3))), refExmpl{msg: "x"}, false},
		{"msg and unknown", cat(nla(1, strz("x")), nla(77, nil)), refExmpl{msg: "x"}, false},
		{"flag bits masked", cat(nla(1|0x4000, strz("x")), nla(3|0x8000, u64(9))), refExmpl{msg: "x", seq: 9}, false},
		{"empty", nil, refExmpl{}, false},
		{"u64 of 4 bytes", cat(nla(1, strz("x")), nla(3, u32(9))), refExmpl{}, true},
		{"count of 2 bytes", cat(nla(1, strz("x")), nla(6, u16(3))), refExmpl{msg: "x"}, false},
		{"broken", []byte{3, 0, 1, 0}, refExmpl{}, true},
		{"trailing", cat(nla(1, strz("x")), []byte{1}), refExmpl{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref, rerr := refDecodeExmpl(c.payload)
			got, err := engineExmpl(m, c.payload)
			if (rerr != nil) != c.err || (err != nil) != c.err {
				t.Fatalf("errors: reference %v, engine %v, want error %v", rerr, err, c.err)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if ref != c.want || got != c.want {
				t.Fatalf("reference %+v\nengine    %+v\nwant      %+v", ref, got, c.want)
			}
		})
	}
}

// FuzzExmpl checks the engine against the hand decoder on any payload.
func FuzzExmpl(f *testing.F) {
	f.Add(exmplPayload("Hello from kernel at jiffies 4295000123", 4295000123, 77, 1))
	f.Add(seedPayload("Hello from kernel at jiffies 4294937296"))
	f.Add(cat(nla(1, strz("x")), nla(3, u32(9))))
	fam := exmplFamily(f)
	m := fam.Lookup("EXMPL_GRP", 1)
	f.Fuzz(func(t *testing.T, payload []byte) {
		ref, rerr := refDecodeExmpl(payload)
		got, err := engineExmpl(m, payload)
		if (rerr != nil) != (err != nil) {
			t.Fatalf("errors: reference %v, engine %v", rerr, err)
		}
		if err == nil && ref != got {
			t.Fatalf("reference %+v\nengine    %+v", ref, got)
		}
	})
}
