package ynl

// This file holds a YNL spec as ParseSpec reads it: the parts of the kernel's
// Documentation/netlink/specs schema (genetlink, genetlink-c,
// genetlink-legacy) that matter for decoding messages. Names are the spec's
// own; nothing is resolved yet (Compile does that). A Spec is plain data:
// safe to read from many goroutines, owned by whoever parsed it.

// Protocols (schema levels) Compile accepts.
const (
	ProtocolGenetlink       = "genetlink"
	ProtocolGenetlinkC      = "genetlink-c"
	ProtocolGenetlinkLegacy = "genetlink-legacy"
	// ProtocolNetlinkRaw is classic netlink (rtnetlink and the like): it
	// parses, but Compile rejects it and the registry skips it.
	ProtocolNetlinkRaw = "netlink-raw"
)

// Message ID models (operations' enum-model).
const (
	// ModelUnified: one number per operation, for both directions.
	ModelUnified = "unified"
	// ModelDirectional: requests and messages from the kernel number apart.
	ModelDirectional = "directional"
)

// Spec is one parsed YNL spec.
type Spec struct {
	Pos
	// Name is the family's name (its generic netlink name).
	Name string
	// Protocol is the schema level, ProtocolGenetlink when the spec names none.
	Protocol string
	// Version is the family version, 1 when the spec names none.
	Version       int64
	Definitions   []*Definition
	AttributeSets []*AttributeSet
	Operations    Operations
	McastGroups   []McastGroup
}

// Definition is an entry of the spec's definitions: a const, an enum, a
// flags set or a struct.
type Definition struct {
	Pos
	Name string
	// Type is const, enum, flags or struct.
	Type string
	// Value is a const's value as written.
	Value string
	// Entries of an enum or flags, in order, their values resolved: an
	// entry's value is its explicit value, else the previous entry's + 1,
	// else value-start (default 0). For flags the value is the bit number
	// (the entry's mask is 1 << Value), as in the kernel's nlspec.py.
	Entries []EnumEntry
	// Members of a struct, in order (packed as written).
	Members []Member
}

// EnumEntry is one entry of an enum or flags definition.
type EnumEntry struct {
	Pos
	Name  string
	Value int64
}

// Member is one member of a struct definition.
type Member struct {
	Pos
	Name string
	// Type is u8..s64, binary, string or pad. Binary, string and pad take
	// Len, which Compile requires positive, unless a binary names a Struct.
	Type        string
	Len         int64
	ByteOrder   string
	DisplayHint string
	Enum        string
	EnumAsFlags bool
	// Struct names the struct definition a binary member holds.
	Struct string
	refs   refs
}

// AttributeSet is one of the spec's attribute-sets.
type AttributeSet struct {
	Pos
	Name string
	// SubsetOf names the set this one takes its attributes' numbers (and
	// unspecified properties) from.
	SubsetOf   string
	Attributes []*Attribute
	refs       refs
}

// Attribute is one attribute of a set.
type Attribute struct {
	Pos
	Name string
	// Type is the attribute type (u32, string, nest, ...); empty in a subset,
	// where it comes from the main set.
	Type string
	// Value is the attribute's number: explicit, else the previous
	// attribute's + 1, the first being 1. Unset (0) in a subset.
	Value            int64
	MultiAttr        bool
	NestedAttributes string
	Enum             string
	EnumAsFlags      bool
	ByteOrder        string
	DisplayHint      string
	SubType          string
	Struct           string
	TypeValue        []string
	// has records which properties the spec gives (has* bits), so that a
	// subset's attribute overrides only those of the main set's.
	has  uint32
	refs refs
}

// Bits of Attribute.has.
const (
	hasType uint32 = 1 << iota
	hasMulti
	hasNested
	hasEnum
	hasEnumAsFlags
	hasByteOrder
	hasHint
	hasSubType
	hasStruct
	hasTypeValue
	hasValue
)

// Operations is the spec's operations section.
type Operations struct {
	Pos
	// Model is ModelUnified or ModelDirectional (the spec's enum-model).
	Model string
	// FixedHeader names the struct every message starts with, unless the
	// operation names its own.
	FixedHeader string
	List        []*Operation
	refs        refs
	counter     opCounter
}

// Operation is one entry of the operations list: a request with its reply,
// a notification or an event.
type Operation struct {
	Pos
	Name string
	// AttributeSet is the set the messages carry (a notify op takes its
	// notified op's).
	AttributeSet string
	FixedHeader  string
	// Notify names the operation whose reply this notification carries.
	Notify string
	// Event is true for an event (event: attributes: ...).
	Event bool
	// Mcgrp names the multicast group a notification or event goes to.
	Mcgrp string
	// HasDo, HasDump: the operation is a request.
	HasDo, HasDump bool
	// HasReply: its do (or else dump) has a reply section.
	HasReply bool
	// ReqValue is the message id of requests to the kernel, RspValue of
	// messages from the kernel (replies, notifications, events); -1 for none.
	// In the unified model both are the op's number. In the directional
	// model (devlink, ethtool, nlctrl) they count apart as the kernel's
	// nlspec.py counts them: a notification takes the next "from kernel"
	// number (or its value), a request the next request number (or its
	// request value) and, when it has a reply, the next "from kernel" number
	// (or its reply value).
	ReqValue, RspValue int64
	refs               refs
}

// Async reports whether the operation is a notification or an event.
func (o *Operation) Async() bool { return o.Notify != "" || o.Event }

// McastGroup is one of the spec's multicast groups.
type McastGroup struct {
	Pos
	Name string
}

// refs holds the positions of properties whose values name something
// (nested-attributes, enum, struct, notify...), for errors that point at them.
type refs map[string]Pos

func (r refs) at(key string, def Pos) Pos {
	if p, ok := r[key]; ok {
		return p
	}
	return def
}
