// Package kmod_test checks that the kernel module's wire contract, written
// three times (kmod/genl_exmpl.h for C, kmod/control_exmpl.yaml for YNL and
// package exmpl for Go), says the same thing everywhere.
package kmod_test

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/exmpl"
)

// The Go side of the contract, by the suffix of the C name.
var (
	goAttrs = map[string]int{
		"UNSPEC":    exmpl.AttrUnspec,
		"MSG":       exmpl.AttrMsg,
		"JIFFIES":   exmpl.AttrJiffies,
		"SEQ":       exmpl.AttrSeq,
		"TIMESTAMP": exmpl.AttrTimestamp,
		"PAD":       exmpl.AttrPad,
		"COUNT":     exmpl.AttrCount,
	}
	goCmds = map[string]int{
		"UNSPEC": exmpl.CmdUnspec,
		"DO":     exmpl.CmdDo,
		"EMIT":   exmpl.CmdEmit,
		"BURST":  exmpl.CmdBurst,
	}
)

const (
	attrPrefix = "GENL_EXMPL_EVENT_A_"
	cmdPrefix  = "GENL_EXMPL_EVENT_C_"
)

// cHeader is what parseHeader finds in a C header: #defines and enum members.
type cHeader struct {
	defines map[string]string
	enums   map[string]int
}

var (
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	lineComment  = regexp.MustCompile(`//[^\n]*`)
	defineRe     = regexp.MustCompile(`(?m)^[ \t]*#[ \t]*define[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]+(.+?)[ \t]*$`)
	enumRe       = regexp.MustCompile(`(?s)\benum\b[^{;]*\{(.*?)\}`)
	memberRe     = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*(.+))?$`)
)

// parseHeader reads the #defines and enum members of a C header. Enum members
// without an initialiser get the previous value plus one, as in C; an
// initialiser must be an integer literal or an earlier member.
func parseHeader(src string) (cHeader, error) {
	src = blockComment.ReplaceAllString(src, " ")
	src = lineComment.ReplaceAllString(src, " ")
	h := cHeader{defines: map[string]string{}, enums: map[string]int{}}
	for _, m := range defineRe.FindAllStringSubmatch(src, -1) {
		h.defines[m[1]] = m[2]
	}
	for _, e := range enumRe.FindAllStringSubmatch(src, -1) {
		next := 0
		for _, member := range strings.Split(e[1], ",") {
			member = strings.TrimSpace(member)
			if member == "" {
				continue
			}
			m := memberRe.FindStringSubmatch(member)
			if m == nil {
				return h, fmt.Errorf("cannot parse enum member %q", member)
			}
			if m[2] != "" {
				v, err := strconv.ParseInt(strings.TrimSpace(m[2]), 0, 64)
				if err != nil {
					prev, ok := h.enums[strings.TrimSpace(m[2])]
					if !ok {
						return h, fmt.Errorf("enum member %s: cannot evaluate %q", m[1], m[2])
					}
					v = int64(prev)
				}
				next = int(v)
			}
			if _, dup := h.enums[m[1]]; dup {
				return h, fmt.Errorf("enum member %s defined twice", m[1])
			}
			h.enums[m[1]] = next
			next++
		}
	}
	return h, nil
}

func readHeader(t *testing.T) cHeader {
	t.Helper()
	src, err := os.ReadFile("genl_exmpl.h")
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(string(src))
	if err != nil {
		t.Fatalf("genl_exmpl.h: %v", err)
	}
	return h
}

// cString returns the value of a #define that is a string literal.
func (h cHeader) cString(t *testing.T, name string) string {
	t.Helper()
	v, ok := h.defines[name]
	if !ok {
		t.Fatalf("genl_exmpl.h: no #define %s", name)
	}
	s, err := strconv.Unquote(v)
	if err != nil {
		t.Fatalf("genl_exmpl.h: #define %s %s: not a string literal", name, v)
	}
	return s
}

// cInt returns the value of a #define that is an integer literal.
func (h cHeader) cInt(t *testing.T, name string) int {
	t.Helper()
	v, ok := h.defines[name]
	if !ok {
		t.Fatalf("genl_exmpl.h: no #define %s", name)
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		t.Fatalf("genl_exmpl.h: #define %s %s: not an integer literal", name, v)
	}
	return int(n)
}

// membersWithPrefix returns the enum members named prefix+SUFFIX by suffix,
// leaving out the __..._MAX count members.
func (h cHeader) membersWithPrefix(prefix string) map[string]int {
	out := map[string]int{}
	for name, v := range h.enums {
		if strings.HasPrefix(name, prefix) {
			out[strings.TrimPrefix(name, prefix)] = v
		}
	}
	return out
}

func sameKeys(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestHeaderMatchesGo(t *testing.T) {
	h := readHeader(t)

	if got := h.cString(t, "GENL_EXMPL_EVENT_FAMILYNAME"); got != exmpl.FamilyName {
		t.Errorf("FAMILYNAME = %q, Go FamilyName = %q", got, exmpl.FamilyName)
	}
	if got := h.cString(t, "GENL_EXMPL_EVENT_GROUPNAME"); got != exmpl.GroupName {
		t.Errorf("GROUPNAME = %q, Go GroupName = %q", got, exmpl.GroupName)
	}
	for _, c := range []struct {
		name string
		want int
	}{
		{"GENL_EXMPL_EVENT_VERSION", exmpl.Version},
		{"GENL_EXMPL_EVENT_MAX_BURST", exmpl.MaxBurst},
		{"GENL_EXMPL_EVENT_SEED_PAYLOAD_LEN", exmpl.SeedPayloadLen},
	} {
		if got := h.cInt(t, c.name); got != c.want {
			t.Errorf("%s = %d, Go says %d", c.name, got, c.want)
		}
	}

	attrs := h.membersWithPrefix(attrPrefix)
	if !sameKeys(attrs, goAttrs) {
		t.Errorf("attributes in genl_exmpl.h %v, in Go %v", keys(attrs), keys(goAttrs))
	}
	for k, want := range goAttrs {
		if got, ok := attrs[k]; ok && got != want {
			t.Errorf("%s%s = %d, Go says %d", attrPrefix, k, got, want)
		}
	}
	if got, want := h.enums["__GENL_EXMPL_EVENT_A_MAX"]-1, exmpl.AttrMax; got != want {
		t.Errorf("GENL_EXMPL_EVENT_A_MAX = %d, Go AttrMax = %d", got, want)
	}
	if got := h.defines["GENL_EXMPL_EVENT_A_MAX"]; got != "(__GENL_EXMPL_EVENT_A_MAX - 1)" {
		t.Errorf("#define GENL_EXMPL_EVENT_A_MAX %s, want (__GENL_EXMPL_EVENT_A_MAX - 1)", got)
	}

	cmds := h.membersWithPrefix(cmdPrefix)
	if !sameKeys(cmds, goCmds) {
		t.Errorf("commands in genl_exmpl.h %v, in Go %v", keys(cmds), keys(goCmds))
	}
	for k, want := range goCmds {
		if got, ok := cmds[k]; ok && got != want {
			t.Errorf("%s%s = %d, Go says %d", cmdPrefix, k, got, want)
		}
	}
}

func readSpec(t *testing.T) map[string]any {
	t.Helper()
	src, err := os.ReadFile("control_exmpl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseYAML(string(src))
	if err != nil {
		t.Fatalf("control_exmpl.yaml: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("control_exmpl.yaml: top level is %T, want a mapping", v)
	}
	return m
}

// path walks a parsed YAML tree: string steps index mappings, int steps lists.
func path(t *testing.T, v any, steps ...any) any {
	t.Helper()
	for i, s := range steps {
		switch s := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("spec %v: not a mapping", steps[:i])
			}
			if v, ok = m[s]; !ok {
				t.Fatalf("spec %v: no key %q", steps[:i], s)
			}
		case int:
			l, ok := v.([]any)
			if !ok || s >= len(l) {
				t.Fatalf("spec %v: no item %d", steps[:i], s)
			}
			v = l[s]
		}
	}
	return v
}

func str(t *testing.T, v any, steps ...any) string {
	t.Helper()
	s, ok := path(t, v, steps...).(string)
	if !ok {
		t.Fatalf("spec %v: not a scalar", steps)
	}
	return s
}

func list(t *testing.T, v any, steps ...any) []any {
	t.Helper()
	l, ok := path(t, v, steps...).([]any)
	if !ok {
		t.Fatalf("spec %v: not a list", steps)
	}
	return l
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("spec: %q is not an integer", s)
	}
	return n
}

// cName makes the C name YNL gives an entry: prefix and name, upper case,
// dashes as underscores.
func cName(prefix, name string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix+name, "-", "_"))
}

// numbered returns the YNL list's entries by C name with the values YNL gives
// them: an explicit value, else one more than the previous entry, from 1.
func numbered(t *testing.T, items []any, prefix string) (map[string]int, map[string]any) {
	t.Helper()
	vals := map[string]int{}
	byName := map[string]any{}
	next := 1
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			t.Fatalf("spec: entry %d under %s is not a mapping", i, prefix)
		}
		name := str(t, m, "name")
		if v, ok := m["value"].(string); ok {
			next = atoi(t, v)
		}
		vals[cName(prefix, name)] = next
		byName[name] = m
		next++
	}
	return vals, byName
}

func TestSpecMatchesHeaderAndGo(t *testing.T) {
	h := readHeader(t)
	spec := readSpec(t)

	if got := str(t, spec, "name"); got != exmpl.FamilyName {
		t.Errorf("spec name = %q, Go FamilyName = %q", got, exmpl.FamilyName)
	}
	if p := str(t, spec, "protocol"); p != "genetlink" && p != "genetlink-c" {
		t.Errorf("spec protocol = %q, want genetlink or genetlink-c", p)
	}
	for _, k := range []string{"c-family-name", "c-version-name"} {
		if name := str(t, spec, k); h.defines[name] == "" {
			t.Errorf("spec %s: %s is not defined in genl_exmpl.h", k, name)
		}
	}

	groups := list(t, spec, "mcast-groups", "list")
	if len(groups) != 1 || str(t, groups[0], "name") != exmpl.GroupName {
		t.Errorf("spec mcast-groups = %v, want the one group %q", groups, exmpl.GroupName)
	}

	consts := map[string]string{}
	for _, d := range list(t, spec, "definitions") {
		if str(t, d, "type") == "const" {
			consts[str(t, d, "name")] = str(t, d, "value")
		}
	}
	for name, want := range map[string]int{
		"max-burst":        exmpl.MaxBurst,
		"seed-payload-len": exmpl.SeedPayloadLen,
		"msg-maxlen":       h.cInt(t, "GENL_EXMPL_EVENT_MSG_MAXLEN"),
	} {
		if got, ok := consts[name]; !ok || atoi(t, got) != want {
			t.Errorf("spec const %s = %q, want %d", name, got, want)
		}
	}

	// Attributes: the C names YNL would make, their values, and the checks.
	sets := list(t, spec, "attribute-sets")
	if len(sets) != 1 {
		t.Fatalf("spec has %d attribute sets, want 1", len(sets))
	}
	aPrefix := str(t, sets[0], "name-prefix")
	attrs, attrByName := numbered(t, list(t, sets[0], "attributes"), aPrefix)
	wantAttrs := map[string]int{}
	for k, v := range goAttrs {
		if k != "UNSPEC" {
			wantAttrs[attrPrefix+k] = v
		}
	}
	if !sameKeys(attrs, wantAttrs) {
		t.Errorf("spec attributes %v, want %v", keys(attrs), keys(wantAttrs))
	}
	for name, want := range wantAttrs {
		if got, ok := attrs[name]; ok && got != want {
			t.Errorf("spec attribute %s = %d, want %d", name, got, want)
		}
		if got, ok := h.enums[name]; !ok || got != want {
			t.Errorf("genl_exmpl.h %s = %d (defined %v), want %d", name, got, ok, want)
		}
	}
	for k, name := range map[string]string{"attr-cnt-name": "__GENL_EXMPL_EVENT_A_MAX", "attr-max-name": "GENL_EXMPL_EVENT_A_MAX"} {
		if got := cName("", str(t, sets[0], k)); got != name {
			t.Errorf("spec %s makes %s, want %s", k, got, name)
		}
	}
	if got := str(t, attrByName, "count", "checks", "max"); atoi(t, got) != exmpl.MaxBurst {
		t.Errorf("spec count max = %s, want %d", got, exmpl.MaxBurst)
	}
	if got := str(t, attrByName, "count", "checks", "min"); got != "1" {
		t.Errorf("spec count min = %s, want 1", got)
	}
	if got := str(t, attrByName, "msg", "checks", "max-len"); h.defines[got] == "" {
		t.Errorf("spec msg max-len %s is not defined in genl_exmpl.h", got)
	}
	for name, typ := range map[string]string{"msg": "string", "jiffies": "u64", "seq": "u64", "timestamp": "u64", "pad": "pad", "count": "u32"} {
		if got := str(t, attrByName, name, "type"); got != typ {
			t.Errorf("spec attribute %s type = %s, want %s", name, got, typ)
		}
	}

	// Operations.
	cPrefix := str(t, spec, "operations", "name-prefix")
	ops, opByName := numbered(t, list(t, spec, "operations", "list"), cPrefix)
	wantOps := map[string]int{}
	for k, v := range goCmds {
		if k != "UNSPEC" {
			wantOps[cmdPrefix+k] = v
		}
	}
	if !sameKeys(ops, wantOps) {
		t.Errorf("spec operations %v, want %v", keys(ops), keys(wantOps))
	}
	for name, want := range wantOps {
		if got, ok := ops[name]; ok && got != want {
			t.Errorf("spec operation %s = %d, want %d", name, got, want)
		}
		if got, ok := h.enums[name]; !ok || got != want {
			t.Errorf("genl_exmpl.h %s = %d (defined %v), want %d", name, got, ok, want)
		}
	}
	if got := str(t, opByName, "do", "mcgrp"); got != exmpl.GroupName {
		t.Errorf("spec event do: mcgrp %q, want %q", got, exmpl.GroupName)
	}
	var evAttrs []string
	for _, a := range list(t, opByName, "do", "event", "attributes") {
		evAttrs = append(evAttrs, a.(string))
	}
	if got, want := strings.Join(evAttrs, ","), "msg,jiffies,seq,timestamp"; got != want {
		t.Errorf("spec event do attributes = %s, want %s", got, want)
	}
	for op, attr := range map[string]string{"emit": "msg", "burst": "count"} {
		req := list(t, opByName, op, "do", "request", "attributes")
		if len(req) != 1 || req[0] != attr {
			t.Errorf("spec %s request attributes = %v, want [%s]", op, req, attr)
		}
		flags := list(t, opByName, op, "flags")
		if len(flags) != 1 || flags[0] != "admin-perm" {
			t.Errorf("spec %s flags = %v, want [admin-perm]", op, flags)
		}
	}
}

func TestParseHeaderImplicitValues(t *testing.T) {
	h, err := parseHeader("enum { A, B = 5, /* c */ C, D = B, E };\n#define X \"y\" // z\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"A": 0, "B": 5, "C": 6, "D": 5, "E": 6}
	for k, v := range want {
		if h.enums[k] != v {
			t.Errorf("%s = %d, want %d", k, h.enums[k], v)
		}
	}
	if h.defines["X"] != `"y"` {
		t.Errorf(`X = %q, want "y"`, h.defines["X"])
	}
}
