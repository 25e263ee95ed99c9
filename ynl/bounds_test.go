package ynl

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Regression tests for the bounds a hostile spec or override must not get
// past: every one uses inputs just big enough to show the bound and checks
// an error or a count, never a duration.

// parseText parses spec and, if not empty, override ov.
func parseText(t testing.TB, spec, ov string) (*Spec, *Override) {
	t.Helper()
	s, err := ParseSpec("s.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	var o *Override
	if ov != "" {
		if o, err = ParseOverride("o.yaml", []byte(ov)); err != nil {
			t.Fatal(err)
		}
	}
	return s, o
}

// compileText parses spec (and override, if not empty) and compiles them.
func compileText(t testing.TB, spec, ov string) (*Family, error) {
	t.Helper()
	return Compile(parseText(t, spec, ov))
}

// compileWork compiles like compileText and returns the compiler's work
// count.
func compileWork(t testing.TB, spec, ov string) int {
	t.Helper()
	s, o := parseText(t, spec, ov)
	c := newCompiler(s, o)
	if _, err := c.compile(o); err != nil {
		t.Fatal(err)
	}
	return c.work
}

const structSpec = `name: fam
definitions:
  - {name: empty, type: struct, members: []}
  - {name: st, type: struct, members: [{name: m, type: u8}]}
attribute-sets:
  - name: s
    attributes:
      - {name: a, type: binary, struct: st}
operations:
  list:
    - {name: ntf, attribute-set: s, event: {attributes: [a]}, mcgrp: g}
`

func TestStructBounds(t *testing.T) {
	cases := []struct {
		name, from, to, pos, want string
	}{
		{"binary without len", "{name: m, type: u8}", "{name: m, type: binary}", "s.yaml:4:40", "struct st member m: binary needs a positive len"},
		{"string of len 0", "{name: m, type: u8}", "{name: m, type: string, len: 0}", "s.yaml:4:40", "struct st member m: string needs a positive len"},
		{"pad without len", "{name: m, type: u8}", "{name: m, type: pad}", "s.yaml:4:40", "struct st member m: pad needs a positive len"},
		{"empty struct member", "{name: m, type: u8}", "{name: m, type: binary, struct: empty}", "s.yaml:4:72", "struct empty has no members"},
		{"empty struct attribute", "struct: st}", "struct: empty}", "s.yaml:8:41", "struct empty has no members"},
		{"empty fixed header", "list:\n", "fixed-header: empty\n  list:\n", "s.yaml:10:17", "struct empty has no members"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(structSpec, c.from, c.to, 1)
			if src == structSpec {
				t.Fatalf("%q not in the spec", c.from)
			}
			_, err := compileText(t, src, "")
			wantErr(t, err, c.pos, c.want)
		})
	}
	// An empty struct nothing uses is harmless.
	if _, err := compileText(t, structSpec, ""); err != nil {
		t.Fatal(err)
	}
}

// nestedStructs is a spec whose struct s<depth> holds s<depth-1> ... s1,
// each twice: depth levels of structs, 2^(depth-1) bytes.
func nestedStructs(depth int) string {
	var b strings.Builder
	b.WriteString("name: fam\ndefinitions:\n  - {name: s1, type: struct, members: [{name: x, type: u8}]}\n")
	for i := 2; i <= depth; i++ {
		fmt.Fprintf(&b, "  - {name: s%d, type: struct, members: [{name: a, type: binary, struct: s%d}, {name: b, type: binary, struct: s%d}]}\n", i, i-1, i-1)
	}
	fmt.Fprintf(&b, "attribute-sets:\n  - name: s\n    attributes:\n      - {name: a, type: binary, struct: s%d}\n", depth)
	return b.String()
}

func TestStructDepth(t *testing.T) {
	f, err := compileText(t, nestedStructs(maxDepth), "")
	if err != nil {
		t.Fatal(err)
	}
	// The deepest accepted: 16 levels, the output bounded by the payload.
	m := &Message{Name: "s", fam: f, set: f.sets["s"], top: f.sets["s"]}
	var out Output
	payload := nla(1, make([]byte, 1<<(maxDepth-1)))
	if err := m.Decode(&out, payload); err != nil {
		t.Fatal(err)
	}
	if len(out.JSON) > 32*len(payload) {
		t.Fatalf("%d bytes of JSON from %d of payload", len(out.JSON), len(payload))
	}
	_, err = compileText(t, nestedStructs(maxDepth+1), "")
	// s17's first member holds s16, 16 levels deep already.
	wantErr(t, err, fmt.Sprintf("s.yaml:%d:73", maxDepth+3), "struct s17: structs nest more than 16 deep")
}

// flagSpec has a flags enum of 8 entries with long names and n u32
// attributes of that enum.
func flagSpec(n int) string {
	var b strings.Builder
	b.WriteString("name: fam\ndefinitions:\n  - name: f\n    type: flags\n    entries:\n")
	for i := range 8 {
		fmt.Fprintf(&b, "      - %c%s\n", 'a'+i, strings.Repeat("x", maxNameLen-1))
	}
	b.WriteString("attribute-sets:\n  - name: s\n    attributes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: a%03d%s, type: u32, enum: f}\n", i, strings.Repeat("y", maxNameLen-4))
	}
	return b.String()
}

func TestFlagPrerenderBudget(t *testing.T) {
	const n = 100
	s, err := ParseSpec("s.yaml", []byte(flagSpec(n)))
	if err != nil {
		t.Fatal(err)
	}
	// Each attribute's keyed table would be 256 copies of a 260-byte key
	// and a list of up to 8 names of 258 bytes: 0.3 MiB each, 30 MiB for
	// the family if Compile rendered them before checking the budget.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f, err := Compile(s, nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*maxPrerendered {
		t.Fatalf("Compile allocated %d bytes, budget %d", alloc, maxPrerendered)
	}
	kept := 0
	for _, a := range f.sets["s"].attrs {
		if a != nil && a.keyed != nil {
			kept++
		}
	}
	if kept == 0 || kept == n {
		t.Fatalf("%d of %d attributes prerendered, want some but not all", kept, n)
	}
	// The attributes past the budget render at decode time, alike and
	// without allocating.
	m := &Message{Name: "s", fam: f, set: f.sets["s"], top: f.sets["s"]}
	payload := nla(n, u32(0b101))
	var out Output
	if err := m.Decode(&out, payload); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"a%03d%s":["a%s","c%s"]}`, n-1, strings.Repeat("y", maxNameLen-4), strings.Repeat("x", maxNameLen-1), strings.Repeat("x", maxNameLen-1))
	if string(out.JSON) != want {
		t.Fatalf("got %s", out.JSON)
	}
	if allocs := testing.AllocsPerRun(20, func() { out.Reset(); m.Decode(&out, payload) }); allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
	// The budget counts what would be rendered: flagListLen agrees with
	// appendFlagList, unknown bits included (feat-late starts at bit 4).
	types := typesFamily(t).sets["main"]
	for _, e := range []*enumTab{f.sets["s"].attrs[1].enum, types.attrs[25].enum, types.attrs[27].enum} {
		for v := range uint64(1 << 12) {
			if got, want := flagListLen(e, v), len(appendFlagList(nil, e, v)); got != want {
				t.Fatalf("flagListLen(%#x) = %d, want %d", v, got, want)
			}
		}
		if got, want := flagListLen(e, 1<<63|1), len(appendFlagList(nil, e, 1<<63|1)); got != want {
			t.Fatalf("flagListLen(1<<63|1) = %d, want %d", got, want)
		}
	}
}

func TestNameLength(t *testing.T) {
	long := strings.Repeat("n", maxNameLen+1)
	for _, c := range []struct{ name, src, pos string }{
		{"attribute", "name: a\nattribute-sets: [{name: s, attributes: [{name: " + long + ", type: u8}]}]\n", "s.yaml:2:48"},
		{"set", "name: a\nattribute-sets: [{name: " + long + ", attributes: []}]\n", "s.yaml:2:25"},
		{"enum entry", "name: a\ndefinitions: [{name: e, type: enum, entries: [" + long + "]}]\n", "s.yaml:2:47"},
		{"flags entry", "name: a\ndefinitions: [{name: e, type: flags, entries: [{name: " + long + "}]}]\n", "s.yaml:2:55"},
		{"definition", "name: a\ndefinitions: [{name: " + long + ", type: enum, entries: []}]\n", "s.yaml:2:22"},
		{"member", "name: a\ndefinitions: [{name: d, type: struct, members: [{name: " + long + ", type: u8}]}]\n", "s.yaml:2:56"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSpec("s.yaml", []byte(c.src))
			wantErr(t, err, c.pos, fmt.Sprintf("is %d bytes, longer than %d", maxNameLen+1, maxNameLen))
		})
	}
	ok := strings.Repeat("n", maxNameLen)
	if _, err := ParseSpec("s.yaml", []byte("name: a\nattribute-sets: [{name: "+ok+", attributes: [{name: "+ok+", type: u8}]}]\n")); err != nil {
		t.Fatal(err)
	}
}

func TestSubsetLinear(t *testing.T) {
	const n = 2000
	var b strings.Builder
	b.WriteString("name: fam\nattribute-sets:\n  - name: main\n    attributes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: a%d, type: u32}\n", i)
	}
	b.WriteString("  - name: sub\n    subset-of: main\n    attributes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: a%d}\n", n-1-i)
	}
	if w := compileWork(t, b.String(), ""); w > 4*n {
		t.Fatalf("resolving a subset of %d attributes took %d steps", n, w)
	}
}

// groupSpec has groups mcast groups and, with ops, as many notifications
// naming groups of their own.
func groupSpec(groups, ops int) string {
	var b strings.Builder
	b.WriteString("name: fam\nattribute-sets: [{name: s, attributes: [{name: a, type: u32}]}]\nmcast-groups:\n  list:\n")
	for i := range groups {
		fmt.Fprintf(&b, "    - name: g%d\n", i)
	}
	b.WriteString("operations:\n  list:\n")
	for i := range ops {
		fmt.Fprintf(&b, "    - {name: o%d, attribute-set: s, event: {attributes: [a]}, mcgrp: h%d}\n", i, i)
	}
	return b.String()
}

func TestGroupsLinear(t *testing.T) {
	const n = maxGroups / 2
	if w := compileWork(t, groupSpec(n, n), ""); w > 4*2*n {
		t.Fatalf("collecting %d groups took %d steps", 2*n, w)
	}
	// The cap is enforced as the groups are collected, at the one too many.
	_, err := compileText(t, groupSpec(maxGroups+1, 0), "")
	wantErr(t, err, fmt.Sprintf("s.yaml:%d:7", 4+maxGroups+1), fmt.Sprintf("family fam has more than %d multicast groups", maxGroups))
	_, err = compileText(t, groupSpec(maxGroups, 1), "")
	wantErr(t, err, fmt.Sprintf("s.yaml:%d:69", 4+maxGroups+3), fmt.Sprintf("family fam has more than %d multicast groups", maxGroups))
	// Without mcast-groups the override's groups count.
	var ov strings.Builder
	ov.WriteString("family: fam\nnotifications:\n")
	for i := range maxGroups + 1 {
		fmt.Fprintf(&ov, "  - {group: g%d, cmd: 1, name: x, attribute-set: s}\n", i)
	}
	_, err = compileText(t, groupSpec(0, 0), ov.String())
	wantErr(t, err, fmt.Sprintf("o.yaml:%d:13", 3+maxGroups), fmt.Sprintf("family fam has more than %d multicast groups", maxGroups))
}

func TestMetaLinear(t *testing.T) {
	// 4 groups x 256 enum entries: 1024 messages, all with set s of n
	// attributes.
	const n = 1000
	var b strings.Builder
	b.WriteString("name: fam\ndefinitions:\n  - {name: e, type: enum, entries: [")
	for i := range 256 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "m%d", i)
	}
	b.WriteString("]}\nattribute-sets:\n  - name: s\n    attributes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: a%d, type: u32}\n", i)
	}
	ov := "family: fam\nmeta: {seq: a1, jiffies: a2, kernel-ns: a3}\nnotifications:\n"
	for g := range 4 {
		ov += fmt.Sprintf("  - {group: g%d, enum: e, attribute-set: s}\n", g)
	}
	if w := compileWork(t, b.String(), ov); w > 3*4*n {
		t.Fatalf("checking 3 meta attributes of 1024 messages of one set of %d attributes took %d steps", n, w)
	}
}

// multiSpec has a set of n multi-attrs.
func multiSpec(n int) string {
	var b strings.Builder
	b.WriteString("name: fam\nattribute-sets:\n  - name: s\n    attributes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {name: m%d, type: u32, multi-attr: true}\n", i)
	}
	return b.String()
}

func TestMultiAttrBits(t *testing.T) {
	f, err := compileText(t, multiSpec(maxMulti), "")
	if err != nil {
		t.Fatal(err)
	}
	set := f.sets["s"]
	seen := map[[2]uint64]bool{}
	for _, a := range set.attrs[1:] {
		k := [2]uint64{uint64(a.multiWord), a.multiBit}
		if a.multiBit == 0 || seen[k] {
			t.Fatalf("%s: bit %d of word %d, not its own", a.name, a.multiBit, a.multiWord)
		}
		seen[k] = true
	}
	// Each of the 256 twice, the second round after all the first: one
	// array each, in first-seen order.
	var p, want []byte
	want = append(want, '{')
	for round := range 2 {
		for i := 1; i <= maxMulti; i++ {
			p = append(p, nla(uint16(i), u32(uint32(i*10+round)))...)
		}
	}
	for i := 1; i <= maxMulti; i++ {
		if i > 1 {
			want = append(want, ',')
		}
		want = fmt.Appendf(want, `"m%d":[%d,%d]`, i-1, i*10, i*10+1)
	}
	want = append(want, '}')
	m := &Message{Name: "s", fam: f, set: set, top: set}
	var out Output
	if err := m.Decode(&out, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.JSON, want) {
		t.Fatalf("got  %s\nwant %s", out.JSON, want)
	}
	if allocs := testing.AllocsPerRun(20, func() { out.Reset(); m.Decode(&out, p) }); allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
	_, err = compileText(t, multiSpec(maxMulti+1), "")
	wantErr(t, err, fmt.Sprintf("s.yaml:%d:9", 5+maxMulti), fmt.Sprintf("attribute set s has more than %d multi-attr attributes", maxMulti))
}

func TestFileSizeLimit(t *testing.T) {
	if maxFileSize != 1<<20 {
		t.Fatalf("maxFileSize %d", maxFileSize)
	}
	// A spec of 1 MiB + 1 bytes: the name and a comment.
	big := []byte("name: big\n#" + strings.Repeat("x", maxFileSize-11) + "\n")
	if len(big) != maxFileSize+1 {
		t.Fatal(len(big))
	}
	_, err := ParseSpec("s.yaml", big)
	wantErr(t, err, "s.yaml", "file is larger than 1048576 bytes")
	if _, err := ParseSpec("s.yaml", big[:maxFileSize-1]); err != nil {
		t.Fatal(err)
	}
	// Compressed, it is a few kilobytes; its decompressed size counts.
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(big)
	zw.Close()
	path := filepath.Join(dir, "big.yaml.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSpecFile(path); err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Fatalf("ReadSpecFile: %v", err)
	}
	_, errs := LoadRegistry(DirSource(dir, false))
	var se *SourceError
	if len(errs) != 1 || !errors.As(errs[0], &se) || se.Source != 0 || !strings.Contains(errs[0].Error(), "larger than 1048576 bytes") {
		t.Fatalf("LoadRegistry: %v", errs)
	}
}
