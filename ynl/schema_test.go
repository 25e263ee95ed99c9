package ynl

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// messageValidators compiles, for each message f's notifications decode, a
// validator of its attrs object.
func messageValidators(t testing.TB, f *Family) map[string]*jsonschema.Schema {
	t.Helper()
	fs := f.Schema()
	out := map[string]*jsonschema.Schema{}
	for _, m := range fs.Messages {
		doc := map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": fs.Defs}
		for k, v := range m.Attrs {
			doc[k] = v
		}
		// Through JSON and back, as a schema file would be read.
		text, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		url := "urn:test:" + f.Name + ":" + m.Name
		if err := c.AddResource(url, parsed); err != nil {
			t.Fatalf("%s %s: %v", f.Name, m.Name, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			t.Fatalf("%s %s: the schema does not compile: %v\n%s", f.Name, m.Name, err, text)
		}
		out[m.Name] = sch
	}
	return out
}

// gen makes random payloads that follow a compiled spec's shape (each
// attribute of its set with a payload of its type, sometimes of another
// length), with random values: what a kernel could send.
type gen struct {
	r     *rand.Rand
	depth int
}

func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// integer returns n random bytes, often an extreme (0, all ones, the sign
// bit, around 2^53).
func (g *gen) integer(n int) []byte {
	b := g.bytes(n)
	if n == 0 {
		return b
	}
	switch g.r.IntN(6) {
	case 0:
		clear(b)
	case 1:
		for i := range b {
			b[i] = 0xff
		}
	case 2:
		if n == 8 {
			v := uint64(1)<<53 + uint64(g.r.IntN(3)) - 1
			b = u64(v)
		}
	case 3:
		clear(b)
		b[n-1] = 0x80 // host order (little endian here): the sign bit
	}
	return b
}

func (g *gen) attrs(set *attrSet) []byte {
	var out []byte
	if set == nil || g.depth > 6 {
		return out
	}
	g.depth++
	defer func() { g.depth-- }()
	for t, a := range set.attrs {
		if a == nil || g.r.IntN(3) == 0 {
			continue
		}
		n := 1
		if a.multi {
			n = 1 + g.r.IntN(3)
		}
		for range n {
			out = append(out, nla(uint16(t)|g.nestFlag(a), g.payload(a))...)
		}
	}
	if g.r.IntN(8) == 0 {
		out = append(out, nla(uint16(len(set.attrs)+g.r.IntN(5)), g.bytes(g.r.IntN(9)))...) // unknown: raw
	}
	return out
}

func (g *gen) nestFlag(a *attr) uint16 {
	if a.kind == kindNest && g.r.IntN(2) == 0 {
		return nlaFNested
	}
	return 0
}

func (g *gen) payload(a *attr) []byte {
	if g.r.IntN(20) == 0 {
		return g.bytes(g.r.IntN(12)) // any length: raw when it does not fit
	}
	switch a.kind {
	case kindU8, kindS8, kindU16, kindS16, kindU32, kindS32, kindU64, kindS64:
		return g.integer(a.kind.size())
	case kindUint, kindSint:
		return g.integer(4 * (1 + g.r.IntN(2)))
	case kindFlag:
		return nil
	case kindString:
		s := g.bytes(g.r.IntN(10))
		if g.r.IntN(2) == 0 {
			s = append([]byte("name-é"), s...)
		}
		return append(s, 0)
	case kindBitfield32:
		return g.integer(8)
	case kindBinary:
		switch {
		case a.st != nil:
			return g.bytes(a.st.size + g.r.IntN(3))
		case a.sub != kindUnknown:
			return g.integer(a.sub.size() * g.r.IntN(4))
		}
		switch a.hint {
		case hintIPv4:
			return g.bytes(4)
		case hintIPv6, hintUUID:
			return g.bytes(16)
		case hintIPv4or6:
			return g.bytes(4 + 12*g.r.IntN(2))
		}
		return g.bytes(g.r.IntN(9))
	case kindNest:
		return g.attrs(a.nested)
	case kindIndexedArray:
		var out []byte
		for i := range g.r.IntN(4) {
			var e []byte
			switch {
			case a.sub == kindNest:
				e = g.attrs(a.nested)
			case a.sub == kindString:
				e = append(g.bytes(3), 0)
			case a.sub == kindUint || a.sub == kindSint:
				e = g.integer(4 * (1 + g.r.IntN(2)))
			case a.sub.integer():
				e = g.integer(a.sub.size())
			default:
				e = g.bytes(4 + 12*g.r.IntN(2))
			}
			out = append(out, nla(uint16(i+1), e)...)
		}
		return out
	case kindNestTypeValue:
		return g.typeValue(a, a.levels)
	}
	return g.bytes(g.r.IntN(8))
}

func (g *gen) typeValue(a *attr, level int) []byte {
	var out []byte
	for range g.r.IntN(3) {
		t := uint16(g.r.IntN(300))
		if level > 1 {
			out = append(out, nla(t, g.typeValue(a, level-1))...)
		} else {
			out = append(out, nla(t, g.attrs(a.nested))...)
		}
	}
	return out
}

// schemaFamilies are the specs the schema is checked against: the test
// spec with every type, the module's, the project's and the kernel's.
func schemaFamilies(t *testing.T) []*Family {
	t.Helper()
	var out []*Family
	for name, data := range fuzzSpecs(t) {
		s, err := ParseSpec(name, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Protocol == "netlink-raw" {
			continue // not generic netlink
		}
		f, err := Compile(s, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, f)
	}
	return out
}

// Every message Decode writes, of every family's spec, fits the schema
// Schema gives: random payloads shaped by the spec (values at the
// extremes, strings with invalid UTF-8, lengths that do not fit, unknown
// attributes, nests in nests), decoded and validated with a real JSON
// Schema validator.
func TestSchemaAgreesWithDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	checked := 0
	for _, f := range schemaFamilies(t) {
		vals := messageValidators(t, f)
		for _, msg := range f.messages {
			v := vals[msg.Name]
			if v == nil || msg.exmpl {
				continue
			}
			g := gen{r: r}
			var out Output
			for i := 0; i < 300; i++ {
				payload := g.attrs(msg.set)
				if msg.fixed != nil {
					payload = append(g.bytes(align4(msg.fixed.size)), payload...)
				}
				out.Reset()
				if err := msg.Decode(&out, payload); err != nil {
					continue // malformed: no attrs are published
				}
				inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out.JSON))
				if err != nil {
					t.Fatalf("%s %s: %s is no JSON: %v", f.Name, msg.Name, out.JSON, err)
				}
				if err := v.Validate(inst); err != nil {
					t.Fatalf("%s %s: decoded\n%s\ndoes not fit its schema: %v", f.Name, msg.Name, out.JSON, err)
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d messages checked", checked)
	}
	t.Logf("%d decoded messages fit their schemas", checked)
}

// A changed event fails: a name the set does not have, a value of another
// type, a name an enum does not have.
func TestSchemaRejectsChangedAttrs(t *testing.T) {
	f := kernelFamily(t, "netdev", nil)
	v := messageValidators(t, f)["dev-add-ntf"]
	var out Output
	if err := f.Lookup("mgmt", 2).Decode(&out, vethDevAdd()); err != nil {
		t.Fatal(err)
	}
	good := string(out.JSON)
	for _, c := range []struct{ name, doc string }{
		{"as decoded", good},
		{"unknown attribute", strings.Replace(good, `"ifindex"`, `"ifidx"`, 1)},
		{"string for a number", strings.Replace(good, `"ifindex":3`, `"ifindex":"3"`, 1)},
		{"negative u32", strings.Replace(good, `"ifindex":3`, `"ifindex":-3`, 1)},
		{"unknown flag name", strings.Replace(good, `"basic"`, `"basik"`, 1)},
		{"number for flags", strings.Replace(good, `"xsk-features":[]`, `"xsk-features":0`, 1)},
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(c.doc))
		if err != nil {
			t.Fatal(err)
		}
		err = v.Validate(inst)
		if (err == nil) != (c.name == "as decoded") {
			t.Errorf("%s: %s: validation %v", c.name, c.doc, err)
		}
	}
}
