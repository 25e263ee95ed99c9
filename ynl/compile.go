package ynl

import (
	"fmt"
	"slices"
	"strings"
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
	csets    map[string]*attrSet
	ops      map[string]*Operation
	msgs     map[*Operation]*Message
	fam      *Family
	// prerendered counts the bytes rendered ahead (flagSets, keyed).
	prerendered int
	// cells counts the entries of the sets' tables.
	cells int
}

// Compile resolves a spec, and the override for its family if ov is not
// nil, into a Family ready to decode. Every reference (attribute sets,
// nested sets, subsets, enums, structs, fixed headers, notified operations,
// the override's groups, ops, enums, sets and meta attributes) is checked:
// a dangling one is an *Error at its file:line:col. A spec whose protocol
// is not generic netlink is an *Error wrapping ErrUnsupportedProtocol.
// Properties this package cannot decode (an unknown attribute type, a nest
// without nested-attributes) are not errors: such attributes decode as
// binary. Compile does not modify s or ov and is safe for concurrent use.
func Compile(s *Spec, ov *Override) (*Family, error) {
	switch s.Protocol {
	case ProtocolGenetlink, ProtocolGenetlinkC, ProtocolGenetlinkLegacy:
	default:
		return nil, &Error{Pos: s.Pos, Msg: "protocol " + s.Protocol + " is not generic netlink", Err: ErrUnsupportedProtocol}
	}
	if ov != nil && ov.Family != s.Name {
		return nil, errorAt(ov.Pos, "override is for family %s, spec %s is %s", ov.Family, s.File, s.Name)
	}
	c := &compiler{
		s:        s,
		defs:     map[string]*Definition{},
		enums:    map[string]*enumTab{},
		structs:  map[string]*structType{},
		busy:     map[string]bool{},
		sets:     map[string]*AttributeSet{},
		resolved: map[string][]*Attribute{},
		csets:    map[string]*attrSet{},
		ops:      map[string]*Operation{},
		msgs:     map[*Operation]*Message{},
		fam:      &Family{Name: s.Name, Protocol: s.Protocol, Version: int(s.Version)},
	}
	c.fam.sets = c.csets
	if ov != nil {
		c.fam.Format, c.fam.Meta = ov.Format, ov.Meta
	}
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

// flagSets renders the flag lists of e for every value, when its bits fit
// in maxFlagSetBits and the family's budget allows.
func (c *compiler) flagSets(e *enumTab) {
	if e.flagSets != nil {
		return
	}
	width := 0
	for i := range e.bits {
		if e.bits[i] != nil {
			width = i + 1
		}
	}
	if width > maxFlagSetBits {
		return
	}
	sets := make([][]byte, 1<<width)
	for v := range sets {
		sets[v] = appendFlagList(nil, e, uint64(v))
		if c.prerendered += len(sets[v]); c.prerendered > maxPrerendered {
			return
		}
	}
	e.flagSets = sets
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
	st := &structType{name: name}
	for _, m := range d.Members {
		cm := member{key: appendKey(nil, m.Name), order: parseOrder(m.ByteOrder), hint: parseHint(m.DisplayHint)}
		k, ok := kindNames[m.Type]
		switch {
		case ok && k.size() > 0:
			cm.kind, cm.size = k, k.size()
		case m.Type == "binary" && m.Struct != "":
			inner, err := c.structType(m.Struct, m.refs.at("struct", m.Pos))
			if err != nil {
				return nil, err
			}
			cm.kind, cm.st, cm.size = kindBinary, inner, inner.size
		case m.Type == "binary" || m.Type == "string" || m.Type == "pad":
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
	var out []*Attribute
	for _, a := range set.Attributes {
		var base *Attribute
		for _, b := range full {
			if b.Name == a.Name {
				base = b
			}
		}
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
			if multi < 64 {
				ca.multiBit = 1 << multi
			}
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
			keyed := make([][]byte, len(e.flagSets))
			for v, list := range e.flagSets {
				keyed[v] = append(slices.Clip(ca.key), list...)
				c.prerendered += len(keyed[v])
			}
			if c.prerendered <= maxPrerendered {
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
		ca.levels = max(1, len(a.TypeValue))
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
		ca.sub = sk
	case kindBinary:
		if a.Struct != "" {
			ca.st, err = c.structType(a.Struct, a.refs.at("struct", a.Pos))
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
		if _, err := c.structType(op.FixedHeader, op.refs.at("fixed-header", c.s.Operations.refs.at("fixed-header", op.Pos))); err != nil {
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
		st, err := c.structType(fixedHeader, fixedPos)
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
	addGroup := func(g string) {
		if g != GroupAny && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range s.McastGroups {
		addGroup(g.Name)
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
			addGroup(op.Mcgrp)
			if tab = specGroup[op.Mcgrp]; tab == nil {
				tab = new(cmdSlots)
				specGroup[op.Mcgrp] = tab
			}
		}
		if sl := &tab[op.RspValue]; !sl.set {
			*sl = slot{m: m, pos: op.Pos, set: true}
		}
	}
	ovGroup := map[string]*cmdSlots{}
	var ovStar cmdSlots
	ovAny := map[string]slot{}
	var ovStarAny slot
	if ov != nil {
		for _, e := range ov.Notifications {
			gpos := e.refs.at("group", e.Pos)
			if e.Group != GroupAny {
				if specHasGroups && !slices.Contains(groups, e.Group) {
					return errorAt(gpos, "group %s is not a multicast group of %s (%s)", e.Group, s.Name, strings.Join(groups, ", "))
				}
				addGroup(e.Group)
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
	if len(groups) > maxGroups {
		return errorAt(s.Pos, "family %s has more than %d multicast groups", s.Name, maxGroups)
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
	for _, r := range roles {
		if r.name == "" {
			continue
		}
		at := ov.refs.at("meta."+r.key, ov.Pos)
		found := false
		for _, m := range c.fam.messages {
			for _, a := range m.set.attrs {
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
					return errorAt(at, "meta %s: attribute %s of set %s cannot be the event's %s", r.key, r.name, m.set.name, r.key)
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
