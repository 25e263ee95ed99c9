package ynl

import (
	"math"

	"go.yaml.in/yaml/v3"
)

// ParseSpec parses one YNL spec. file names it in errors (and in the
// positions the Spec records). Specs are untrusted input: anything malformed
// (bad YAML, a missing name, a value of the wrong kind) is an *Error with
// file:line:col, never a panic. Properties this package does not use (doc,
// checks, C naming, kernel policy) are skipped unread; unknown properties
// are ignored, so newer specs still load. References between parts of the
// spec are checked by Compile, not here. ParseSpec is safe for concurrent
// use.
func ParseSpec(file string, data []byte) (*Spec, error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	r := newReader(file, root)
	s := &Spec{Pos: r.pos(root), Protocol: ProtocolGenetlink, Version: 1}
	s.Operations.Model = ModelUnified
	var ops *yaml.Node
	err = r.mapping(root, "spec", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			s.Name, err = r.name(v, "name")
		case "protocol":
			s.Protocol, err = r.name(v, "protocol")
		case "version":
			s.Version, err = r.intIn(v, "version", 0, 255)
		case "definitions":
			err = r.list(v, "definitions", func(item *yaml.Node) error {
				d, err := r.definition(item)
				s.Definitions = append(s.Definitions, d)
				return err
			})
		case "attribute-sets":
			err = r.list(v, "attribute-sets", func(item *yaml.Node) error {
				set, err := r.attributeSet(item)
				s.AttributeSets = append(s.AttributeSets, set)
				return err
			})
		case "operations":
			ops = v
		case "mcast-groups":
			err = r.mapping(v, "mcast-groups", func(key string, v *yaml.Node) error {
				if key != "list" {
					return nil
				}
				return r.list(v, "mcast-groups.list", func(item *yaml.Node) error {
					g := McastGroup{Pos: r.pos(item)}
					err := r.mapping(item, "mcast group", func(key string, v *yaml.Node) (err error) {
						if key == "name" {
							g.Name, err = r.name(v, "mcast group name")
						}
						return err
					})
					if err == nil && g.Name == "" {
						err = r.errf(item, "mcast group: no name")
					}
					s.McastGroups = append(s.McastGroups, g)
					return err
				})
			})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.Name == "" {
		return nil, errorAt(s.Pos, "spec: no name")
	}
	if ops != nil {
		if err := r.operations(ops, &s.Operations); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (r *reader) definition(n *yaml.Node) (*Definition, error) {
	d := &Definition{Pos: r.pos(n)}
	var entries *yaml.Node
	valueStart := int64(0)
	err := r.mapping(n, "definition", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			d.Name, err = r.name(v, "definition name")
		case "type":
			d.Type, err = r.name(v, "definition type")
		case "value":
			d.Value, err = r.str(v, "value")
		case "value-start":
			valueStart, err = r.intIn(v, "value-start", minValue, math.MaxUint32)
		case "entries":
			entries = v
		case "members":
			err = r.list(v, "members", func(item *yaml.Node) error {
				m, err := r.member(item)
				d.Members = append(d.Members, m)
				return err
			})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if d.Name == "" || d.Type == "" {
		return nil, r.errf(n, "definition: want a name and a type")
	}
	if entries != nil {
		prev := valueStart - 1
		err = r.list(entries, "entries of "+d.Name, func(item *yaml.Node) error {
			e := EnumEntry{Pos: r.pos(item), Value: prev + 1}
			item, err := r.deref(item)
			if err != nil {
				return err
			}
			if item.Kind == yaml.ScalarNode {
				e.Name, err = r.name(item, "entry")
			} else {
				err = r.mapping(item, "entry", func(key string, v *yaml.Node) (err error) {
					switch key {
					case "name":
						e.Name, err = r.name(v, "entry name")
					case "value":
						e.Value, err = r.intIn(v, "entry value", minValue, math.MaxUint32)
					}
					return err
				})
				if err == nil && e.Name == "" {
					err = r.errf(item, "entry: no name")
				}
			}
			prev = e.Value
			d.Entries = append(d.Entries, e)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (r *reader) member(n *yaml.Node) (Member, error) {
	m := Member{Pos: r.pos(n), refs: refs{}}
	err := r.mapping(n, "member", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			m.Name, err = r.name(v, "member name")
		case "type":
			m.Type, err = r.name(v, "member type")
		case "len":
			m.Len, err = r.intIn(v, "len", 0, maxFileSize)
		case "byte-order":
			m.ByteOrder, err = r.str(v, "byte-order")
		case "display-hint":
			m.DisplayHint, err = r.str(v, "display-hint")
		case "enum":
			m.Enum, err = r.name(v, "enum")
			m.refs[key] = r.pos(v)
		case "enum-as-flags":
			m.EnumAsFlags, err = r.boolean(v, "enum-as-flags")
		case "struct":
			m.Struct, err = r.name(v, "struct")
			m.refs[key] = r.pos(v)
		}
		return err
	})
	if err == nil && (m.Name == "" || m.Type == "") {
		err = r.errf(n, "member: want a name and a type")
	}
	return m, err
}

func (r *reader) attributeSet(n *yaml.Node) (*AttributeSet, error) {
	set := &AttributeSet{Pos: r.pos(n), refs: refs{}}
	var attrs *yaml.Node
	err := r.mapping(n, "attribute set", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			set.Name, err = r.name(v, "attribute set name")
		case "subset-of":
			set.SubsetOf, err = r.name(v, "subset-of")
			set.refs[key] = r.pos(v)
		case "attributes":
			attrs = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if set.Name == "" {
		return nil, r.errf(n, "attribute set: no name")
	}
	next := int64(1)
	err = r.list(attrs, "attributes of "+set.Name, func(item *yaml.Node) error {
		a, err := r.attribute(item)
		if err != nil {
			return err
		}
		if set.SubsetOf == "" {
			if a.has&hasValue == 0 {
				a.Value = next
			}
			if a.Value < 0 || a.Value >= maxValue {
				return r.errf(item, "attribute %s: value %d out of range", a.Name, a.Value)
			}
			next = a.Value + 1
		}
		set.Attributes = append(set.Attributes, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return set, nil
}

func (r *reader) attribute(n *yaml.Node) (*Attribute, error) {
	a := &Attribute{Pos: r.pos(n), refs: refs{}}
	err := r.mapping(n, "attribute", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			a.Name, err = r.name(v, "attribute name")
		case "type":
			a.Type, err = r.name(v, "attribute type")
			a.has |= hasType
		case "value":
			a.Value, err = r.intIn(v, "attribute value", 0, maxValue)
			a.has |= hasValue
		case "multi-attr":
			a.MultiAttr, err = r.boolean(v, "multi-attr")
			a.has |= hasMulti
		case "nested-attributes":
			a.NestedAttributes, err = r.name(v, "nested-attributes")
			a.has |= hasNested
			a.refs[key] = r.pos(v)
		case "enum":
			a.Enum, err = r.name(v, "enum")
			a.has |= hasEnum
			a.refs[key] = r.pos(v)
		case "enum-as-flags":
			a.EnumAsFlags, err = r.boolean(v, "enum-as-flags")
			a.has |= hasEnumAsFlags
		case "byte-order":
			a.ByteOrder, err = r.str(v, "byte-order")
			a.has |= hasByteOrder
		case "display-hint":
			a.DisplayHint, err = r.str(v, "display-hint")
			a.has |= hasHint
		case "sub-type":
			a.SubType, err = r.name(v, "sub-type")
			a.has |= hasSubType
		case "struct":
			a.Struct, err = r.name(v, "struct")
			a.has |= hasStruct
			a.refs[key] = r.pos(v)
		case "type-value":
			a.TypeValue, err = r.names(v, "type-value")
			a.has |= hasTypeValue
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, r.errf(n, "attribute: no name")
	}
	return a, nil
}

func (r *reader) operations(n *yaml.Node, ops *Operations) error {
	ops.Pos = r.pos(n)
	ops.refs = refs{}
	ops.counter = opCounter{req: 1, rsp: 1}
	var list *yaml.Node
	err := r.mapping(n, "operations", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "enum-model": // the key nlspec.py reads (its msg_id_model)
			ops.Model, err = r.name(v, key)
			if err == nil && ops.Model != ModelUnified && ops.Model != ModelDirectional {
				err = r.errf(v, "%s: want %s or %s, got %q", key, ModelUnified, ModelDirectional, ops.Model)
			}
		case "fixed-header":
			ops.FixedHeader, err = r.name(v, "fixed-header")
			ops.refs[key] = r.pos(v)
		case "list":
			list = v
		}
		return err
	})
	if err != nil {
		return err
	}
	return r.list(list, "operations.list", func(item *yaml.Node) error {
		op, err := r.operation(item, ops)
		ops.List = append(ops.List, op)
		return err
	})
}

// opCounter numbers operations as they are listed, as nlspec.py does.
type opCounter struct {
	req, rsp int64
}

func (r *reader) operation(n *yaml.Node, ops *Operations) (*Operation, error) {
	op := &Operation{Pos: r.pos(n), FixedHeader: ops.FixedHeader, ReqValue: -1, RspValue: -1, refs: refs{}}
	value, hasValue := int64(0), false
	var do, dump *yaml.Node
	err := r.mapping(n, "operation", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			op.Name, err = r.name(v, "operation name")
		case "value":
			value, err = r.intIn(v, "operation value", 0, maxValue)
			hasValue = true
		case "attribute-set":
			op.AttributeSet, err = r.name(v, "attribute-set")
			op.refs[key] = r.pos(v)
		case "fixed-header":
			op.FixedHeader, err = r.name(v, "fixed-header")
			op.refs[key] = r.pos(v)
		case "notify":
			op.Notify, err = r.name(v, "notify")
			op.refs[key] = r.pos(v)
		case "event":
			op.Event = true
			err = r.mapping(v, "event", func(string, *yaml.Node) error { return nil })
		case "mcgrp":
			op.Mcgrp, err = r.name(v, "mcgrp")
			op.refs[key] = r.pos(v)
		case "do":
			do, op.HasDo = v, true
		case "dump":
			dump, op.HasDump = v, true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if op.Name == "" {
		return nil, r.errf(n, "operation: no name")
	}
	if op.Notify != "" && op.Event {
		return nil, r.errf(n, "operation %s: both notify and event", op.Name)
	}
	// The request and reply ids a do (else dump) section gives.
	var reqValue, rspValue int64 = -1, -1
	if mode := do; mode != nil || dump != nil {
		if mode == nil {
			mode = dump
		}
		err := r.mapping(mode, op.Name+": do/dump", func(key string, v *yaml.Node) error {
			if key != "request" && key != "reply" {
				return nil
			}
			if key == "reply" {
				op.HasReply = true
			}
			return r.mapping(v, op.Name+": "+key, func(k string, v *yaml.Node) error {
				if k != "value" {
					return nil
				}
				val, err := r.intIn(v, op.Name+": "+key+" value", 0, maxValue)
				if key == "request" {
					reqValue = val
				} else {
					rspValue = val
				}
				return err
			})
		})
		if err != nil {
			return nil, err
		}
	}
	c := &ops.counter
	if ops.Model == ModelDirectional {
		switch {
		case op.Async():
			if hasValue {
				c.rsp = value
			}
			op.RspValue = c.rsp
			c.rsp++
		case op.HasDo || op.HasDump:
			if reqValue >= 0 {
				c.req = reqValue
			}
			if rspValue >= 0 {
				c.rsp = rspValue
			}
			op.ReqValue = c.req
			c.req++
			if op.HasReply {
				op.RspValue = c.rsp
				c.rsp++
			}
		default:
			return nil, r.errf(n, "operation %s: neither a request nor a notification, which the directional model cannot number", op.Name)
		}
	} else {
		if hasValue {
			c.rsp = value
		}
		op.ReqValue, op.RspValue = c.rsp, c.rsp
		c.rsp++
	}
	return op, nil
}
