package specs_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The subset of the YNL schema (Documentation/netlink/genetlink-legacy.yaml)
// that the specs of this directory use. Decoding genlbridge's specs with
// KnownFields rejects any other key, so a typo cannot go unnoticed.

type spec struct {
	Name          string       `yaml:"name"`
	Protocol      string       `yaml:"protocol"`
	Doc           string       `yaml:"doc"`
	UAPIHeader    string       `yaml:"uapi-header"`
	CFamilyName   string       `yaml:"c-family-name"`
	CVersionName  string       `yaml:"c-version-name"`
	Version       *int64       `yaml:"version"`
	Definitions   []definition `yaml:"definitions"`
	AttributeSets []attrSet    `yaml:"attribute-sets"`
	Operations    operations   `yaml:"operations"`
	McastGroups   struct {
		List []mcastGroup `yaml:"list"`
	} `yaml:"mcast-groups"`
}

type mcastGroup struct {
	Name        string `yaml:"name"`
	CDefineName string `yaml:"c-define-name"`
}

type definition struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	Doc        string   `yaml:"doc"`
	Header     string   `yaml:"header"`
	Value      any      `yaml:"value"`
	ValueStart *int64   `yaml:"value-start"`
	Entries    []entry  `yaml:"entries"`
	NamePrefix *string  `yaml:"name-prefix"`
	EnumName   *string  `yaml:"enum-name"`
	Members    []member `yaml:"members"`
}

// entry is an enum or flags entry: a bare name or {name, value, doc}.
type entry struct {
	Name  string
	Value *int64
	Doc   string
}

func (e *entry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		e.Name = n.Value
		return nil
	}
	var full struct {
		Name  string `yaml:"name"`
		Value *int64 `yaml:"value"`
		Doc   string `yaml:"doc"`
	}
	// KnownFields does not reach custom unmarshalers; check by hand.
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "name", "value", "doc":
		default:
			return fmt.Errorf("line %d: unknown enum entry key %q", n.Content[i].Line, k)
		}
	}
	if err := n.Decode(&full); err != nil {
		return err
	}
	*e = entry(full)
	return nil
}

type member struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	Len         *int64 `yaml:"len"`
	Doc         string `yaml:"doc"`
	Enum        string `yaml:"enum"`
	ByteOrder   string `yaml:"byte-order"`
	DisplayHint string `yaml:"display-hint"`
}

type attrSet struct {
	Name       string      `yaml:"name"`
	NamePrefix *string     `yaml:"name-prefix"`
	EnumName   *string     `yaml:"enum-name"`
	Doc        string      `yaml:"doc"`
	SubsetOf   string      `yaml:"subset-of"`
	Attributes []attribute `yaml:"attributes"`
}

type attribute struct {
	Name             string         `yaml:"name"`
	Type             string         `yaml:"type"`
	Value            *int64         `yaml:"value"`
	Doc              string         `yaml:"doc"`
	ByteOrder        string         `yaml:"byte-order"`
	MultiAttr        bool           `yaml:"multi-attr"`
	NestedAttributes string         `yaml:"nested-attributes"`
	Enum             string         `yaml:"enum"`
	EnumAsFlags      bool           `yaml:"enum-as-flags"`
	Checks           map[string]any `yaml:"checks"`
	SubType          string         `yaml:"sub-type"`
	DisplayHint      string         `yaml:"display-hint"`
	Struct           string         `yaml:"struct"`
}

type operations struct {
	EnumModel  string      `yaml:"enum-model"`
	NamePrefix *string     `yaml:"name-prefix"`
	List       []operation `yaml:"list"`
}

type operation struct {
	Name         string    `yaml:"name"`
	Value        *int64    `yaml:"value"`
	Doc          string    `yaml:"doc"`
	AttributeSet string    `yaml:"attribute-set"`
	Do           *subOp    `yaml:"do"`
	Dump         *subOp    `yaml:"dump"`
	Notify       string    `yaml:"notify"`
	Event        *attrList `yaml:"event"`
	Mcgrp        string    `yaml:"mcgrp"`
}

type subOp struct {
	Request *attrList `yaml:"request"`
	Reply   *attrList `yaml:"reply"`
}

type attrList struct {
	Value      *int64   `yaml:"value"`
	Attributes []string `yaml:"attributes"`
}

// parseSpec decodes a spec. strict rejects keys outside the subset above
// (for genlbridge's own specs); the kernel's specs use more of the schema.
func parseSpec(data []byte, strict bool) (*spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(strict)
	var s spec
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// loadKernelSpec reads the kernel's own spec of family from linux-doc.
func loadKernelSpec(dir, family string) (*spec, error) {
	f, err := os.Open(filepath.Join(dir, family+".yaml.gz"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	return parseSpec(data, false)
}

func (s *spec) set(name string) *attrSet {
	for i := range s.AttributeSets {
		if s.AttributeSets[i].Name == name {
			return &s.AttributeSets[i]
		}
	}
	return nil
}

func (s *spec) def(name string) *definition {
	for i := range s.Definitions {
		if s.Definitions[i].Name == name {
			return &s.Definitions[i]
		}
	}
	return nil
}

func (s *spec) op(name string) *operation {
	for i := range s.Operations.List {
		if s.Operations.List[i].Name == name {
			return &s.Operations.List[i]
		}
	}
	return nil
}

func (s *spec) group(name string) bool {
	for _, g := range s.McastGroups.List {
		if g.Name == name {
			return true
		}
	}
	return false
}

func (a *attrSet) attr(name string) *attribute {
	for i := range a.Attributes {
		if a.Attributes[i].Name == name {
			return &a.Attributes[i]
		}
	}
	return nil
}

// cName renders a YNL name as C does: upper case, dashes to underscores.
func cName(parts ...string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.Join(parts, ""), "-", "_"))
}

// attrPrefix is the C prefix of a set's attributes
// (Documentation/userspace-api/netlink/c-code-gen.rst): name-prefix, or
// $family-A- when the set is named after the family, else $family-A-$set-.
func (s *spec) attrPrefix(a *attrSet) string {
	if a.NamePrefix != nil {
		return *a.NamePrefix
	}
	if a.Name == s.Name {
		return s.Name + "-a-"
	}
	return s.Name + "-a-" + a.Name + "-"
}

// opPrefix is the C prefix of the messages: name-prefix or $family-CMD-.
func (s *spec) opPrefix() string {
	if s.Operations.NamePrefix != nil {
		return *s.Operations.NamePrefix
	}
	return s.Name + "-cmd-"
}

// enumPrefix is the C prefix of an enum's entries: name-prefix or
// $family-$enum-.
func (s *spec) enumPrefix(d *definition) string {
	if d.NamePrefix != nil {
		return *d.NamePrefix
	}
	return s.Name + "-" + d.Name + "-"
}

// attrValues numbers a (non-subset) set as YNL does: 1 for the first
// attribute, the previous plus one after, unless value is given.
func attrValues(a *attrSet) []int64 {
	vals := make([]int64, len(a.Attributes))
	next := int64(1)
	for i, at := range a.Attributes {
		if at.Value != nil {
			next = *at.Value
		}
		vals[i] = next
		next++
	}
	return vals
}

// msgID is the message id of an operation in one direction.
type msgID struct {
	req, rsp int64 // -1: none in that direction
}

// opValues numbers the operations as the kernel's YNL library does
// (tools/net/ynl/lib/nlspec.py): in the unified model one counter from 1;
// in the directional model one counter per direction, a notification or
// event taking only a kernel-to-user id (op-level value), a do/dump taking
// a request id and, if it has a reply, a reply id.
func (s *spec) opValues() ([]msgID, error) {
	ids := make([]msgID, len(s.Operations.List))
	switch s.Operations.EnumModel {
	case "", "unified":
		next := int64(1)
		for i, op := range s.Operations.List {
			if op.Value != nil {
				next = *op.Value
			}
			ids[i] = msgID{next, next}
			next++
		}
	case "directional":
		req, rsp := int64(1), int64(1)
		for i, op := range s.Operations.List {
			switch {
			case op.Notify != "" || op.Event != nil:
				if op.Value != nil {
					rsp = *op.Value
				}
				ids[i] = msgID{-1, rsp}
				rsp++
			case op.Do != nil || op.Dump != nil:
				mode := op.Do
				if mode == nil {
					mode = op.Dump
				}
				if mode.Request != nil && mode.Request.Value != nil {
					req = *mode.Request.Value
				}
				if mode.Reply != nil && mode.Reply.Value != nil {
					rsp = *mode.Reply.Value
				}
				ids[i] = msgID{req, -1}
				req++
				if mode.Reply != nil {
					ids[i].rsp = rsp
					rsp++
				}
			default:
				return nil, fmt.Errorf("operation %s: neither do, dump, notify nor event", op.Name)
			}
		}
	default:
		return nil, fmt.Errorf("unknown enum-model %q", s.Operations.EnumModel)
	}
	return ids, nil
}

// ntfID is the id of the message an operation multicasts (notify or event).
func (s *spec) ntfID(name string) (int64, error) {
	ids, err := s.opValues()
	if err != nil {
		return 0, err
	}
	for i, op := range s.Operations.List {
		if op.Name == name {
			if op.Notify == "" && op.Event == nil {
				return 0, fmt.Errorf("operation %s is neither a notification nor an event", name)
			}
			return ids[i].rsp, nil
		}
	}
	return 0, fmt.Errorf("no operation %s", name)
}

// ntfAttrSet is the attribute set a notification or event decodes with:
// its own, or that of the operation it notifies for.
func (s *spec) ntfAttrSet(name string) string {
	op := s.op(name)
	if op == nil {
		return ""
	}
	if op.AttributeSet != "" {
		return op.AttributeSet
	}
	if op.Notify != "" {
		if target := s.op(op.Notify); target != nil {
			return target.AttributeSet
		}
	}
	return ""
}

// enumValues gives each entry its value: for enum, value-start (0) then
// +1, unless value is given; for flags the value is a bit number and the
// entry's value is 1 << bit.
func enumValues(d *definition) []int64 {
	vals := make([]int64, len(d.Entries))
	next := int64(0)
	if d.ValueStart != nil {
		next = *d.ValueStart
	}
	for i, e := range d.Entries {
		if e.Value != nil {
			next = *e.Value
		}
		vals[i] = next
		if d.Type == "flags" {
			vals[i] = 1 << uint(next)
		}
		next++
	}
	return vals
}

// memberSize is the size of a struct member in bytes.
func memberSize(m member) (int, error) {
	switch m.Type {
	case "u8", "s8":
		return 1, nil
	case "u16", "s16":
		return 2, nil
	case "u32", "s32":
		return 4, nil
	case "u64", "s64":
		return 8, nil
	case "string", "binary", "pad":
		if m.Len == nil || *m.Len <= 0 {
			return 0, fmt.Errorf("member %s of type %s needs a len", m.Name, m.Type)
		}
		return int(*m.Len), nil
	}
	return 0, fmt.Errorf("member %s: unknown type %q", m.Name, m.Type)
}

// intValue reads an integer YAML value (for const definitions).
func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 0, 64)
		return n, err == nil
	}
	return 0, false
}
