package ynl

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/genlbridge/genlbridge/internal/jsonint"
)

// This file compiles a Spec (and its Override) into the tables Decode walks
// (tables.go): every name resolved once into pointers, attributes indexed by
// number, JSON keys and enum names rendered ahead, so that decoding a
// message does no map lookup and no allocation.

// compiler holds the name tables of one Compile call.
type compiler struct {
	s        *Spec
	defs     map[string]*Definition
	enums    map[string]*enumTab
	structs  map[string]*structType
	busy     map[string]bool // structs and subsets being resolved
	sets     map[string]*AttributeSet
	resolved map[string][]*Attribute
	byName   map[string]map[string]*Attribute // a main set's attributes by name, for its subsets
	csets    map[string]*attrSet
	ops      map[string]*Operation
	msgs     map[*Operation]*Message
	fam      *Family
	// prerendered counts the bytes rendered ahead (flagSets, keyed).
	prerendered int
	// cells counts the entries of the sets' tables.
	cells int
	// work counts the steps of the loops over a family's elements (subset
	// lookups, groups added, meta attributes checked), for the tests that
	// check they stay linear in the spec's size.
	work int
}

// Compile resolves a spec, and the override for its family if ov is not
// nil, into a Family ready to decode. Every reference (attribute sets,
// nested sets, subsets, enums, structs, fixed headers, notified operations,
// the override's groups, ops, enums, sets and meta attributes) is checked:
// a dangling one is an *Error at its file:line:col. A spec whose protocol
// is not generic netlink is an *Error wrapping ErrUnsupportedProtocol.
// Properties this package cannot decode (an unknown attribute type, a nest
// without nested-attributes) are not errors: such attributes decode as
// binary. What would let a few bytes of a message make much JSON, or a spec
// make Compile work long, is an *Error too: a binary, string or pad struct
// member without a positive len, a struct without members used as a
// member, fixed header or attribute's struct, structs nested more than 16
// deep, more than 256 multi-attr attributes in one set, more than 1024
// multicast groups. Compile does not modify s or ov and is safe for
// concurrent use.
func Compile(s *Spec, ov *Override) (*Family, error) {
	switch s.Protocol {
	case ProtocolGenetlink, ProtocolGenetlinkC, ProtocolGenetlinkLegacy:
	default:
		return nil, &Error{Pos: s.Pos, Msg: "protocol " + s.Protocol + " is not generic netlink", Err: ErrUnsupportedProtocol}
	}
	if ov != nil && ov.Family != s.Name {
		return nil, errorAt(ov.Pos, "override is for family %s, spec %s is %s", ov.Family, s.File, s.Name)
	}
	return newCompiler(s, ov).compile(ov)
}

func newCompiler(s *Spec, ov *Override) *compiler {
	c := &compiler{
		s:        s,
		defs:     map[string]*Definition{},
		enums:    map[string]*enumTab{},
		structs:  map[string]*structType{},
		busy:     map[string]bool{},
		sets:     map[string]*AttributeSet{},
		resolved: map[string][]*Attribute{},
		byName:   map[string]map[string]*Attribute{},
		csets:    map[string]*attrSet{},
		ops:      map[string]*Operation{},
		msgs:     map[*Operation]*Message{},
		fam:      &Family{Name: s.Name, Protocol: s.Protocol, Version: int(s.Version)},
	}
	c.fam.sets = c.csets
	if ov != nil {
		c.fam.Format, c.fam.Meta = ov.Format, ov.Meta
	}
	return c
}

// compile is Compile once the protocol and the override's family are checked.
func (c *compiler) compile(ov *Override) (*Family, error) {
	s := c.s
	for _, d := range s.Definitions {
		if _, dup := c.defs[d.Name]; dup {
			return nil, errorAt(d.Pos, "definition %s defined twice", d.Name)
		}
		c.defs[d.Name] = d
	}
	for _, set := range s.AttributeSets {
		if _, dup := c.sets[set.Name]; dup {
			return nil, errorAt(set.Pos, "attribute set %s defined twice", set.Name)
		}
		c.sets[set.Name] = set
		c.csets[set.Name] = &attrSet{name: set.Name}
	}
	for _, set := range s.AttributeSets {
		if err := c.compileSet(set); err != nil {
			return nil, err
		}
	}
	for _, d := range s.Definitions {
		if d.Type == "struct" {
			if _, err := c.structType(d.Name, d.Pos); err != nil {
				return nil, err
			}
		}
	}
	for _, op := range s.Operations.List {
		if _, dup := c.ops[op.Name]; dup {
			return nil, errorAt(op.Pos, "operation %s defined twice", op.Name)
		}
		c.ops[op.Name] = op
	}
	for _, op := range s.Operations.List {
		if err := c.checkOp(op); err != nil {
			return nil, err
		}
	}
	if err := c.buildTables(ov); err != nil {
		return nil, err
	}
	if err := c.applyMeta(ov); err != nil {
		return nil, err
	}
	return c.fam, nil
}

// enum returns the compiled enum or flags definition name.
func (c *compiler) enum(name string, at Pos) (*enumTab, *Definition, error) {
	d := c.defs[name]
	if d == nil || (d.Type != "enum" && d.Type != "flags") {
		return nil, nil, errorAt(at, "enum %s is not an enum or flags definition", name)
	}
	if e := c.enums[name]; e != nil {
		return e, d, nil
	}
	e := &enumTab{}
	// Values index a table as long as it stays dense, else they are searched.
	limit := min(maxDenseEnum, int64(4*len(d.Entries)+64))
	maxv := int64(-1)
	for _, en := range d.Entries {
		if en.Value >= 0 && en.Value < limit {
			maxv = max(maxv, en.Value)
		}
	}
	e.dense = make([][]byte, maxv+1)
	for _, en := range d.Entries {
		js := appendString(nil, []byte(en.Name))
		if en.Value >= 0 && en.Value < limit {
			e.dense[en.Value] = js // a later entry of the same value wins, as in nlspec.py
		} else {
			e.sparse = append(e.sparse, enumVal{en.Value, js})
		}
		if en.Value >= 0 && en.Value < 64 {
			e.bits[en.Value] = js
		}
	}
	slices.SortStableFunc(e.sparse, func(a, b enumVal) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	// Keep the last of equal values.
	e.sparse = compactLast(e.sparse)
	c.enums[name] = e
	return e, d, nil
}

// maxPrerendered bounds the bytes a family renders ahead for flags, so
// that a hostile spec cannot make Compile use much memory.
const maxPrerendered = 1 << 20

// sliceSize is what a []byte's header takes, counted in the budget with
// the bytes it points to.
const sliceSize = 24

// flagSets renders the flag lists of e for every value, when its bits fit
// in maxFlagSetBits and the family's budget allows. The size is counted
// before anything is rendered; over the budget, e's flags are rendered at
// decode time (appendFlagList), which does not allocate either.
func (c *compiler) flagSets(e *enumTab) {
	if e.flagsTried {
		return
	}
	e.flagsTried = true
	width := 0
	for i := range e.bits {
		if e.bits[i] != nil {
			width = i + 1
		}
	}
	if width > maxFlagSetBits {
		return
	}
	n := 1 << width
	size := 0
	for v := range n {
		size += flagListLen(e, uint64(v))
	}
	if c.prerendered+size+n*sliceSize > maxPrerendered {
		return
	}
	c.prerendered += size + n*sliceSize
	buf := make([]byte, 0, size)
	sets := make([][]byte, n)
	for v := range sets {
		start := len(buf)
		buf = appendFlagList(buf, e, uint64(v))
		sets[v] = buf[start:len(buf):len(buf)]
	}
	e.flagSets = sets
}

// flagListLen is len(appendFlagList(nil, e, v)), without rendering it.
func flagListLen(e *enumTab, v uint64) int {
	n, names := 2, 0 // the brackets
	var unknown uint64
	for v != 0 {
		i := bits.TrailingZeros64(v)
		bit := uint64(1) << i
		v &^= bit
		if name := e.bits[i]; name != nil {
			if names > 0 {
				n++
			}
			n += len(name)
			names++
		} else {
			unknown |= bit
		}
	}
	if unknown != 0 {
		if names > 0 {
			n++
		}
		var digits [22]byte
		n += len(jsonint.AppendUint(digits[:0], unknown))
	}
	return n
}

func compactLast(v []enumVal) []enumVal {
	out := v[:0]
	for i := range v {
		if i+1 < len(v) && v[i+1].v == v[i].v {
			continue
		}
		out = append(out, v[i])
	}
	return out
}

// structType returns the compiled struct definition name.
func (c *compiler) structType(name string, at Pos) (*structType, error) {
	if st := c.structs[name]; st != nil {
		return st, nil
	}
	d := c.defs[name]
	if d == nil || d.Type != "struct" {
		return nil, errorAt(at, "struct %s is not a struct definition", name)
	}
	key := "struct " + name
	if c.busy[key] {
		return nil, errorAt(at, "struct %s contains itself", name)
	}
	c.busy[key] = true
	defer delete(c.busy, key)
	st := &structType{name: name, depth: 1}
	for _, m := range d.Members {
		cm := member{key: appendKey(nil, m.Name), order: parseOrder(m.ByteOrder), hint: parseHint(m.DisplayHint)}
		k, ok := kindNames[m.Type]
		switch {
		case ok && k.size() > 0:
			cm.kind, cm.size = k, k.size()
		case m.Type == "binary" && m.Struct != "":
			at := m.refs.at("struct", m.Pos)
			inner, err := c.usedStruct(m.Struct, at)
			if err != nil {
				return nil, err
			}
			// The decoder's depth bounds the JSON's too.
			if inner.depth >= maxDepth {
				return nil, errorAt(at, "struct %s: structs nest more than %d deep", name, maxDepth)
			}
			st.depth = max(st.depth, inner.depth+1)
			cm.kind, cm.st, cm.size = kindBinary, inner, inner.size
		case m.Type == "binary" || m.Type == "string" || m.Type == "pad":
			// Every member takes a byte at least, so that the JSON of a
			// struct stays within a multiple of the bytes it decodes.
			if m.Len <= 0 {
				return nil, errorAt(m.Pos, "struct %s member %s: %s needs a positive len", name, m.Name, m.Type)
			}
			cm.kind, cm.size = kindBinary, int(m.Len)
			if m.Type == "string" {
				cm.kind = kindString
			} else if m.Type == "pad" {
				cm.kind = kindPad
			}
		default:
			return nil, errorAt(m.Pos, "struct %s member %s: type %s cannot be in a struct", name, m.Name, m.Type)
		}
		if m.Enum != "" {
			e, ed, err := c.enum(m.Enum, m.refs.at("enum", m.Pos))
			if err != nil {
				return nil, err
			}
			cm.enum, cm.flags = e, ed.Type == "flags" || m.EnumAsFlags
			if cm.flags {
				c.flagSets(e)
			}
		}
		st.size += cm.size
		if cm.kind != kindPad {
			st.fields++
		}
		if st.size > maxFileSize {
			return nil, errorAt(m.Pos, "struct %s is too large", name)
		}
		st.members = append(st.members, cm)
	}
	c.structs[name] = st
	return st, nil
}

// usedStruct returns the compiled struct definition name for a use that
// decodes bytes with it (a member, a fixed header, an attribute's struct):
// it must have members, else it would write JSON from no bytes at all.
func (c *compiler) usedStruct(name string, at Pos) (*structType, error) {
	st, err := c.structType(name, at)
	if err == nil && st.size == 0 {
		return nil, errorAt(at, "struct %s has no members: it cannot be a member, a fixed header or an attribute's struct", name)
	}
	return st, err
}

// attributes returns the attributes of a set with their numbers and, in a
// subset, the main set's properties under the subset's own.
func (c *compiler) attributes(set *AttributeSet) ([]*Attribute, error) {
	if set.SubsetOf == "" {
		return set.Attributes, nil
	}
	if r, ok := c.resolved[set.Name]; ok {
		return r, nil
	}
	at := set.refs.at("subset-of", set.Pos)
	main := c.sets[set.SubsetOf]
	if main == nil {
		return nil, errorAt(at, "attribute set %s: subset of unknown set %s", set.Name, set.SubsetOf)
	}
	key := "set " + set.Name
	if c.busy[key] {
		return nil, errorAt(at, "attribute set %s is a subset of itself", set.Name)
	}
	c.busy[key] = true
	defer delete(c.busy, key)
	full, err := c.attributes(main)
	if err != nil {
		return nil, err
	}
	names := c.byName[main.Name]
	if names == nil {
		names = make(map[string]*Attribute, len(full))
		for _, b := range full {
			c.work++
			names[b.Name] = b // the last of a name, as in nlspec.py
		}
		c.byName[main.Name] = names
	}
	var out []*Attribute
	for _, a := range set.Attributes {
		c.work++
		base := names[a.Name]
		if base == nil {
			return nil, errorAt(a.Pos, "attribute %s of subset %s is not in %s", a.Name, set.Name, set.SubsetOf)
		}
		m := mergeAttr(base, a)
		out = append(out, m)
	}
	c.resolved[set.Name] = out
	return out, nil
}

// mergeAttr returns base with the properties sub gives replaced.
func mergeAttr(base, sub *Attribute) *Attribute {
	m := *base
	m.Pos = sub.Pos
	has := sub.has
	if has&hasType != 0 {
		m.Type = sub.Type
	}
	if has&hasMulti != 0 {
		m.MultiAttr = sub.MultiAttr
	}
	if has&hasNested != 0 {
		m.NestedAttributes = sub.NestedAttributes
	}
	if has&hasEnum != 0 {
		m.Enum = sub.Enum
	}
	if has&hasEnumAsFlags != 0 {
		m.EnumAsFlags = sub.EnumAsFlags
	}
	if has&hasByteOrder != 0 {
		m.ByteOrder = sub.ByteOrder
	}
	if has&hasHint != 0 {
		m.DisplayHint = sub.DisplayHint
	}
	if has&hasSubType != 0 {
		m.SubType = sub.SubType
	}
	if has&hasStruct != 0 {
		m.Struct = sub.Struct
	}
	if has&hasTypeValue != 0 {
		m.TypeValue = sub.TypeValue
	}
	m.refs = refs{}
	for k, p := range base.refs {
		m.refs[k] = p
	}
	for k, p := range sub.refs {
		m.refs[k] = p
	}
	m.has = base.has | sub.has
	return &m
}

// compileSet fills the attrSet of set.
func (c *compiler) compileSet(set *AttributeSet) error {
	attrs, err := c.attributes(set)
	if err != nil {
		return err
	}
	cs := c.csets[set.Name]
	n := 0
	for _, a := range attrs {
		if a.Value <= maxAttrType {
			n = max(n, int(a.Value)+1)
		}
	}
	if c.cells += n; c.cells > maxCells {
		return errorAt(set.Pos, "attribute set %s: attribute numbers of the family are too sparse (tables of more than %d entries)", set.Name, maxCells)
	}
	cs.attrs = make([]*attr, n)
	multi := 0
	for _, a := range attrs {
		ca, err := c.attr(set, a)
		if err != nil {
			return err
		}
		if ca == nil || a.Value > maxAttrType {
			continue // unused, or a number the wire cannot carry
		}
		if ca.multi {
			if multi == maxMulti {
				return errorAt(a.Pos, "attribute set %s has more than %d multi-attr attributes", set.Name, maxMulti)
			}
			ca.multiWord, ca.multiBit = uint8(multi/64), 1<<(multi%64)
			multi++
		}
		cs.attrs[a.Value] = ca // a later attribute of the same number wins, as in nlspec.py
	}
	return nil
}

// attr compiles one attribute; nil for type unused.
func (c *compiler) attr(set *AttributeSet, a *Attribute) (*attr, error) {
	if a.Type == "" {
		return nil, errorAt(a.Pos, "attribute %s of set %s has no type", a.Name, set.Name)
	}
	k, known := kindNames[a.Type]
	if known && k == kindUnknown {
		return nil, nil
	}
	if !known {
		k = kindBinary // sub-message and types newer than this package
		c.fam.warnings = append(c.fam.warnings, fmt.Sprintf("%s: attribute %s of set %s has type %s, which this decoder does not know: it decodes as binary (hex)",
			a.Pos, a.Name, set.Name, a.Type))
	}
	ca := &attr{
		name:  a.Name,
		key:   appendKey([]byte{','}, a.Name),
		kind:  k,
		order: parseOrder(a.ByteOrder),
		hint:  parseHint(a.DisplayHint),
		multi: a.MultiAttr,
	}
	if !ca.multi {
		ca.size = int8(k.size())
	}
	if k == kindUint || k == kindSint {
		ca.hint = hintNone // ynl.py ignores display hints on uint and sint
	}
	if a.Enum != "" {
		e, d, err := c.enum(a.Enum, a.refs.at("enum", a.Pos))
		if err != nil {
			return nil, err
		}
		ca.enum, ca.flags = e, d.Type == "flags" || a.EnumAsFlags
		if ca.flags {
			c.flagSets(e)
		}
		if ca.flags && ca.size != 0 && !k.signed() && e.flagSets != nil {
			// Counted before anything is rendered; over the budget the
			// attribute's key and flags are written apart at decode time.
			size := len(e.flagSets) * (len(ca.key) + sliceSize)
			for _, list := range e.flagSets {
				size += len(list)
			}
			if c.prerendered+size <= maxPrerendered {
				c.prerendered += size
				buf := make([]byte, 0, size)
				keyed := make([][]byte, len(e.flagSets))
				for v, list := range e.flagSets {
					start := len(buf)
					buf = append(append(buf, ca.key...), list...)
					keyed[v] = buf[start:len(buf):len(buf)]
				}
				ca.keyed = keyed
			}
		}
	}
	nested := func() (*attrSet, error) {
		ns := c.csets[a.NestedAttributes]
		if ns == nil {
			return nil, errorAt(a.refs.at("nested-attributes", a.Pos), "attribute %s: nested-attributes %s is not an attribute set", a.Name, a.NestedAttributes)
		}
		return ns, nil
	}
	var err error
	switch k {
	case kindNest:
		if a.NestedAttributes == "" {
			ca.kind = kindBinary
			break
		}
		ca.nested, err = nested()
	case kindNestTypeValue:
		if a.NestedAttributes == "" {
			return nil, errorAt(a.Pos, "attribute %s: nest-type-value needs nested-attributes", a.Name)
		}
		ca.nested, err = nested()
		ca.levels = len(a.TypeValue)
		if ca.levels == 0 {
			ca.kind = kindNest // no type levels: ynl.py decodes the nest itself
		}
	case kindIndexedArray:
		sub := a.SubType
		if sub == "" {
			sub = "nest" // array-nest, the older name, has no sub-type
		}
		sk, ok := kindNames[sub]
		switch {
		case sk == kindNest && ok:
			if a.NestedAttributes == "" {
				return nil, errorAt(a.Pos, "attribute %s: indexed-array of nests needs nested-attributes", a.Name)
			}
			ca.nested, err = nested()
		case ok && (sk.integer() || sk == kindBinary || sk == kindString):
		default:
			sk = kindBinary
		}
		if sk == kindUint || sk == kindSint {
			ca.hint = hintNone // as for uint and sint attributes
		}
		ca.sub = sk
	case kindBinary:
		if a.Struct != "" {
			ca.st, err = c.usedStruct(a.Struct, a.refs.at("struct", a.Pos))
		} else if sk, ok := kindNames[a.SubType]; ok && sk.size() > 0 {
			ca.sub = sk
		}
	}
	if err != nil {
		return nil, err
	}
	return ca, nil
}

// appendKey appends name as a JSON object key with its colon.
func appendKey(dst []byte, name string) []byte {
	return append(appendString(dst, []byte(name)), ':')
}

// setOf returns the attribute set an operation's messages carry.
func (c *compiler) setOf(op *Operation) (string, error) {
	if op.AttributeSet != "" {
		return op.AttributeSet, nil
	}
	if op.Notify != "" {
		n := c.ops[op.Notify]
		if n == nil {
			return "", errorAt(op.refs.at("notify", op.Pos), "operation %s notifies unknown operation %s", op.Name, op.Notify)
		}
		if n.AttributeSet != "" {
			return n.AttributeSet, nil
		}
	}
	return "", errorAt(op.Pos, "operation %s has no attribute set", op.Name)
}

// checkOp checks the references of an operation, used for messages or not.
func (c *compiler) checkOp(op *Operation) error {
	if op.AttributeSet != "" && c.csets[op.AttributeSet] == nil {
		return errorAt(op.refs.at("attribute-set", op.Pos), "%s: attribute set %s not defined", op.Name, op.AttributeSet)
	}
	if op.Notify != "" {
		if _, err := c.setOf(op); err != nil {
			return err
		}
	}
	if op.FixedHeader != "" {
		if _, err := c.usedStruct(op.FixedHeader, op.refs.at("fixed-header", c.s.Operations.refs.at("fixed-header", op.Pos))); err != nil {
			return err
		}
	}
	return nil
}

// opMessage returns the Message of an operation's messages from the kernel.
func (c *compiler) opMessage(op *Operation) (*Message, error) {
	if m := c.msgs[op]; m != nil {
		return m, nil
	}
	setName, err := c.setOf(op)
	if err != nil {
		return nil, err
	}
	m, err := c.message(op.Name, setName, op.refs.at("attribute-set", op.Pos), op.FixedHeader, op.refs.at("fixed-header", c.s.Operations.refs.at("fixed-header", op.Pos)))
	if err != nil {
		return nil, err
	}
	c.msgs[op] = m
	return m, nil
}

// message builds a Message decoding with setName after fixedHeader.
func (c *compiler) message(name, setName string, setPos Pos, fixedHeader string, fixedPos Pos) (*Message, error) {
	set := c.csets[setName]
	if set == nil {
		return nil, errorAt(setPos, "%s: attribute set %s not defined", name, setName)
	}
	m := &Message{Name: name, AttributeSet: setName, fam: c.fam, top: set, set: set, exmpl: c.fam.Format == FormatExmpl}
	if fixedHeader != "" {
		st, err := c.usedStruct(fixedHeader, fixedPos)
		if err != nil {
			return nil, err
		}
		m.fixed = st
	}
	c.fam.messages = append(c.fam.messages, m)
	return m, nil
}

// slot is a message mapped to a (group, cmd) at one precedence level.
type slot struct {
	m   *Message
	pos Pos
	set bool
}

type cmdSlots [256]slot

// buildTables maps (group, cmd) to messages. From the highest precedence:
//  1. the override's entries for the group and the cmd
//  2. the override's entries for group "*" and the cmd
//  3. the spec's notifications and events whose mcgrp is the group
//  4. the spec's notifications and events without mcgrp (any group)
//  5. the override's "cmd: any" entry for the group
//  6. the override's "cmd: any" entry for group "*"
func (c *compiler) buildTables(ov *Override) error {
	s := c.s
	var groups []string
	known := map[string]bool{}
	// addGroup adds group g, named at at, once; the maxGroups+1st is an
	// error before its tables are made.
	addGroup := func(g string, at Pos) error {
		c.work++
		if g == GroupAny || known[g] {
			return nil
		}
		if len(groups) == maxGroups {
			return errorAt(at, "family %s has more than %d multicast groups", s.Name, maxGroups)
		}
		known[g] = true
		groups = append(groups, g)
		return nil
	}
	for _, g := range s.McastGroups {
		if err := addGroup(g.Name, g.Pos); err != nil {
			return err
		}
	}
	specHasGroups := len(groups) > 0
	specGroup := map[string]*cmdSlots{}
	var specAny cmdSlots
	for _, op := range s.Operations.List {
		if !op.Async() || op.RspValue < 0 || op.RspValue > 255 {
			continue
		}
		m, err := c.opMessage(op)
		if err != nil {
			return err
		}
		tab := &specAny
		if op.Mcgrp != "" {
			if err := addGroup(op.Mcgrp, op.refs.at("mcgrp", op.Pos)); err != nil {
				return err
			}
			if tab = specGroup[op.Mcgrp]; tab == nil {
				tab = new(cmdSlots)
				specGroup[op.Mcgrp] = tab
			}
		}
		// A later notification of the same id wins, as in nlspec.py's
		// rsp_by_value, and as a later attribute of the same number and a
		// later enum entry of the same value do.
		tab[op.RspValue] = slot{m: m, pos: op.Pos, set: true}
	}
	ovGroup := map[string]*cmdSlots{}
	var ovStar cmdSlots
	ovAny := map[string]slot{}
	var ovStarAny slot
	if ov != nil {
		for _, e := range ov.Notifications {
			gpos := e.refs.at("group", e.Pos)
			if e.Group != GroupAny {
				if specHasGroups && !known[e.Group] {
					return errorAt(gpos, "group %s is not a multicast group of %s (%s)", e.Group, s.Name, strings.Join(groups, ", "))
				}
				if err := addGroup(e.Group, gpos); err != nil {
					return err
				}
			}
			put := func(cmd uint8, m *Message, at Pos) error {
				tab := &ovStar
				if e.Group != GroupAny {
					if tab = ovGroup[e.Group]; tab == nil {
						tab = new(cmdSlots)
						ovGroup[e.Group] = tab
					}
				}
				if sl := &tab[cmd]; sl.set {
					return errorAt(at, "group %s cmd %d is already mapped at %s", e.Group, cmd, sl.pos)
				}
				tab[cmd] = slot{m: m, pos: at, set: true}
				return nil
			}
			switch {
			case e.Op != "":
				at := e.refs.at("op", e.Pos)
				op := c.ops[e.Op]
				if op == nil {
					return errorAt(at, "op %s is not an operation of %s", e.Op, s.Name)
				}
				if op.RspValue < 0 || op.RspValue > 255 {
					return errorAt(at, "op %s has no message from the kernel (no reply, notification or event id)", e.Op)
				}
				m, err := c.opMessage(op)
				if err != nil {
					return err
				}
				if err := put(uint8(op.RspValue), m, at); err != nil {
					return err
				}
			case e.HasCmd:
				m, err := c.message(e.Name, e.AttributeSet, e.refs.at("attribute-set", e.Pos), s.Operations.FixedHeader, s.Operations.refs.at("fixed-header", s.Operations.Pos))
				if err != nil {
					return err
				}
				at := e.refs.at("cmd", e.Pos)
				if e.AnyCmd {
					if e.Group == GroupAny {
						if ovStarAny.set {
							return errorAt(at, "group * cmd any is already mapped at %s", ovStarAny.pos)
						}
						ovStarAny = slot{m: m, pos: at, set: true}
					} else {
						if sl, ok := ovAny[e.Group]; ok {
							return errorAt(at, "group %s cmd any is already mapped at %s", e.Group, sl.pos)
						}
						ovAny[e.Group] = slot{m: m, pos: at, set: true}
					}
				} else if err := put(e.Cmd, m, at); err != nil {
					return err
				}
			default:
				at := e.refs.at("enum", e.Pos)
				d := c.defs[e.Enum]
				if d == nil || d.Type != "enum" {
					return errorAt(at, "enum %s is not an enum definition of %s", e.Enum, s.Name)
				}
				for _, en := range d.Entries {
					if en.Value < 0 || en.Value > 255 {
						return errorAt(en.Pos, "enum %s entry %s: value %d is not a message id (0..255)", e.Enum, en.Name, en.Value)
					}
					m, err := c.message(en.Name, e.AttributeSet, e.refs.at("attribute-set", e.Pos), s.Operations.FixedHeader, s.Operations.refs.at("fixed-header", s.Operations.Pos))
					if err != nil {
						return err
					}
					if err := put(uint8(en.Value), m, en.Pos); err != nil {
						return err
					}
				}
			}
		}
	}
	fill := func(name string, sg, og *cmdSlots, oa slot) *Group {
		g := &Group{Name: name}
		levels := []*cmdSlots{og, &ovStar, sg, &specAny}
		for cmd := range 256 {
			for _, l := range levels {
				if l != nil && l[cmd].set {
					g.msgs[cmd] = l[cmd].m
					break
				}
			}
			if g.msgs[cmd] != nil {
				c.fam.notifications = append(c.fam.notifications, Notification{Group: name, Cmd: uint8(cmd), Op: g.msgs[cmd].Name})
			}
		}
		for _, a := range []slot{oa, ovStarAny} {
			if a.set {
				g.any = a.m
				c.fam.notifications = append(c.fam.notifications, Notification{Group: name, AnyCmd: true, Op: a.m.Name})
				for cmd := range 256 {
					if g.msgs[cmd] == nil {
						g.msgs[cmd] = a.m
					}
				}
				break
			}
		}
		return g
	}
	for _, name := range groups {
		var oa slot
		if a, ok := ovAny[name]; ok {
			oa = a
		}
		c.fam.groups = append(c.fam.groups, fill(name, specGroup[name], ovGroup[name], oa))
	}
	c.fam.other = fill(GroupAny, nil, nil, slot{})
	return nil
}

// applyMeta gives the meta attributes their roles in each message's
// top-level set.
func (c *compiler) applyMeta(ov *Override) error {
	if ov == nil {
		return nil
	}
	roles := []struct {
		role metaRole
		name string
		key  string
	}{
		{roleSeq, ov.Meta.Seq, "seq"},
		{roleJiffies, ov.Meta.Jiffies, "jiffies"},
		{roleKernelNS, ov.Meta.KernelNS, "kernel-ns"},
		{roleMsg, ov.Meta.Msg, "msg"},
	}
	// Each set once, however many messages use it.
	var sets []*attrSet
	seen := map[*attrSet]bool{}
	for _, m := range c.fam.messages {
		if !seen[m.set] {
			seen[m.set] = true
			sets = append(sets, m.set)
		}
	}
	for _, r := range roles {
		if r.name == "" {
			continue
		}
		at := ov.refs.at("meta."+r.key, ov.Pos)
		found := false
		for _, set := range sets {
			for _, a := range set.attrs {
				c.work++
				if a == nil || a.name != r.name {
					continue
				}
				found = true
				ok := false
				switch r.role {
				case roleSeq, roleJiffies:
					ok = a.kind.integer() && !a.kind.signed() && !a.multi
				case roleKernelNS:
					ok = a.kind.integer() && !a.multi
				case roleMsg:
					ok = (a.kind == kindString || a.kind == kindBinary && a.st == nil && a.sub == kindUnknown) && !a.multi
				}
				if !ok {
					return errorAt(at, "meta %s: attribute %s of set %s cannot be the event's %s", r.key, r.name, set.name, r.key)
				}
			}
		}
		if !found {
			return errorAt(at, "meta %s: no message of %s has an attribute %s", r.key, c.s.Name, r.name)
		}
	}
	// Each set's top level gets its own copy with the roles, shared by the
	// messages that use it.
	tops := map[*attrSet]*attrSet{}
	for _, m := range c.fam.messages {
		if t := tops[m.set]; t != nil {
			m.top = t
			continue
		}
		t := &attrSet{name: m.set.name, attrs: slices.Clone(m.set.attrs)}
		for i, a := range t.attrs {
			if a == nil {
				continue
			}
			for _, r := range roles {
				if r.name != "" && a.name == r.name {
					cp := *a
					cp.role = r.role
					cp.keyed = nil // its fast path skips the meta fields
					t.attrs[i] = &cp
				}
			}
		}
		tops[m.set] = t
		m.top = t
	}
	return nil
}
