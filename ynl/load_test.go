package ynl

import (
	"errors"
	"strings"
	"testing"
)

// wantErr checks err is an *Error at file:line:col whose text has want.
func wantErr(t *testing.T, err error, pos, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want an *Error", err, err)
	}
	if !strings.HasPrefix(err.Error(), pos+": ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("got  %q\nwant %q at %s", err, want, pos)
	}
}

func TestParseSpecErrors(t *testing.T) {
	cases := []struct {
		name, src, pos, want string
	}{
		{"yaml syntax", "name: x\n  bad: [", "s.yaml:2", "yaml: "},
		{"empty", "", "s.yaml:1", "empty document"},
		{"not a mapping", "- a\n- b\n", "s.yaml:1:1", "spec: want a mapping, got a list"},
		{"no name", "protocol: genetlink\n", "s.yaml:1:1", "spec: no name"},
		{"name is a list", "name: [a]\n", "s.yaml:1:7", "name: want a value, got a list"},
		{"repeated key", "name: a\nname: b\n", "s.yaml:2:1", `key "name" repeated (first at line 1)`},
		{"sets not a list", "name: a\nattribute-sets: {x: 1}\n", "s.yaml:2:17", "attribute-sets: want a list, got a mapping"},
		{"attribute value", "name: a\nattribute-sets:\n  - name: s\n    attributes:\n      - name: x\n        type: u8\n        value: one\n",
			"s.yaml:7:16", `attribute value: want an integer, got "one"`},
		{"attribute value range", "name: a\nattribute-sets:\n  - name: s\n    attributes:\n      - {name: x, type: u8, value: -1}\n",
			"s.yaml:5:36", "attribute value: -1 out of range"},
		{"attribute without name", "name: a\nattribute-sets:\n  - name: s\n    attributes:\n      - {type: u8}\n", "s.yaml:5:9", "attribute: no name"},
		{"multi-attr not bool", "name: a\nattribute-sets:\n  - name: s\n    attributes:\n      - {name: x, type: u8, multi-attr: maybe}\n",
			"s.yaml:5:41", `multi-attr: want true or false, got "maybe"`},
		{"definition without type", "name: a\ndefinitions:\n  - name: d\n", "s.yaml:3:5", "definition: want a name and a type"},
		{"entry without name", "name: a\ndefinitions:\n  - {name: d, type: enum, entries: [{value: 1}]}\n", "s.yaml:3:37", "entry: no name"},
		{"enum-model", "name: a\noperations:\n  enum-model: sideways\n  list: []\n", "s.yaml:3:15", "enum-model: want unified or directional"},
		{"notify and event", "name: a\noperations:\n  list:\n    - {name: o, notify: p, event: {attributes: []}}\n", "s.yaml:4:7", "both notify and event"},
		{"directional reserved", "name: a\noperations:\n  enum-model: directional\n  list:\n    - {name: o}\n", "s.yaml:5:7", "neither a request nor a notification"},
		{"alias to nothing useful", "name: a\nattribute-sets: &x [*x]\n", "s.yaml:2:17", "attribute set: want a mapping, got a list"},
		{"mcast group without name", "name: a\nmcast-groups:\n  list:\n    - {c-define-name: X}\n", "s.yaml:4:7", "mcast group: no name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSpec("s.yaml", []byte(c.src))
			wantErr(t, err, c.pos, c.want)
		})
	}
}

func TestParseSpecValues(t *testing.T) {
	s, err := ParseSpec("s.yaml", []byte(`
name: fam
protocol: genetlink-c
version: 2
definitions:
  - {name: e, type: enum, value-start: 3, entries: [a, b, {name: c, value: 10}, d]}
  - {name: f, type: flags, entries: [x, y]}
  - {name: k, type: const, value: 0x10}
attribute-sets:
  - name: s
    attributes:
      - {name: a, type: u8}
      - {name: b, type: u8, value: 5}
      - {name: c, type: u8}
  - name: sub
    subset-of: s
    attributes:
      - {name: c}
operations:
  list:
    - {name: one, attribute-set: s, do: {request: {attributes: [a]}}}
    - {name: two, value: 7, notify: one}
    - {name: three, attribute-set: s, event: {attributes: [a]}, mcgrp: g}
  # aliases are followed
  fixed-header: &h hdr
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range s.Definitions {
		for _, e := range d.Entries {
			got = append(got, d.Name+"."+e.Name+"="+strconvI(e.Value))
		}
	}
	for _, a := range s.AttributeSets[0].Attributes {
		got = append(got, "attr "+a.Name+"="+strconvI(a.Value))
	}
	for _, op := range s.Operations.List {
		got = append(got, "op "+op.Name+"="+strconvI(op.ReqValue)+"/"+strconvI(op.RspValue))
	}
	want := "e.a=3 e.b=4 e.c=10 e.d=11 f.x=0 f.y=1 attr a=1 attr b=5 attr c=6 op one=1/1 op two=7/7 op three=8/8"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("got  %s\nwant %s", g, want)
	}
	if s.Name != "fam" || s.Protocol != ProtocolGenetlinkC || s.Version != 2 || s.Operations.FixedHeader != "hdr" {
		t.Fatalf("spec %+v", s)
	}
	if s.Operations.List[2].Mcgrp != "g" || !s.Operations.List[2].Event || s.Operations.List[1].Notify != "one" {
		t.Fatalf("ops %+v", s.Operations.List)
	}
}

func TestParseDirectional(t *testing.T) {
	// The example of Documentation/userspace-api/netlink/genetlink-legacy.rst.
	s, err := ParseSpec("d.yaml", []byte(`
name: d
operations:
  enum-model: directional
  list:
    - {name: a, do: {request: {value: 2, attributes: []}, reply: {value: 1, attributes: []}}}
    - {name: b, notify: a}
    - {name: c, notify: a, value: 7}
    - {name: d, do: {request: {attributes: []}, reply: {attributes: []}}}
    - {name: e, dump: {request: {attributes: []}}}
    - {name: f, event: {attributes: []}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range s.Operations.List {
		got = append(got, op.Name+"="+strconvI(op.ReqValue)+"/"+strconvI(op.RspValue))
	}
	if g, want := strings.Join(got, " "), "a=2/1 b=-1/2 c=-1/7 d=3/8 e=4/-1 f=-1/9"; g != want {
		t.Fatalf("got  %s\nwant %s", g, want)
	}
}

const errSpec = `name: fam
definitions:
  - {name: e, type: enum, entries: [a, {name: big, value: 300}]}
  - {name: st, type: struct, members: [{name: m, type: u8}]}
attribute-sets:
  - name: s
    attributes:
      - {name: a, type: u32}
      - {name: b, type: string}
      - {name: n, type: nest, nested-attributes: s}
operations:
  list:
    - {name: get, attribute-set: s, do: {request: {attributes: [a]}, reply: {attributes: [a]}}}
    - {name: set, attribute-set: s, do: {request: {attributes: [a]}}}
    - {name: ntf, notify: get, mcgrp: g}
mcast-groups:
  list: [{name: g}, {name: h}]
`

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, from, to, pos, want string
	}{
		{"unknown nested set", "nested-attributes: s}", "nested-attributes: nope}", "s.yaml:10:50", "nested-attributes nope is not an attribute set"},
		{"unknown enum", "{name: a, type: u32}", "{name: a, type: u32, enum: nope}", "s.yaml:8:36", "enum nope is not an enum"},
		{"enum is a struct", "{name: a, type: u32}", "{name: a, type: u32, enum: st}", "s.yaml:8:36", "enum st is not an enum"},
		{"unknown struct", "{name: b, type: string}", "{name: b, type: binary, struct: nope}", "s.yaml:9:41", "struct nope is not a struct"},
		{"struct in itself", "{name: m, type: u8}", "{name: m, type: binary, struct: st}", "s.yaml:4:72", "struct st contains itself"},
		{"member type", "{name: m, type: u8}", "{name: m, type: nest}", "s.yaml:4:40", "type nest cannot be in a struct"},
		{"no type", "{name: b, type: string}", "{name: b}", "s.yaml:9:9", "attribute b of set s has no type"},
		{"subset of unknown", "  - name: s\n", "  - name: t\n    subset-of: u\n    attributes: [{name: a}]\n  - name: s\n", "s.yaml:7:16", "subset of unknown set u"},
		{"subset attribute unknown", "  - name: s\n", "  - name: t\n    subset-of: s\n    attributes: [{name: zz}]\n  - name: s\n", "s.yaml:8:18", "attribute zz of subset t is not in s"},
		{"set twice", "  - name: s\n", "  - name: s\n    attributes: []\n  - name: s\n", "s.yaml:8:5", "attribute set s defined twice"},
		{"notify unknown", "notify: get,", "notify: nope,", "s.yaml:15:27", "notifies unknown operation nope"},
		{"unknown op set", "{name: set, attribute-set: s,", "{name: set, attribute-set: zz,", "s.yaml:14:34", "attribute set zz not defined"},
		{"unknown fixed header", "list:\n    - {name: get", "fixed-header: nope\n  list:\n    - {name: get", "s.yaml:12:17", "struct nope is not a struct"},
		{"protocol", "name: fam\n", "name: fam\nprotocol: netlink-raw\n", "s.yaml:1:1", "protocol netlink-raw is not generic netlink"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(errSpec, c.from, c.to, 1)
			if src == errSpec {
				t.Fatalf("%q not in the spec", c.from)
			}
			s, err := ParseSpec("s.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Compile(s, nil)
			wantErr(t, err, c.pos, c.want)
			if c.name == "protocol" && !errors.Is(err, ErrUnsupportedProtocol) {
				t.Fatalf("%v does not wrap ErrUnsupportedProtocol", err)
			}
		})
	}
	s, err := ParseSpec("s.yaml", []byte(errSpec))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(s, nil); err != nil {
		t.Fatal(err)
	}
}

func TestOverrideErrors(t *testing.T) {
	s, err := ParseSpec("s.yaml", []byte(errSpec))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src, pos, want string
		parse                bool // the error is ParseOverride's
	}{
		{"no family", "notifications: []\n", "o.yaml:1:1", "override: no family", true},
		{"unknown key", "family: fam\nformats: exmpl\n", "o.yaml:2:10", `override: unknown key "formats"`, true},
		{"format", "family: fam\nformat: json\n", "o.yaml:2:9", `format: want exmpl, got "json"`, true},
		{"op and cmd", "family: fam\nnotifications:\n  - {group: g, op: get, cmd: 3}\n", "o.yaml:3:5", "want exactly one of op, cmd and enum", true},
		{"none of op cmd enum", "family: fam\nnotifications:\n  - {group: g}\n", "o.yaml:3:5", "want exactly one of op, cmd and enum", true},
		{"no group", "family: fam\nnotifications:\n  - {op: get}\n", "o.yaml:3:5", "notification: no group", true},
		{"cmd without set", "family: fam\nnotifications:\n  - {group: g, cmd: 3, name: x}\n", "o.yaml:3:5", "cmd needs name and attribute-set", true},
		{"cmd range", "family: fam\nnotifications:\n  - {group: g, cmd: 256, name: x, attribute-set: s}\n", "o.yaml:3:21", "cmd: 256 out of range 0..255", true},
		{"op with name", "family: fam\nnotifications:\n  - {group: g, op: get, name: x}\n", "o.yaml:3:31", "op takes its name and attribute set from the spec", true},
		{"meta key", "family: fam\nmeta: {sequence: a}\n", "o.yaml:2:18", `meta: unknown key "sequence"`, true},
		{"other family", "family: other\n", "o.yaml:1:1", "override is for family other", false},
		{"unknown group", "family: fam\nnotifications:\n  - {group: zz, op: ntf}\n", "o.yaml:3:13", "group zz is not a multicast group of fam (g, h)", false},
		{"unknown op", "family: fam\nnotifications:\n  - {group: g, op: zz}\n", "o.yaml:3:20", "op zz is not an operation of fam", false},
		{"unknown enum", "family: fam\nnotifications:\n  - {group: g, enum: zz, attribute-set: s}\n", "o.yaml:3:22", "enum zz is not an enum definition of fam", false},
		{"enum value range", "family: fam\nnotifications:\n  - {group: g, enum: e, attribute-set: s}\n", "s.yaml:3:40", "enum e entry big: value 300 is not a message id", false},
		{"unknown set", "family: fam\nnotifications:\n  - {group: g, cmd: 9, name: x, attribute-set: zz}\n", "o.yaml:3:48", "attribute set zz not defined", false},
		{"mapped twice", "family: fam\nnotifications:\n  - {group: h, cmd: 9, name: x, attribute-set: s}\n  - {group: h, cmd: 9, name: y, attribute-set: s}\n",
			"o.yaml:4:21", "group h cmd 9 is already mapped at o.yaml:3:21", false},
		{"any twice", "family: fam\nnotifications:\n  - {group: \"*\", cmd: any, name: x, attribute-set: s}\n  - {group: \"*\", cmd: any, name: y, attribute-set: s}\n",
			"o.yaml:4:23", "group * cmd any is already mapped at o.yaml:3:23", false},
		{"meta unknown attribute", "family: fam\nmeta: {seq: zz}\n", "o.yaml:2:13", "meta seq: no message of fam has an attribute zz", false},
		{"meta wrong type", "family: fam\nmeta: {seq: b}\n", "o.yaml:2:13", "meta seq: attribute b of set s cannot be the event's seq", false},
		{"meta msg wrong type", "family: fam\nmeta: {msg: a}\n", "o.yaml:2:13", "meta msg: attribute a of set s cannot be the event's msg", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := ParseOverride("o.yaml", []byte(c.src))
			if c.parse {
				wantErr(t, err, c.pos, c.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = Compile(s, o)
			wantErr(t, err, c.pos, c.want)
		})
	}
	// In the directional model a request without reply has no id from the kernel.
	d, err := ParseSpec("d.yaml", []byte("name: d\nattribute-sets: [{name: s, attributes: []}]\noperations:\n  enum-model: directional\n  list:\n    - {name: set, attribute-set: s, do: {request: {attributes: []}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOverride("o.yaml", []byte("family: d\nnotifications: [{group: g, op: set}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(d, o)
	wantErr(t, err, "o.yaml:2:32", "op set has no message from the kernel")
}

func strconvI(v int64) string {
	if v < 0 {
		return "-" + strconvI(-v)
	}
	if v < 10 {
		return string(rune('0' + v))
	}
	return strconvI(v/10) + string(rune('0'+v%10))
}

func TestParseAliasBomb(t *testing.T) {
	// Each level refers 100 times to the level below: 100^3 type-value
	// names from a file of a few kilobytes.
	refs := func(alias string) string { return strings.TrimSuffix(strings.Repeat(alias+", ", 100), ", ") }
	src := "x: &n a\n" +
		"y: &tv [" + refs("*n") + "]\n" +
		"z: &a {name: a, type: u8, type-value: *tv}\n" +
		"w: &s {name: s, attributes: [" + refs("*a") + "]}\n" +
		"name: bomb\nattribute-sets: [" + refs("*s") + "]\n"
	_, err := ParseSpec("bomb.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "aliases expand the document too much") {
		t.Fatalf("got %v", err)
	}
	// The same with one reference a level parses.
	src = strings.NewReplacer(refs("*n"), "*n", refs("*a"), "*a", refs("*s"), "*s").Replace(src)
	if _, err := ParseSpec("bomb.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}
