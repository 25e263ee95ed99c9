package ynl

import (
	"go.yaml.in/yaml/v3"
)

// An override is genlbridge's own complement to a YNL spec, in a file named
// <anything>.override.yaml. Specs often do not say which multicast group
// carries which message: in Linux 6.12 the devlink, mptcp_pm, team and
// nlctrl specs name no notification for their groups (or no groups at all),
// and ethtool's notifications name no mcgrp before 6.17. An override says it,
// and can make some attributes fill the event's own fields:
//
//	family: mptcp_pm               # required: the spec's name
//	notifications:                 # each entry maps messages of one group
//	  - group: mptcp_pm_events     # a group of the spec's mcast-groups, or "*" for any group
//	    op: created                # EITHER an operation of the spec: its notify/event message id
//	                               #   (for a request: the id of its reply, the
//	                               #   kernel-to-user id), attribute set and name
//	    cmd: 1                     # OR a message id on the wire ("any": every cmd)...
//	    name: created              #    ...printed as the event's op
//	    attribute-set: event-attr  #    ...how its attributes decode
//	    enum: event-type           # OR every entry of this enum definition is a cmd (its
//	                               #   value) with that name, decoding with attribute-set
//	meta:                          # optional: top-level attributes that also fill the event's fields
//	  seq: seq                     # u8..u64/uint: the event's sequence number (loss detection)
//	  jiffies: jiffies             # unsigned: the kernel's jiffies
//	  kernel-ns: timestamp         # integer: ns since the epoch
//	  msg: msg                     # a string: the event's text
//	format: exmpl                  # optional: the event keeps genlbridge's "exmpl" schema
//
// An entry has exactly one of op, cmd and enum; cmd needs name and
// attribute-set, enum needs attribute-set, op takes neither. A spec that
// lists no multicast groups at all (ethtool, devlink, nlctrl, mptcp_pm and
// team in 6.12) cannot be checked against: there any group name is
// accepted, and the override's groups become the family's groups.
//
// With format exmpl, Decode writes no JSON: the event has only the meta
// fields. When the msg attribute comes alone, the message is in the seed's
// format and jiffies are parsed from its text ("... at jiffies N"); a meta
// integer whose length is wrong makes the message malformed, as genlbridge's
// hand decoder of the CONTROL_EXMPL schema does.
//
// Unknown keys are errors (a typo would otherwise silently decode nothing).
// References (groups, ops, enums, sets, attributes) are checked by Compile
// against the spec the override is compiled with. An Override is plain data,
// owned by whoever parsed it.
type Override struct {
	Pos
	// Family is the name of the spec the override completes.
	Family        string
	Notifications []*OverrideEntry
	// Meta names the attributes that fill the event's own fields.
	Meta Meta
	// Format is "" (attributes decoded to JSON) or FormatExmpl.
	Format string
	refs   refs
}

// FormatExmpl is the override format that keeps genlbridge's exmpl schema.
const FormatExmpl = "exmpl"

// GroupAny, as an override entry's group, matches every group.
const GroupAny = "*"

// Meta names top-level attributes that also fill an event's own fields;
// empty names none.
type Meta struct {
	Seq      string
	Jiffies  string
	KernelNS string
	Msg      string
}

// OverrideEntry is one entry of an override's notifications.
type OverrideEntry struct {
	Pos
	Group string
	// Op names an operation of the spec.
	Op string
	// Cmd is a message id, with Name and AttributeSet; AnyCmd: every id.
	HasCmd       bool
	AnyCmd       bool
	Cmd          uint8
	Name         string
	AttributeSet string
	// Enum names an enum definition whose entries are message ids.
	Enum string
	refs refs
}

// ParseOverride parses an override file. file names it in errors, which are
// *Error with file:line:col. It checks the file on its own (keys, kinds,
// which properties go together); Compile checks its references. It is safe
// for concurrent use.
func ParseOverride(file string, data []byte) (*Override, error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	r := newReader(file, root)
	o := &Override{Pos: r.pos(root), refs: refs{}}
	err = r.mapping(root, "override", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "family":
			o.Family, err = r.name(v, "family")
		case "notifications":
			err = r.list(v, "notifications", func(item *yaml.Node) error {
				e, err := r.overrideEntry(item)
				o.Notifications = append(o.Notifications, e)
				return err
			})
		case "meta":
			o.refs["meta"] = r.pos(v)
			err = r.mapping(v, "meta", func(key string, v *yaml.Node) (err error) {
				var dst *string
				switch key {
				case "seq":
					dst = &o.Meta.Seq
				case "jiffies":
					dst = &o.Meta.Jiffies
				case "kernel-ns":
					dst = &o.Meta.KernelNS
				case "msg":
					dst = &o.Meta.Msg
				default:
					return r.errf(v, "meta: unknown key %q (want seq, jiffies, kernel-ns or msg)", key)
				}
				*dst, err = r.name(v, "meta "+key)
				o.refs["meta."+key] = r.pos(v)
				return err
			})
		case "format":
			o.Format, err = r.name(v, "format")
			if err == nil && o.Format != FormatExmpl {
				err = r.errf(v, "format: want %s, got %q", FormatExmpl, o.Format)
			}
		default:
			err = r.errf(v, "override: unknown key %q", key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if o.Family == "" {
		return nil, errorAt(o.Pos, "override: no family")
	}
	return o, nil
}

func (r *reader) overrideEntry(n *yaml.Node) (*OverrideEntry, error) {
	e := &OverrideEntry{Pos: r.pos(n), refs: refs{}}
	err := r.mapping(n, "notification", func(key string, v *yaml.Node) (err error) {
		e.refs[key] = r.pos(v)
		switch key {
		case "group":
			e.Group, err = r.name(v, "group")
		case "op":
			e.Op, err = r.name(v, "op")
		case "cmd":
			e.HasCmd = true
			var s *yaml.Node
			if s, err = r.scalar(v, "cmd"); err == nil && s.Value == "any" {
				e.AnyCmd = true
			} else if err == nil {
				var c int64
				c, err = r.intIn(v, "cmd", 0, 255)
				e.Cmd = uint8(c)
			}
		case "name":
			e.Name, err = r.name(v, "name")
		case "attribute-set":
			e.AttributeSet, err = r.name(v, "attribute-set")
		case "enum":
			e.Enum, err = r.name(v, "enum")
		default:
			err = r.errf(v, "notification: unknown key %q", key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if e.Group == "" {
		return nil, r.errf(n, "notification: no group")
	}
	kinds := 0
	for _, set := range []bool{e.Op != "", e.HasCmd, e.Enum != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return nil, r.errf(n, "notification: want exactly one of op, cmd and enum")
	case e.Op != "" && (e.Name != "" || e.AttributeSet != ""):
		return nil, errorAt(e.refs.at("name", e.refs.at("attribute-set", e.Pos)), "notification: op takes its name and attribute set from the spec")
	case e.HasCmd && (e.Name == "" || e.AttributeSet == ""):
		return nil, r.errf(n, "notification: cmd needs name and attribute-set")
	case e.Enum != "" && e.AttributeSet == "":
		return nil, r.errf(n, "notification: enum needs attribute-set")
	case e.Enum != "" && e.Name != "":
		return nil, errorAt(e.refs.at("name", e.Pos), "notification: enum takes its names from the enum's entries")
	}
	return e, nil
}
