package ynl

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func typesFamily(t testing.TB) *Family {
	t.Helper()
	return mustCompile(t, "testdata/types.yaml", readTestdata(t, "types.yaml"), "", nil)
}

// deepTree nests n "tree" attributes (35 in main, 2 in tree) around a leaf.
func deepTree(n int) []byte {
	b := nla(1, u8(9))
	for i := 0; i < n-1; i++ {
		b = nest(2, b)
	}
	return nest(35, b)
}

func TestDecodeTypes(t *testing.T) {
	f := typesFamily(t)
	m := f.Lookup("events", 2)
	if m == nil || m.Name != "ntf" || m.AttributeSet != "main" {
		t.Fatalf("events/2 = %+v", m)
	}
	pair := cat(u16(1), u16(0xffff), []byte{0, 0x11, 0x22, 0xaa, 0xbb, 0xcc}, []byte("ab\x00\x00"), []byte{1, 3}, be32(0x01020304))
	ip6 := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	uuid := []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	deepJSON := `"tree":` + strings.Repeat(`{"tree":`, 15) + `{}` + strings.Repeat(`}`, 15)
	cases := []struct {
		name    string
		in      []byte
		want    string
		raw     string
		unknown int
		badLen  int
		tooDeep int
	}{
		{name: "empty", in: nil, want: `{}`},
		{name: "u8", in: nla(1, u8(7)), want: `{"u8":7}`},
		{name: "unsigned max", in: cat(nla(2, u16(65535)), nla(3, u32(4294967295)), nla(4, u64(18446744073709551615))),
			want: `{"u16":65535,"u32":4294967295,"u64":"18446744073709551615"}`},
		{name: "signed", in: cat(nla(5, u8(0xff)), nla(6, u16(0xfffe)), nla(7, u32(0xfffffffd)), nla(8, u64(1<<63))),
			want: `{"s8":-1,"s16":-2,"s32":-3,"s64":"-9223372036854775808"}`},
		{name: "uint sint", in: cat(nla(9, u32(5)), nla(9, u64(1<<40)), nla(10, u32(0xfffffffb)), nla(10, u64(0xffffff0000000000))),
			want: `{"uint":5,"uint":1099511627776,"sint":-5,"sint":-1099511627776}`},
		{name: "uint of 2 bytes", in: nla(9, u16(5)), want: `{}`, raw: `[{"path":"","type":9,"data":"BQA="}]`, badLen: 1},
		{name: "string", in: nla(11, strz("h\u00e9llo\n\"x\"\\\x01\x7f")), want: `{"str":"h` + "\u00e9" + `llo\n\"x\"\\\u0001` + "\x7f" + `"}`},
		{name: "string cut at NUL", in: nla(11, []byte("ab\x00garbage")), want: `{"str":"ab"}`},
		{name: "string unterminated", in: nla(11, []byte("abc")), want: `{"str":"abc"}`},
		{name: "string invalid utf-8", in: nla(11, []byte("a\xffb\xe2\x80\xa8\x00")), want: `{"str":"a\ufffdb\u2028"}`},
		{name: "binary", in: nla(12, []byte{0xde, 0xad}), want: `{"bin":"dead"}`},
		{name: "flag", in: nla(13, nil), want: `{"flag":true}`},
		{name: "flag with data", in: nla(13, u8(1)), want: `{}`, raw: `[{"path":"","type":13,"data":"AQ=="}]`, badLen: 1},
		{name: "nest", in: nest(14, nla(1, u32(1)), nla(2, strz("a"))), want: `{"nest":{"id":1,"name":"a"}}`},
		{name: "nest flags masked", in: nla(14|0x4000|0x8000, nla(1|0x4000, u32(1))), want: `{"nest":{"id":1}}`},
		{name: "multi split", in: cat(nla(15, u32(1)), nla(1, u8(2)), nla(15, u32(3))), want: `{"multi":[1,3],"u8":2}`},
		{name: "multi one", in: nla(15, u32(1)), want: `{"multi":[1]}`},
		{name: "multi bad length", in: cat(nla(1, u8(2)), nla(15, u8(1)), nla(15, u32(3))), want: `{"u8":2,"multi":[3]}`,
			raw: `[{"path":"","type":15,"data":"AQ=="}]`, badLen: 1},
		{name: "multi all bad", in: cat(nla(1, u8(2)), nla(15, u8(1))), want: `{"u8":2}`, raw: `[{"path":"","type":15,"data":"AQ=="}]`, badLen: 1},
		{name: "big-endian", in: nla(16, be16(0x1234)), want: `{"be16":4660}`},
		{name: "mac", in: nla(17, []byte{0, 0x11, 0x22, 0xaa, 0xbb, 0xcc}), want: `{"mac":"00:11:22:aa:bb:cc"}`},
		{name: "ipv4 u32", in: nla(18, be32(0x0a000001)), want: `{"ip4":"10.0.0.1"}`},
		{name: "ipv4 binary", in: nla(19, []byte{192, 168, 1, 2}), want: `{"ip4bin":"192.168.1.2"}`},
		{name: "ipv6", in: nla(20, ip6), want: `{"ip6":"2001:db8::1"}`},
		{name: "ipv6 mapped", in: nla(20, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}), want: `{"ip6":"::ffff:1.2.3.4"}`},
		{name: "ipv6 short", in: nla(20, []byte{1, 2, 3, 4}), want: `{}`, raw: `[{"path":"","type":20,"data":"AQIDBA=="}]`, badLen: 1},
		{name: "ipv4-or-v6", in: cat(nla(40, []byte{1, 2, 3, 4}), nla(40, ip6)), want: `{"ip46":"1.2.3.4","ip46":"2001:db8::1"}`},
		{name: "uuid", in: nla(21, uuid), want: `{"uuid":"12345678-9abc-def0-1234-56789abcdef0"}`},
		{name: "hex binary", in: nla(22, []byte{1, 2, 0xff}), want: `{"hexbin":"01 02 ff"}`},
		{name: "hex u32", in: nla(23, u32(0x1f)), want: `{"hexint":"0x1f"}`},
		{name: "enum", in: cat(nla(24, u32(1)), nla(24, u32(7)), nla(24, u32(5))), want: `{"color":"green","color":"blue","color":5}`},
		{name: "flags", in: cat(nla(25, u32(5)), nla(25, u32(0b1011)), nla(25, u32(0))), want: `{"feat":["a","c"],"feat":["a","b",8],"feat":[]}`},
		{name: "enum as flags", in: nla(26, u32(0b10000111)), want: `{"color-flags":["red","green","blue",4]}`},
		{name: "flags value-start", in: cat(nla(27, u8(0x10)), nla(27, u8(0x21))), want: `{"late":["e"],"late":["f",1]}`},
		{name: "struct", in: nla(28, pair), want: `{"pair":{"lo":1,"hi":-1,"mac":"00:11:22:aa:bb:cc","tag":"ab","inner":{"x":1,"y":["a","b"]},"addr":"1.2.3.4"}}`},
		{name: "struct longer", in: nla(28, cat(pair, u32(0))), want: `{"pair":{"lo":1,"hi":-1,"mac":"00:11:22:aa:bb:cc","tag":"ab","inner":{"x":1,"y":["a","b"]},"addr":"1.2.3.4"}}`},
		{name: "struct short", in: nla(28, pair[:19]), want: `{}`, raw: `[{"path":"","type":28,"data":"AQD//wARIqq7zGFiAAABAwECAw=="}]`, badLen: 1},
		{name: "sub-type array", in: nla(29, cat(u32(1), u32(2), u32(3))), want: `{"u32s":[1,2,3]}`},
		{name: "sub-type array bad", in: nla(29, []byte{1, 2, 3, 4, 5}), want: `{}`, raw: `[{"path":"","type":29,"data":"AQIDBAU="}]`, badLen: 1},
		{name: "indexed-array nest", in: nest(30, nest(1, nla(1, u32(1))), nest(2, nla(1, u32(2)))), want: `{"array":[{"id":1},{"id":2}]}`},
		{name: "array-nest", in: nest(37, nest(1, nla(1, u32(1)))), want: `{"old-array":[{"id":1}]}`},
		{name: "indexed-array scalars", in: nla(31, cat(nla(1, u16(5)), nla(2, u32(6)), nla(3, u16(7)))), want: `{"u16s":[5,7]}`,
			raw: `[{"path":"u16s","type":2,"data":"BgAAAA=="}]`, badLen: 1},
		{name: "nest-type-value", in: nest(32, nest(3, nest(7, nla(1, u32(9))), nest(8, nla(2, strz("x")))), nest(4)),
			want: `{"tv":{"3":{"7":{"id":9},"8":{"name":"x"}},"4":{}}}`},
		{name: "bitfield32", in: nla(33, cat(u32(5), u32(7))), want: `{"bf":{"value":["a","c"],"selector":["a","b","c"]}}`},
		{name: "pad skipped", in: cat(nla(34, u32(0)), nla(1, u8(1))), want: `{"u8":1}`},
		{name: "too deep", in: deepTree(20), want: `{` + deepJSON + `}`, raw: `[{"path":"` + strings.TrimSuffix(strings.Repeat("tree.", 16), ".") + `","type":2,"data":"` + b64(deepTree(20)[4+4*15+4:]) + `"}]`, tooDeep: 1},
		{name: "multi nests", in: cat(nest(36, nla(1, u32(1))), nest(36, nla(1, u32(2)))), want: `{"nests":[{"id":1},{"id":2}]}`},
		{name: "subset", in: nest(38, nla(2, strz("x")), nla(1, u32(1))), want: `{"subset":{"name":"x"}}`,
			raw: `[{"path":"subset","type":1,"data":"AQAAAA=="}]`, unknown: 1},
		{name: "escaped key", in: nla(39, u8(1)), want: `{"odd \"name\"":1}`},
		{name: "multi strings", in: cat(nla(41, strz("a")), nla(41, strz("b"))), want: `{"strs":["a","b"]}`},
		{name: "unknown type as binary", in: nla(42, []byte{1}), want: `{"future":"01"}`},
		{name: "explicit values", in: cat(nla(100, u8(1)), nla(101, u8(2))), want: `{"later":1,"after":2}`},
		{name: "unknown attribute", in: cat(nla(50, []byte{1, 2, 3}), nla(1, u8(1)), nla(0, nil)), want: `{"u8":1}`,
			raw: `[{"path":"","type":50,"data":"AQID"},{"path":"","type":0,"data":""}]`, unknown: 2},
		{name: "bad length", in: cat(nla(3, u16(1)), nla(14, nla(2, strz("n")))), want: `{"nest":{"name":"n"}}`,
			raw: `[{"path":"","type":3,"data":"AQA="}]`, badLen: 1},
		{name: "unknown nested", in: nest(14, nest(14, nla(9, nil))), want: `{"nest":{}}`,
			raw: `[{"path":"nest","type":14,"data":"BAAJAA=="}]`, unknown: 1},
		{name: "unaligned last", in: nla(12, []byte{1})[:5], want: `{"bin":"01"}`},
	}
	var out Output
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out.Reset()
			if err := m.Decode(&out, c.in); err != nil {
				t.Fatal(err)
			}
			if string(out.JSON) != c.want {
				t.Errorf("JSON\n got %s\nwant %s", out.JSON, c.want)
			}
			if string(out.Raw) != c.raw {
				t.Errorf("Raw\n got %s\nwant %s", out.Raw, c.raw)
			}
			if out.Unknown != c.unknown || out.BadLength != c.badLen || out.TooDeep != c.tooDeep {
				t.Errorf("unknown/badlen/toodeep %d/%d/%d, want %d/%d/%d", out.Unknown, out.BadLength, out.TooDeep, c.unknown, c.badLen, c.tooDeep)
			}
			if !json.Valid(out.JSON) || (len(out.Raw) > 0 && !json.Valid(out.Raw)) {
				t.Errorf("invalid JSON: %s %s", out.JSON, out.Raw)
			}
		})
	}
}

func TestDecodeFixedHeader(t *testing.T) {
	f := typesFamily(t)
	m := f.Lookup("events", 4)
	if m == nil || m.Name != "hdr-evt" {
		t.Fatalf("events/4 = %v", m)
	}
	var out Output
	hdr := cat(u32(3), u8(1), u8(0), be16(80))
	if err := m.Decode(&out, cat(hdr, nla(1, u32(5)))); err != nil {
		t.Fatal(err)
	}
	if want := `{"ifindex":3,"kind":"green","port":80,"id":5}`; string(out.JSON) != want {
		t.Fatalf("got %s, want %s", out.JSON, want)
	}
	out.Reset()
	err := m.Decode(&out, hdr[:7])
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "fixed header hdr needs 8 bytes, payload has 7") {
		t.Fatalf("truncated header: %v", err)
	}
	// Offsets in errors count from the payload's start, header included.
	err = m.Decode(&out, cat(hdr, nla(1, u32(5)), []byte{1, 2}))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at offset 16") {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	m := typesFamily(t).Lookup("events", 2)
	bad := func(l uint16) []byte { return cat(u16(l), u16(1), []byte{1, 0, 0, 0}) }
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"length below header", cat(nla(1, u8(1)), bad(3)), "attribute at offset 8 has length 3 with 8 bytes left"},
		{"length past end", bad(9), "attribute at offset 0 has length 9 with 8 bytes left"},
		{"trailing bytes", cat(nla(1, u8(1)), []byte{4, 0}), "2 trailing bytes at offset 8"},
		{"broken nest", nest(14, nla(1, u32(1)), []byte{9, 0, 1, 0}), "attribute at offset 12 has length 9 with 4 bytes left"},
		{"broken array", nla(30, cat(nest(1, nla(1, u32(1))), []byte{1})), "1 trailing bytes at offset 16"},
		{"broken type-value", nest(32, nest(3, []byte{0, 0})), "2 trailing bytes at offset 8"},
		{"broken multi nest", cat(nest(36, nla(1, u32(1))), nest(36, []byte{5, 0, 1, 0})), "attribute at offset 16 has length 5 with 4 bytes left"},
	}
	var out Output
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out.Reset()
			out.JSON = append(out.JSON, "prefix"...)
			err := m.Decode(&out, c.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if string(out.JSON) != "prefix" || len(out.Raw) != 0 {
				t.Fatalf("output after error: %q %q", out.JSON, out.Raw)
			}
		})
	}
}

func TestDecodeAppends(t *testing.T) {
	m := typesFamily(t).Lookup("events", 2)
	var out Output
	for i := 0; i < 2; i++ {
		if err := m.Decode(&out, cat(nla(1, u8(uint8(i))), nla(60, nil))); err != nil {
			t.Fatal(err)
		}
	}
	if string(out.JSON) != `{"u8":0}{"u8":1}` || string(out.Raw) != `[{"path":"","type":60,"data":""}][{"path":"","type":60,"data":""}]` || out.Unknown != 2 {
		t.Fatalf("got %s %s %d", out.JSON, out.Raw, out.Unknown)
	}
	out.Reset()
	if len(out.JSON) != 0 || len(out.Raw) != 0 || out.Unknown != 0 || cap(out.JSON) == 0 {
		t.Fatalf("reset: %+v", out)
	}
}

func TestLookup(t *testing.T) {
	f := typesFamily(t)
	for _, c := range []struct {
		group string
		cmd   uint8
		want  string
	}{
		{"events", 2, "ntf"}, {"events", 3, "evt"}, {"events", 4, "hdr-evt"},
		{"other", 2, ""}, {"events", 1, ""}, // a reply is not a notification
		{"events", 5, "anywhere"}, {"other", 5, "anywhere"}, {"unknown", 5, "anywhere"}, {"unknown", 2, ""},
	} {
		m := f.Lookup(c.group, c.cmd)
		got := ""
		if m != nil {
			got = m.Name
		}
		if got != c.want {
			t.Errorf("Lookup(%s, %d) = %q, want %q", c.group, c.cmd, got, c.want)
		}
		if g := f.Group(c.group).Lookup(c.cmd); g != m {
			t.Errorf("Group(%s).Lookup(%d) differs", c.group, c.cmd)
		}
	}
	if g := f.Groups(); strings.Join(g, ",") != "events,other" {
		t.Fatalf("groups %v", g)
	}
	// An override wins for its (group, cmd); "cmd: any" fills only what
	// nothing else maps.
	ov := []byte(`
family: types
notifications:
  - { group: events, cmd: 2, name: mine, attribute-set: inner }
  - { group: "*", cmd: 9, name: star, attribute-set: inner }
  - { group: other, cmd: any, name: rest, attribute-set: inner }
  - { group: events, op: get }
`)
	f = mustCompile(t, "types.yaml", readTestdata(t, "types.yaml"), "types.override.yaml", ov)
	for _, c := range []struct {
		group string
		cmd   uint8
		want  string
	}{
		{"events", 2, "mine"}, {"events", 3, "evt"}, {"events", 9, "star"}, {"unknown", 9, "star"},
		{"other", 9, "star"}, {"other", 5, "anywhere"}, {"other", 200, "rest"}, {"events", 200, ""},
		{"events", 1, "get"},
	} {
		m := f.Lookup(c.group, c.cmd)
		got := ""
		if m != nil {
			got = m.Name
		}
		if got != c.want {
			t.Errorf("override: Lookup(%s, %d) = %q, want %q", c.group, c.cmd, got, c.want)
		}
	}
	var list []string
	for _, n := range f.Notifications() {
		if n.AnyCmd {
			list = append(list, n.Group+"/any="+n.Op)
		} else {
			list = append(list, n.Group+"/"+strconv.Itoa(int(n.Cmd))+"="+n.Op)
		}
	}
	want := "events/1=get events/2=mine events/3=evt events/4=hdr-evt events/5=anywhere events/9=star " +
		"other/5=anywhere other/9=star other/any=rest */5=anywhere */9=star"
	if got := strings.Join(list, " "); got != want {
		t.Fatalf("notifications\n got %s\nwant %s", got, want)
	}
}

// TestDecodeConcurrent decodes with one Message from several goroutines,
// each with its own Output (run with -race).
func TestDecodeConcurrent(t *testing.T) {
	m := typesFamily(t).Lookup("events", 2)
	payload := cat(nla(1, u8(7)), nest(14, nla(1, u32(1))), nla(25, u32(5)), nla(77, nil), deepTree(18))
	var want Output
	if err := m.Decode(&want, payload); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for range 4 {
		go func() {
			var out Output
			for range 200 {
				out.Reset()
				if err := m.Decode(&out, payload); err != nil {
					done <- err
					return
				}
				if string(out.JSON) != string(want.JSON) || string(out.Raw) != string(want.Raw) {
					done <- errors.New("different output: " + string(out.JSON))
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
