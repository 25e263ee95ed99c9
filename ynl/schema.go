package ynl

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/genlbridge/genlbridge/internal/jsonint"
)

// This file describes, as JSON Schema (2020-12), the JSON Decode writes:
// from the same compiled tables Decode walks, so that the two cannot
// disagree. Each schema is a JSON value (maps, slices, strings, numbers)
// ready for encoding/json.

// FamilySchema describes the "attrs" object of each message a family's
// events may carry.
type FamilySchema struct {
	// Messages are the messages its notifications decode, by name, in the
	// order of Notifications (each once).
	Messages []MessageSchema
	// Defs are the schemas the Messages' schemas refer to as
	// "#/$defs/<name>": the family's attribute sets and structs. The
	// caller puts them under "$defs" of the document it makes.
	Defs map[string]any
}

// MessageSchema is the schema of one message's "attrs" object.
type MessageSchema struct {
	Name  string
	Attrs map[string]any
	// Groups are the multicast groups it comes on (GroupAny: any group the
	// family does not name), Cmds its message ids (empty: any cmd).
	Groups []string
	Cmds   []int
}

// Schema returns the schemas of the family's messages. Each message
// object admits exactly the attribute names of its set (and fixed header),
// each with the JSON form Decode gives it; attributes the spec does not
// know never appear in "attrs" (they are kept in "raw"). A family of
// format exmpl has no attrs: its Messages are empty.
func (f *Family) Schema() FamilySchema {
	s := schemaBuilder{f: f, defs: map[string]any{}, sets: map[*attrSet]string{}, structs: map[*structType]string{}, used: map[string]bool{}}
	out := FamilySchema{Defs: s.defs}
	if f.Format == FormatExmpl {
		return out
	}
	byName := map[string]int{}
	for _, n := range f.Notifications() {
		m := f.Group(n.Group).any
		if !n.AnyCmd {
			m = f.Group(n.Group).msgs[n.Cmd]
		}
		if m == nil {
			continue
		}
		i, ok := byName[m.Name]
		if !ok {
			i = len(out.Messages)
			byName[m.Name] = i
			out.Messages = append(out.Messages, MessageSchema{Name: m.Name, Attrs: s.message(m)})
		}
		ms := &out.Messages[i]
		if !contains(ms.Groups, n.Group) {
			ms.Groups = append(ms.Groups, n.Group)
		}
		if !n.AnyCmd && !containsInt(ms.Cmds, int(n.Cmd)) {
			ms.Cmds = append(ms.Cmds, int(n.Cmd))
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type schemaBuilder struct {
	f       *Family
	defs    map[string]any
	sets    map[*attrSet]string
	structs map[*structType]string
	used    map[string]bool
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/$defs/" + name} }

// defName returns a $defs name for base not used yet.
func (s *schemaBuilder) defName(base string) string {
	name := base
	for i := 2; s.used[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	s.used[name] = true
	return name
}

// message is the schema of m's attrs object: its fixed header's members,
// then its set's attributes.
func (s *schemaBuilder) message(m *Message) map[string]any {
	props := map[string]any{}
	if m.fixed != nil {
		s.structMembers(m.fixed, props)
	}
	s.setProps(m.set, props)
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false,
		"description": fmt.Sprintf("%s's attributes (attribute set %s)", m.Name, m.AttributeSet)}
}

// set returns a reference to the schema of set, defining it once.
func (s *schemaBuilder) set(set *attrSet) map[string]any {
	if name, ok := s.sets[set]; ok {
		return ref(name)
	}
	name := s.defName("set-" + set.name)
	s.sets[set] = name
	props := map[string]any{}
	obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false,
		"description": "attribute set " + set.name}
	s.defs[name] = obj // before its members: a set may nest itself
	s.setProps(set, props)
	return ref(name)
}

func (s *schemaBuilder) setProps(set *attrSet, props map[string]any) {
	for _, a := range set.attrs {
		if a == nil || a.kind == kindPad {
			continue
		}
		v := s.attrValue(a)
		if a.multi {
			v = map[string]any{"type": "array", "items": v, "minItems": 1}
		}
		v = describe(v, a)
		props[a.name] = v
	}
}

// describe adds the attribute's YNL type to its schema as its description.
func describe(v any, a *attr) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	var parts []string
	parts = append(parts, typeName(a.kind))
	if a.sub != kindUnknown {
		parts = append(parts, "sub-type "+typeName(a.sub))
	}
	if a.enum != nil {
		if a.flags {
			parts = append(parts, "flags")
		} else {
			parts = append(parts, "enum")
		}
	}
	if a.hint != hintNone {
		parts = append(parts, "display-hint "+hintName(a.hint))
	}
	if a.multi {
		parts = append(parts, "multi-attr")
	}
	if _, has := m["$ref"]; has {
		// Siblings of $ref apply too in 2020-12; keep the reference alone
		// readable by wrapping it.
		return map[string]any{"allOf": []any{m}, "description": strings.Join(parts, ", ")}
	}
	if _, has := m["description"]; !has {
		m["description"] = strings.Join(parts, ", ")
	}
	return m
}

func typeName(k kind) string {
	for n, v := range kindNames {
		if v == k && n != "array-nest" && n != "unused" {
			return n
		}
	}
	return "binary"
}

func hintName(h hint) string {
	return [...]string{"", "mac", "ipv4", "ipv6", "ipv4-or-v6", "uuid", "hex"}[h]
}

// attrValue is the schema of one value of a (one element of a multi-attr).
func (s *schemaBuilder) attrValue(a *attr) any {
	switch a.kind {
	case kindString:
		return map[string]any{"type": "string"}
	case kindFlag:
		return map[string]any{"const": true}
	case kindBinary:
		switch {
		case a.st != nil:
			return s.structRef(a.st)
		case a.sub != kindUnknown:
			return map[string]any{"type": "array", "items": intSchema(a.sub, a.sub.size(), a.enum, a.flags, a.hint)}
		}
		return bytesSchema(a.hint, 0)
	case kindNest:
		return s.set(a.nested)
	case kindIndexedArray:
		var item any
		switch {
		case a.sub == kindNest:
			item = s.set(a.nested)
		case a.sub == kindString:
			item = map[string]any{"type": "string"}
		case a.sub == kindBinary:
			item = bytesSchema(a.hint, 0)
		default:
			item = intSchema(a.sub, 0, a.enum, a.flags, a.hint)
		}
		return map[string]any{"type": "array", "items": item}
	case kindNestTypeValue:
		var v any = s.set(a.nested)
		for range a.levels {
			v = map[string]any{"type": "object", "patternProperties": map[string]any{"^[0-9]+$": v}, "additionalProperties": false}
		}
		return v
	case kindBitfield32:
		u := intSchema(kindU32, 4, a.enum, a.flags, hintNone)
		return map[string]any{"type": "object", "properties": map[string]any{"value": u, "selector": u},
			"required": []any{"value", "selector"}, "additionalProperties": false}
	}
	if a.kind.integer() {
		return intSchema(a.kind, 0, a.enum, a.flags, a.hint)
	}
	return true
}

// structRef returns a reference to the schema of st, defining it once.
func (s *schemaBuilder) structRef(st *structType) map[string]any {
	if name, ok := s.structs[st]; ok {
		return ref(name)
	}
	name := s.defName("struct-" + st.name)
	s.structs[st] = name
	props := map[string]any{}
	s.structMembers(st, props)
	req := make([]any, 0, len(props))
	for _, k := range sortedKeys(props) {
		req = append(req, k)
	}
	s.defs[name] = map[string]any{"type": "object", "properties": props, "required": req, "additionalProperties": false,
		"description": "struct " + st.name}
	return ref(name)
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *schemaBuilder) structMembers(st *structType, props map[string]any) {
	for i := range st.members {
		m := &st.members[i]
		var name string
		_ = json.Unmarshal(m.key[:len(m.key)-1], &name) // "name": rendered at compile time
		switch {
		case m.kind == kindPad:
			continue
		case m.kind.integer():
			props[name] = intSchema(m.kind, m.size, m.enum, m.flags, m.hint)
		case m.kind == kindString:
			props[name] = map[string]any{"type": "string"}
		case m.st != nil:
			props[name] = s.structRef(m.st)
		default:
			props[name] = bytesSchema(m.hint, m.size)
		}
	}
}

// numberSchema is the JSON a k integer is written as: a number in its
// range, or for 64-bit kinds beyond 2^53-1 a string of its digits
// (internal/jsonint).
func numberSchema(k kind, size int) map[string]any {
	if size == 0 {
		size = k.size()
	}
	if k == kindUint || k == kindSint {
		size = 8
	}
	bits := 8 * size
	var lo, hi float64
	if k.signed() {
		lo, hi = -math.Ldexp(1, bits-1), math.Ldexp(1, bits-1)-1
	} else {
		hi = math.Ldexp(1, bits) - 1
	}
	if bits < 64 {
		return map[string]any{"type": "integer", "minimum": int64(lo), "maximum": int64(hi)}
	}
	safe := map[string]any{"type": "integer", "maximum": jsonint.MaxSafe}
	big := map[string]any{"type": "string", "pattern": "^[1-9][0-9]{15,19}$"}
	if k.signed() {
		safe["minimum"] = -jsonint.MaxSafe
		big["pattern"] = "^-?[1-9][0-9]{15,18}$"
	} else {
		safe["minimum"] = 0
	}
	return map[string]any{"anyOf": []any{safe, big}}
}

// intSchema is the JSON appendNumber writes for an integer of kind k
// (size bytes; 0: the kind's own, 4 or 8 for uint and sint): an enum's
// name or the number, a list of flag names (and of one number for the
// unknown bits), or the text of a hex or ipv4 hint.
func intSchema(k kind, size int, e *enumTab, flags bool, h hint) any {
	num := numberSchema(k, size)
	if e != nil {
		names := e.names()
		if flags {
			return map[string]any{"type": "array", "items": map[string]any{"anyOf": []any{enumOf(e.bitNames()), numberSchema(kindU64, 8)}}}
		}
		return map[string]any{"anyOf": []any{enumOf(names), num}}
	}
	switch h {
	case hintIPv4:
		if size == 4 || size == 0 && k.size() == 4 {
			return map[string]any{"type": "string", "format": "ipv4"}
		}
	case hintHex:
		if k.integer() && k != kindUint && k != kindSint {
			return map[string]any{"type": "string", "pattern": "^-?0x[0-9a-f]+$"}
		}
	}
	return num
}

func enumOf(names []string) map[string]any {
	vals := make([]any, len(names))
	for i, n := range names {
		vals[i] = n
	}
	return map[string]any{"type": "string", "enum": vals}
}

// bytesSchema is the JSON appendBytes writes for a binary of size bytes
// (0: any length) with hint h.
func bytesSchema(h hint, size int) map[string]any {
	ipOK := size == 0 || size == 4 || size == 16
	switch {
	case h == hintMAC:
		return map[string]any{"type": "string", "pattern": "^([0-9a-f]{2}(:[0-9a-f]{2})*)?$", "description": "display-hint mac"}
	case h == hintIPv4 && ipOK, h == hintIPv6 && ipOK, h == hintIPv4or6 && ipOK:
		// An address of 4 or 16 bytes; the hint's length is checked before
		// (a binary attribute of another length is kept raw).
		formats := map[hint][]any{hintIPv4: {map[string]any{"format": "ipv4"}}, hintIPv6: {map[string]any{"format": "ipv6"}},
			hintIPv4or6: {map[string]any{"format": "ipv4"}, map[string]any{"format": "ipv6"}}}[h]
		if size == 4 {
			formats = []any{map[string]any{"format": "ipv4"}}
		} else if size == 16 {
			formats = []any{map[string]any{"format": "ipv6"}}
		}
		return map[string]any{"type": "string", "anyOf": formats, "description": "display-hint " + hintName(h)}
	case h == hintUUID && (size == 0 || size == 16):
		return map[string]any{"type": "string", "format": "uuid"}
	case h == hintHex:
		return map[string]any{"type": "string", "pattern": "^([0-9a-f]{2}( [0-9a-f]{2})*)?$", "description": "display-hint hex"}
	}
	return map[string]any{"type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "hex"}
}

// names returns the enum's entry names.
func (e *enumTab) names() []string {
	var out []string
	add := func(js []byte) {
		var n string
		if js != nil && json.Unmarshal(js, &n) == nil && !contains(out, n) {
			out = append(out, n)
		}
	}
	for _, js := range e.dense {
		add(js)
	}
	for _, v := range e.sparse {
		add(v.name)
	}
	for _, js := range e.bits {
		add(js)
	}
	return out
}

// bitNames returns the names of a flags enum's bits.
func (e *enumTab) bitNames() []string {
	var out []string
	for _, js := range e.bits {
		var n string
		if js != nil && json.Unmarshal(js, &n) == nil && !contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
