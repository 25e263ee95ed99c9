package ynl

import (
	"testing"
)

// Regression tests for how this package follows the kernel's nlspec.py and
// ynl.py (tools/net/ynl).

const compatSpec = `name: fam
definitions:
  - {name: color, type: enum, entries: [red, green]}
attribute-sets:
  - name: s
    attributes:
      - {name: uints, type: indexed-array, sub-type: uint}                     # 1
      - {name: sints, type: indexed-array, sub-type: sint, display-hint: hex}  # 2
      - {name: plain, type: nest-type-value, nested-attributes: inner}         # 3
      - {name: hexuint, type: uint, display-hint: hex}                         # 4
      - {name: hexsint, type: sint, display-hint: hex}                         # 5
      - {name: ipuint, type: uint, byte-order: big-endian, display-hint: ipv4} # 6
      - {name: enumuint, type: uint, enum: color, display-hint: hex}           # 7
      - {name: hexu32, type: u32, display-hint: hex}                           # 8
  - name: inner
    attributes:
      - {name: id, type: u32}
operations:
  list:
    - {name: first, attribute-set: s, event: {attributes: [uints]}, mcgrp: g}
    - {name: second, value: 1, attribute-set: inner, event: {attributes: [id]}, mcgrp: g}
    - {name: any-first, value: 5, attribute-set: s, event: {attributes: [uints]}}
    - {name: any-second, value: 5, attribute-set: inner, event: {attributes: [id]}}
mcast-groups:
  list: [{name: g}]
`

func TestCompatDecode(t *testing.T) {
	f, err := compileText(t, compatSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	set := f.sets["s"]
	m := &Message{Name: "s", fam: f, set: set, top: set}
	cases := []struct {
		name    string
		in      []byte
		want    string
		raw     string
		badLen  int
		unknown int
	}{
		// Indexed arrays of uint and sint take 4 or 8 bytes an entry, as
		// the attributes do; other lengths are raw.
		{name: "indexed uint", in: nla(1, cat(nla(1, u32(5)), nla(2, u64(1<<40)), nla(3, u16(7)), nla(4, nil))),
			want: `{"uints":[5,1099511627776]}`, raw: `[{"path":"uints","type":3,"data":"BwA="},{"path":"uints","type":4,"data":""}]`, badLen: 2},
		// ynl.py ignores display hints on uint and sint.
		{name: "indexed sint", in: nla(2, cat(nla(1, u32(0xfffffffb)), nla(2, u64(1<<40)))), want: `{"sints":[-5,1099511627776]}`},
		// A nest-type-value without type-value is a plain nest, as ynl.py
		// decodes it.
		{name: "nest-type-value without levels", in: nest(3, nla(1, u32(9))), want: `{"plain":{"id":9}}`},
		{name: "hint on uint", in: cat(nla(4, u32(31)), nla(4, u64(1<<40))), want: `{"hexuint":31,"hexuint":1099511627776}`},
		{name: "hint on sint", in: nla(5, u32(0xffffffff)), want: `{"hexsint":-1}`},
		{name: "ipv4 hint on uint", in: nla(6, be32(0x0a000001)), want: `{"ipuint":167772161}`},
		{name: "enum on uint", in: cat(nla(7, u32(1)), nla(7, u64(9))), want: `{"enumuint":"green","enumuint":9}`},
		{name: "hint on u32", in: nla(8, u32(31)), want: `{"hexu32":"0x1f"}`},
	}
	var out Output
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out.Reset()
			if err := m.Decode(&out, c.in); err != nil {
				t.Fatal(err)
			}
			if string(out.JSON) != c.want || string(out.Raw) != c.raw {
				t.Errorf("got  %s %s\nwant %s %s", out.JSON, out.Raw, c.want, c.raw)
			}
			if out.BadLength != c.badLen || out.Unknown != c.unknown {
				t.Errorf("badlen/unknown %d/%d, want %d/%d", out.BadLength, out.Unknown, c.badLen, c.unknown)
			}
		})
	}
}

func TestCompatSameMessageID(t *testing.T) {
	// Two notifications of one id: the later wins, as in nlspec.py's
	// rsp_by_value (and as for attributes and enum entries of one value).
	f, err := compileText(t, compatSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		group string
		cmd   uint8
		want  string
	}{{"g", 1, "second"}, {"g", 5, "any-second"}, {"other", 5, "any-second"}} {
		if m := f.Lookup(c.group, c.cmd); m == nil || m.Name != c.want {
			t.Errorf("Lookup(%s, %d) = %v, want %s", c.group, c.cmd, m, c.want)
		}
	}
}

func TestMsgIDModelIgnored(t *testing.T) {
	// nlspec.py reads enum-model only: msg-id-model is an unknown key,
	// ignored, and the ops number in the unified model.
	s, err := ParseSpec("s.yaml", []byte("name: a\noperations:\n  msg-id-model: directional\n  list:\n    - {name: x}\n    - {name: y, event: {attributes: []}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Operations.Model != ModelUnified || s.Operations.List[1].RspValue != 2 {
		t.Fatalf("model %s, y = %d", s.Operations.Model, s.Operations.List[1].RspValue)
	}
}
