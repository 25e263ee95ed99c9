package ynl

// Family is a compiled spec: which message each (multicast group, cmd)
// carries and how its attributes decode. It is immutable once Compile
// returns it and safe for concurrent use; its Messages decode concurrently
// as long as each goroutine has its own Output.
//
// Which message a (group, cmd) is, from the highest precedence:
//
//  1. the override's entry for that group and cmd;
//  2. the override's entry for group "*" and that cmd;
//  3. the spec's notification or event (notify:/event: operations) for that
//     cmd whose mcgrp is that group;
//  4. the spec's notification or event for that cmd that names no mcgrp: it
//     is taken to go to any group. This is what decodes ethtool before Linux
//     6.17, whose notifications name no mcgrp though they all go to its
//     "monitor" group, and handshake's "ready";
//  5. the override's "cmd: any" entry for that group;
//  6. the override's "cmd: any" entry for group "*".
//
// Of two notifications or events of one id in 3 (or in 4), the later in the
// spec wins, as in nlspec.py (rsp_by_value) and as for attributes of one
// number and enum entries of one value.
//
// Notification ids are the ids of messages from the kernel: in the
// directional model (devlink, ethtool, nlctrl) an operation's reply id,
// counted apart from request ids as the kernel's nlspec.py counts them. A
// notification decodes with every attribute of its set (for notify: the
// notified operation's set), not only those its reply lists, as ynl.py does.
type Family struct {
	// Name is the spec's name (the generic netlink family name).
	Name string
	// Protocol is the spec's schema level (genetlink, genetlink-c,
	// genetlink-legacy).
	Protocol string
	// Version is the spec's family version.
	Version int
	// Format is the override's format: "" or FormatExmpl, for which
	// Decode fills only the Output's meta fields and the event keeps
	// genlbridge's exmpl schema (no op, no attrs).
	Format string
	// Meta names the attributes that fill the event's own fields (from the
	// override; empty names none).
	Meta Meta

	warnings      []string
	groups        []*Group
	other         *Group
	notifications []Notification
	messages      []*Message
	sets          map[string]*attrSet
}

// Group maps the cmds of one multicast group to their messages. Resolve it
// once per subscription with Family.Group; its Lookup is an array index.
type Group struct {
	// Name is the group's name, or GroupAny for the table of groups the
	// family does not name.
	Name string
	msgs [256]*Message
	any  *Message
}

// Lookup returns the message cmd is in this group, or nil when nothing
// decodes it.
func (g *Group) Lookup(cmd uint8) *Message { return g.msgs[cmd] }

// Decodes lists the names of the messages the group decodes, in cmd
// order, each once; a message that decodes every other cmd comes last,
// marked " (any cmd)".
func (g *Group) Decodes() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range g.msgs {
		if m == nil || m == g.any || seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		out = append(out, m.Name)
	}
	if g.any != nil {
		out = append(out, g.any.Name+" (any cmd)")
	}
	return out
}

// Notification is one (group, cmd) that decodes, for listing.
type Notification struct {
	// Group is a multicast group, or GroupAny: any group the family does
	// not name (the override's "*" entries and the spec's notifications
	// without mcgrp).
	Group string
	// Cmd is the message id, unless AnyCmd: every id not listed otherwise.
	Cmd    uint8
	AnyCmd bool
	// Op is the message's name.
	Op string
}

// Warnings lists, with their file:line:col, what the spec has that this
// package does not decode as the spec means it (an attribute type it does
// not know decodes as binary). A fresh slice each call.
func (f *Family) Warnings() []string { return append([]string(nil), f.warnings...) }

// Groups returns the family's multicast groups: the spec's mcast-groups
// and the groups its operations name, or, when the spec lists none, the
// groups its override names. A fresh slice each call.
func (f *Family) Groups() []string {
	out := make([]string, len(f.groups))
	for i, g := range f.groups {
		out[i] = g.Name
	}
	return out
}

// Group returns the table of group name: that of a group of the family, or
// the table every other name gets (GroupAny). It never returns nil.
func (f *Family) Group(name string) *Group {
	for _, g := range f.groups {
		if g.Name == name {
			return g
		}
	}
	return f.other
}

// Lookup returns the message cmd is in group, or nil when nothing decodes
// it (see Family for the rules). It does not allocate.
func (f *Family) Lookup(group string, cmd uint8) *Message {
	return f.Group(group).msgs[cmd]
}

// Notifications lists every (group, cmd) that decodes: for each group of
// Groups and then for GroupAny, its cmds in order and, last, its "cmd: any"
// entry. A fresh slice each call.
func (f *Family) Notifications() []Notification {
	return append([]Notification(nil), f.notifications...)
}

// Message is one kind of message a family sends: how its payload decodes.
// Immutable; safe for concurrent use.
type Message struct {
	// Name is the operation's name (e.g. "dev-add-ntf"), or the override's.
	Name string
	// AttributeSet is the set its attributes decode with.
	AttributeSet string

	fam   *Family
	fixed *structType
	set   *attrSet // the set as the spec has it
	top   *attrSet // set with the meta roles
	exmpl bool
}

// Family returns the family the message belongs to.
func (m *Message) Family() *Family { return m.fam }
