package ynl

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/kmod"
)

// fuzzSpecs are the seed specs: the test spec, kmod's, the project's and
// the kernel's (those present).
func fuzzSpecs(tb testing.TB) map[string][]byte {
	out := map[string][]byte{
		"testdata/types.yaml": readTestdata(tb, "types.yaml"),
		"kmod":                kmod.Spec,
	}
	files, _ := filepath.Glob(filepath.Join(kernelSpecDir, "*.yaml.gz"))
	more, _ := filepath.Glob("specs/*.yaml")
	for _, f := range append(files, more...) {
		if !strings.HasSuffix(f, ".override.yaml") {
			out[f] = readSpecFile(tb, f)
		}
	}
	return out
}

func FuzzParse(f *testing.F) {
	// Small seeds only: the fuzzer minimizes each new interesting input,
	// which takes long for the kernel's 100 KiB specs.
	for _, data := range fuzzSpecs(f) {
		if len(data) <= 16<<10 {
			f.Add(data)
		}
	}
	overrides, _ := filepath.Glob("testdata/*.override.yaml")
	more, _ := filepath.Glob("specs/*.override.yaml")
	for _, name := range append(overrides, more...) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("name: a\nattribute-sets: &x [*x]\n"))
	f.Add([]byte("a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\nname: *b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("f.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *Error", err, err)
			}
		}
		o, oerr := ParseOverride("o.yaml", data)
		if s == nil {
			return
		}
		fam, err := Compile(s, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("compile error %v is %T, not *Error", err, err)
			}
			return
		}
		if oerr == nil && o.Family == s.Name {
			Compile(s, o)
		}
		// What compiles decodes its own spec text as a payload without panic.
		var out Output
		for _, g := range append(fam.Groups(), GroupAny) {
			for cmd := range 256 {
				if m := fam.Lookup(g, uint8(cmd)); m != nil {
					out.Reset()
					if m.Decode(&out, data) == nil && !m.exmpl && !json.Valid(out.JSON) {
						t.Fatalf("invalid JSON %q", out.JSON)
					}
				}
			}
		}
	})
}

// fuzzMessages is one message per attribute set (and per notification,
// for fixed headers) of every spec that compiles, in a fixed order.
func fuzzMessages(tb testing.TB) []*Message {
	var names []string
	specs := fuzzSpecs(tb)
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*Message
	for _, n := range names {
		s, err := ParseSpec(n, specs[n])
		if err != nil {
			tb.Fatal(err)
		}
		fam, err := Compile(s, nil)
		if err != nil {
			continue // netlink-raw
		}
		for _, set := range s.AttributeSets {
			cs := fam.sets[set.Name]
			out = append(out, &Message{Name: set.Name, fam: fam, set: cs, top: cs})
		}
		out = append(out, fam.messages...)
	}
	exmpl := exmplFamily(tb)
	return append(out, exmpl.messages...)
}

func FuzzDecode(f *testing.F) {
	msgs := fuzzMessages(f)
	f.Add(uint16(0), netdevDevAdd(7, 3, 0x41))
	f.Add(uint16(1), deepTree(20))
	f.Add(uint16(2), cat(nest(14, nla(1, u32(1))), nla(15, u32(1)), nla(1, u8(2)), nla(15, u32(3)), nla(28, make([]byte, 20))))
	f.Add(uint16(3), nest(32, nest(3, nest(7, nla(1, u32(9))))))
	f.Add(uint16(4), exmplPayload("Hello from kernel at jiffies 1", 1, 2, 3))
	f.Fuzz(func(t *testing.T, sel uint16, payload []byte) {
		m := msgs[int(sel)%len(msgs)]
		var out Output
		err := m.Decode(&out, payload)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: error %v does not wrap ErrMalformed", m.Name, err)
			}
			if len(out.JSON) != 0 || len(out.Raw) != 0 {
				t.Fatalf("%s: output after error", m.Name)
			}
			return
		}
		if m.exmpl {
			return
		}
		if !json.Valid(out.JSON) {
			t.Fatalf("%s: invalid JSON %q", m.Name, out.JSON)
		}
		if len(out.Raw) > 0 && !json.Valid(out.Raw) {
			t.Fatalf("%s: invalid raw JSON %q", m.Name, out.Raw)
		}
		if n := out.Unknown + out.BadLength + out.TooDeep; (n > 0) != (len(out.Raw) > 0) {
			t.Fatalf("%s: %d raw attributes counted, raw %q", m.Name, n, out.Raw)
		}
	})
}
