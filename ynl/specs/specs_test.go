package specs_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/genlbridge/genlbridge/ynl/specs"
)

// What this directory ships. Adding a file means adding it here and to
// README.md.
var (
	wantSpecs     = []string{"NET_DM", "VFS_DQUOT", "acpi_event", "ethtool", "mptcp_pm", "netdev", "nlctrl", "thermal"}
	wantOverrides = []string{"CONTROL_EXMPL", "devlink", "ethtool", "mptcp_pm", "nlctrl", "team"}
)

// The UAPI headers each spec is checked against (in the 6.12 UAPI
// directory). acpi_event has none: acpiEventSource stands in for it.
var specHeaders = map[string][]string{
	"netdev":    {"netdev.h"},
	"mptcp_pm":  {"mptcp_pm.h", "mptcp.h"},
	"ethtool":   {"ethtool_netlink.h", "ethtool.h"},
	"thermal":   {"thermal.h"},
	"NET_DM":    {"net_dropmon.h"},
	"VFS_DQUOT": {"quota.h"},
	"devlink":   {"devlink.h"},
	"team":      {"if_team.h"},
	"nlctrl":    {"genetlink.h"},
}

// The headers of older UAPI trees that hold the same enums (Linux 6.1 has
// the MPTCP events in mptcp.h and no netdev.h).
var olderHeaders = map[string][]string{
	"netdev":    {"netdev.h"},
	"mptcp_pm":  {"mptcp_pm.h", "mptcp.h"},
	"ethtool":   {"ethtool_netlink.h", "ethtool.h"},
	"thermal":   {"thermal.h"},
	"NET_DM":    {"net_dropmon.h"},
	"VFS_DQUOT": {"quota.h"},
}

// acpiEventSource is the part of drivers/acpi/event.c (Linux 6.12) that
// defines the acpi_event family, which has no UAPI header.
const acpiEventSource = `
typedef char acpi_device_class[20];
struct acpi_genl_event {
	acpi_device_class device_class;
	char bus_id[15];
	u32 type;
	u32 data;
};
enum {
	ACPI_GENL_ATTR_UNSPEC,
	ACPI_GENL_ATTR_EVENT,	/* ACPI event info needed by user space */
	__ACPI_GENL_ATTR_MAX,
};
enum {
	ACPI_GENL_CMD_UNSPEC,
	ACPI_GENL_CMD_EVENT,	/* kernel->user notifications for ACPI events */
	__ACPI_GENL_CMD_MAX,
};
#define ACPI_GENL_FAMILY_NAME		"acpi_event"
#define ACPI_GENL_VERSION		0x01
#define ACPI_GENL_MCAST_GROUP_NAME 	"acpi_mc_group"
`

// typedefs of the structs the specs describe.
var cTypedefs = map[string][2]string{"acpi_device_class": {"char", "20"}}

// cNameExceptions are the names of the specs whose C name is not the one
// YNL's naming rules give, each with the C name that holds its value.
var cNameExceptions = map[string]string{
	// The temperature sample is the one message of enum
	// thermal_genl_sampling; the events have their own enum.
	"thermal op sampling-temp": "THERMAL_GENL_SAMPLING_TEMP",
	// Summary alerts carry struct net_dm_alert_msg as an attribute of
	// type 0, i.e. NET_DM_ATTR_UNSPEC.
	"NET_DM attr net-dm-attrs.summary": "NET_DM_ATTR_UNSPEC",
	// nla_put_u64_64bit(msg, NET_DM_ATTR_STATS_DROPPED, ..., NET_DM_ATTR_PAD)
	// pads inside the stats nest with the main set's pad type.
	"NET_DM attr stats.pad": "NET_DM_ATTR_PAD",
}

// The groups the kernel multicasts a family's notifications to, for the
// families whose kernel spec lists no mcast-groups, with the UAPI define of
// each name ("" where the name is only in the kernel source: nlctrl's
// "notify" is genl_ctrl_groups[] of net/netlink/genetlink.c).
var kernelGroups = map[string][2]string{
	"devlink":  {"config", "DEVLINK_GENL_MCGRP_CONFIG_NAME"},
	"team":     {"change_event", "TEAM_GENL_CHANGE_EVENT_MC_GRP_NAME"},
	"ethtool":  {"monitor", "ETHTOOL_MCGRP_MONITOR_NAME"},
	"mptcp_pm": {"mptcp_pm_events", "MPTCP_PM_EV_GRP_NAME"},
	"nlctrl":   {"notify", ""},
}

// uapiDir is the directory of the Linux 6.12 UAPI headers
// (GENLBRIDGE_UAPI_DIR, else Debian's linux-headers-6.12*-common).
func uapiDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("GENLBRIDGE_UAPI_DIR"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/src/linux-headers-6.12*-common/include/uapi/linux")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "netdev.h")); err == nil {
			return dirs[i]
		}
	}
	t.Skip("no Linux 6.12 UAPI headers (/usr/src/linux-headers-6.12*-common, package linux-headers-6.12*-common; or set GENLBRIDGE_UAPI_DIR)")
	return ""
}

// kernelSpecDir is the directory of the kernel's own 6.12 YNL specs
// (GENLBRIDGE_KERNEL_SPECS, else Debian's linux-doc-6.12).
func kernelSpecDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("GENLBRIDGE_KERNEL_SPECS"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/share/doc/linux-doc-6.12*/Documentation/netlink/specs")
	sort.Strings(dirs)
	if len(dirs) == 0 {
		t.Skip("no kernel YNL specs (/usr/share/doc/linux-doc-6.12*/Documentation/netlink/specs, package linux-doc-6.12; or set GENLBRIDGE_KERNEL_SPECS)")
	}
	return dirs[len(dirs)-1]
}

// ourSpecs parses every spec of the embedded FS, strictly.
func ourSpecs(t *testing.T) map[string]*spec {
	t.Helper()
	out := map[string]*spec{}
	for _, name := range wantSpecs {
		data, err := fs.ReadFile(specs.FS, name+".yaml")
		if err != nil {
			t.Fatalf("embedded FS: %v", err)
		}
		s, err := parseSpec(data, true)
		if err != nil {
			t.Fatalf("%s.yaml: %v", name, err)
		}
		out[name] = s
	}
	return out
}

// headersFor loads the 6.12 headers of a family.
func headersFor(t *testing.T, family string) *cHeader {
	t.Helper()
	if family == "acpi_event" {
		h, err := parseHeaderText(acpiEventSource)
		if err != nil {
			t.Fatal(err)
		}
		h.files = []string{"drivers/acpi/event.c (acpiEventSource)"}
		return h
	}
	files, ok := specHeaders[family]
	if !ok {
		t.Fatalf("no headers listed for %s", family)
	}
	h, err := loadHeaders(uapiDir(t), files...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEmbeddedFiles(t *testing.T) {
	entries, err := fs.ReadDir(specs.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var gotSpecs, gotOverrides []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".override.yaml"):
			gotOverrides = append(gotOverrides, strings.TrimSuffix(name, ".override.yaml"))
		case strings.HasSuffix(name, ".yaml"):
			gotSpecs = append(gotSpecs, strings.TrimSuffix(name, ".yaml"))
		default:
			t.Errorf("unexpected embedded file %s", name)
		}
	}
	sort.Strings(gotSpecs)
	sort.Strings(gotOverrides)
	if fmt.Sprint(gotSpecs) != fmt.Sprint(wantSpecs) {
		t.Errorf("embedded specs %v, want %v", gotSpecs, wantSpecs)
	}
	if fmt.Sprint(gotOverrides) != fmt.Sprint(wantOverrides) {
		t.Errorf("embedded overrides %v, want %v", gotOverrides, wantOverrides)
	}
	// Every YAML file of the directory is embedded.
	onDisk, _ := filepath.Glob("*.yaml")
	if len(onDisk) != len(entries) {
		t.Errorf("%d YAML files on disk, %d embedded", len(onDisk), len(entries))
	}
}

var (
	attrTypes = map[string]bool{
		"unused": true, "pad": true, "flag": true, "binary": true, "bitfield32": true,
		"uint": true, "sint": true, "u8": true, "u16": true, "u32": true, "u64": true,
		"s8": true, "s16": true, "s32": true, "s64": true, "string": true, "nest": true,
	}
	scalarTypes = map[string]bool{
		"uint": true, "sint": true, "u8": true, "u16": true, "u32": true, "u64": true,
		"s8": true, "s16": true, "s32": true, "s64": true,
	}
	memberTypes  = map[string]bool{"u8": true, "u16": true, "u32": true, "u64": true, "s8": true, "s16": true, "s32": true, "s64": true, "string": true, "binary": true, "pad": true}
	displayHints = map[string]bool{"hex": true, "mac": true, "fddi": true, "ipv4": true, "ipv6": true, "uuid": true}
	byteOrders   = map[string]bool{"little-endian": true, "big-endian": true}
)

// TestSpecsWellFormed checks each spec against the YNL rules it must keep:
// the keys of its protocol level, references that resolve, unique names
// and numbers, and a multicast group for every message (these specs
// describe notifications only).
func TestSpecsWellFormed(t *testing.T) {
	for name, s := range ourSpecs(t) {
		t.Run(name, func(t *testing.T) {
			if s.Name != name {
				t.Errorf("name %q in %s.yaml", s.Name, name)
			}
			if strings.TrimSpace(s.Doc) == "" {
				t.Error("no doc")
			}
			legacy := s.Protocol == "genetlink-legacy"
			cLevel := legacy || s.Protocol == "genetlink-c"
			switch s.Protocol {
			case "genetlink", "genetlink-c", "genetlink-legacy":
			default:
				t.Errorf("protocol %q", s.Protocol)
			}
			if !cLevel && (s.CFamilyName != "" || s.CVersionName != "") {
				t.Error("c-family-name/c-version-name need genetlink-c")
			}
			if !legacy && s.Version != nil {
				t.Error("version needs genetlink-legacy")
			}
			if !legacy && s.Operations.EnumModel == "directional" {
				t.Error("the directional enum-model needs genetlink-legacy")
			}

			defs := map[string]bool{}
			for _, d := range s.Definitions {
				if defs[d.Name] {
					t.Errorf("definition %s twice", d.Name)
				}
				defs[d.Name] = true
				if !cLevel && (d.NamePrefix != nil || d.EnumName != nil) {
					t.Errorf("definition %s: name-prefix/enum-name need genetlink-c", d.Name)
				}
				switch d.Type {
				case "const":
					if _, ok := intValue(d.Value); !ok {
						t.Errorf("const %s: value %v", d.Name, d.Value)
					}
				case "enum", "flags":
					if len(d.Entries) == 0 {
						t.Errorf("%s %s: no entries", d.Type, d.Name)
					}
					seen := map[string]bool{}
					vals := map[int64]string{}
					for i, v := range enumValues(&d) {
						e := d.Entries[i].Name
						if seen[e] {
							t.Errorf("%s %s: entry %s twice", d.Type, d.Name, e)
						}
						seen[e] = true
						if other, dup := vals[v]; dup {
							t.Errorf("%s %s: %s and %s both %d", d.Type, d.Name, other, e, v)
						}
						vals[v] = e
					}
				case "struct":
					if !legacy {
						t.Errorf("struct %s needs genetlink-legacy", d.Name)
					}
					for _, m := range d.Members {
						if !memberTypes[m.Type] {
							t.Errorf("struct %s: member %s type %q", d.Name, m.Name, m.Type)
						}
						if _, err := memberSize(m); err != nil {
							t.Errorf("struct %s: %v", d.Name, err)
						}
						if m.DisplayHint != "" && !displayHints[m.DisplayHint] {
							t.Errorf("struct %s: member %s display-hint %q", d.Name, m.Name, m.DisplayHint)
						}
						if m.Enum != "" && s.def(m.Enum) == nil {
							t.Errorf("struct %s: member %s: no enum %s", d.Name, m.Name, m.Enum)
						}
					}
				default:
					t.Errorf("definition %s: type %q", d.Name, d.Type)
				}
			}

			sets := map[string]bool{}
			for _, a := range s.AttributeSets {
				if sets[a.Name] {
					t.Errorf("attribute set %s twice", a.Name)
				}
				sets[a.Name] = true
				if a.SubsetOf != "" && s.set(a.SubsetOf) == nil {
					t.Errorf("set %s: subset of unknown %s", a.Name, a.SubsetOf)
				}
				names := map[string]bool{}
				pads := 0
				for _, at := range a.Attributes {
					where := a.Name + "." + at.Name
					if names[at.Name] {
						t.Errorf("%s twice", where)
					}
					names[at.Name] = true
					indexed := at.Type == "indexed-array" && legacy // genetlink-legacy only, as in the kernel's nlctrl.yaml
					if !attrTypes[at.Type] && !indexed {
						t.Errorf("%s: type %q", where, at.Type)
					}
					if at.Type == "pad" {
						pads++
					}
					if (at.Type == "nest" || indexed && at.SubType == "nest") != (at.NestedAttributes != "") {
						t.Errorf("%s: nested-attributes goes with type nest", where)
					}
					if at.NestedAttributes != "" && s.set(at.NestedAttributes) == nil {
						t.Errorf("%s: no attribute set %s", where, at.NestedAttributes)
					}
					if at.Enum != "" {
						d := s.def(at.Enum)
						if d == nil || (d.Type != "enum" && d.Type != "flags") {
							t.Errorf("%s: no enum or flags %s", where, at.Enum)
						}
						if !scalarTypes[at.Type] {
							t.Errorf("%s: enum on a %s", where, at.Type)
						}
					}
					if at.EnumAsFlags && at.Enum == "" {
						t.Errorf("%s: enum-as-flags without enum", where)
					}
					if at.Struct != "" {
						if !legacy {
							t.Errorf("%s: struct needs genetlink-legacy", where)
						}
						if d := s.def(at.Struct); d == nil || d.Type != "struct" {
							t.Errorf("%s: no struct %s", where, at.Struct)
						}
						if at.Type != "binary" {
							t.Errorf("%s: struct on a %s", where, at.Type)
						}
					}
					if at.SubType != "" && !(indexed && at.SubType == "nest") && (at.Type != "binary" && !indexed || !scalarTypes[at.SubType]) {
						t.Errorf("%s: sub-type %s on a %s", where, at.SubType, at.Type)
					}
					if at.ByteOrder != "" && (!byteOrders[at.ByteOrder] || !scalarTypes[at.Type]) {
						t.Errorf("%s: byte-order %q on a %s", where, at.ByteOrder, at.Type)
					}
					if at.DisplayHint != "" && !displayHints[at.DisplayHint] {
						t.Errorf("%s: display-hint %q", where, at.DisplayHint)
					}
				}
				if pads > 1 {
					t.Errorf("set %s: %d pad attributes", a.Name, pads)
				}
				if a.SubsetOf == "" {
					vals := map[int64]string{}
					for i, v := range attrValues(&a) {
						if other, dup := vals[v]; dup {
							t.Errorf("set %s: %s and %s both %d", a.Name, other, a.Attributes[i].Name, v)
						}
						vals[v] = a.Attributes[i].Name
					}
				}
			}

			// No set may nest into itself, directly or not: a decoder
			// that builds its tables eagerly would never finish.
			var visit func(name string, path []string)
			visit = func(name string, path []string) {
				for _, p := range path {
					if p == name {
						t.Errorf("attribute sets nest in a cycle: %s", strings.Join(append(path, name), " -> "))
						return
					}
				}
				if a := s.set(name); a != nil {
					for _, at := range a.Attributes {
						if at.NestedAttributes != "" {
							visit(at.NestedAttributes, append(path[:len(path):len(path)], name))
						}
					}
				}
			}
			for _, a := range s.AttributeSets {
				visit(a.Name, nil)
			}

			groups := map[string]bool{}
			for _, g := range s.McastGroups.List {
				if groups[g.Name] {
					t.Errorf("mcast group %s twice", g.Name)
				}
				groups[g.Name] = true
				if !cLevel && g.CDefineName != "" {
					t.Errorf("group %s: c-define-name needs genetlink-c", g.Name)
				}
			}

			ids, err := s.opValues()
			if err != nil {
				t.Fatal(err)
			}
			ops := map[string]bool{}
			msgs := map[int64]string{}
			for i, op := range s.Operations.List {
				if ops[op.Name] {
					t.Errorf("operation %s twice", op.Name)
				}
				ops[op.Name] = true
				if strings.TrimSpace(op.Doc) == "" {
					t.Errorf("operation %s: no doc", op.Name)
				}
				if op.Event == nil && op.Notify == "" {
					t.Errorf("operation %s: not a notification or event", op.Name)
					continue
				}
				if op.Mcgrp == "" || !groups[op.Mcgrp] {
					t.Errorf("operation %s: mcgrp %q is not a group of the spec", op.Name, op.Mcgrp)
				}
				set := s.set(s.ntfAttrSet(op.Name))
				if set == nil {
					t.Errorf("operation %s: no attribute set", op.Name)
					continue
				}
				if op.Event != nil {
					for _, an := range op.Event.Attributes {
						if set.attr(an) == nil {
							t.Errorf("operation %s: no attribute %s in set %s", op.Name, an, set.Name)
						}
					}
				}
				if other, dup := msgs[ids[i].rsp]; dup {
					t.Errorf("operations %s and %s both message %d", other, op.Name, ids[i].rsp)
				}
				msgs[ids[i].rsp] = op.Name
			}
		})
	}
}

// checkNumbers compares every number of s that has a C name with h.
// strict: a C name missing from h is an error (else skipped). It returns
// how many values it compared.
func checkNumbers(t *testing.T, s *spec, h *cHeader, strict bool) int {
	t.Helper()
	n := 0
	check := func(key, cname string, got int64) {
		t.Helper()
		if c, ok := cNameExceptions[s.Name+" "+key]; ok {
			cname = c
		}
		want, ok := h.lookup(cname)
		if !ok {
			if strict {
				t.Errorf("%s: %s not in %v", key, cname, h.files)
			}
			return
		}
		n++
		if got != want {
			t.Errorf("%s: spec says %d, %s is %d", key, got, cname, want)
		}
	}

	for _, a := range s.AttributeSets {
		if a.SubsetOf != "" {
			continue // values come from the main set
		}
		pfx := s.attrPrefix(&a)
		for i, v := range attrValues(&a) {
			at := a.Attributes[i]
			if at.Type == "unused" {
				continue
			}
			check("attr "+a.Name+"."+at.Name, cName(pfx, at.Name), v)
		}
	}
	ids, err := s.opValues()
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range s.Operations.List {
		v := ids[i].rsp
		if v < 0 {
			v = ids[i].req
		}
		check("op "+op.Name, cName(s.opPrefix(), op.Name), v)
	}
	for _, d := range s.Definitions {
		switch d.Type {
		case "enum", "flags":
			pfx := s.enumPrefix(&d)
			for i, v := range enumValues(&d) {
				check(d.Type+" "+d.Name+"."+d.Entries[i].Name, cName(pfx, d.Entries[i].Name), v)
			}
		case "const":
			v, _ := intValue(d.Value)
			check("const "+d.Name, cName(s.Name, "-", d.Name), v)
		}
	}
	return n
}

// checkNames compares the family name, version and group names with the
// header's string defines.
func checkNames(t *testing.T, s *spec, h *cHeader) {
	t.Helper()
	famDef := s.Name + "-family-name"
	if s.CFamilyName != "" {
		famDef = s.CFamilyName
	}
	if v, ok := h.strs[cName(famDef)]; ok {
		if v != s.Name {
			t.Errorf("%s is %q, spec name %q", cName(famDef), v, s.Name)
		}
	} else if s.CFamilyName != "" {
		t.Errorf("c-family-name %s not in the header", cName(famDef))
	}
	verDef := s.Name + "-family-version"
	if s.CVersionName != "" {
		verDef = s.CVersionName
	}
	version := int64(1)
	if s.Version != nil {
		version = *s.Version
	}
	if v, ok := h.lookup(cName(verDef)); ok {
		if v != version {
			t.Errorf("%s is %d, spec version %d", cName(verDef), v, version)
		}
	} else if s.CVersionName != "" {
		t.Errorf("c-version-name %s not in the header", cName(verDef))
	}
	for _, g := range s.McastGroups.List {
		def := s.Name + "-mcgrp-" + g.Name
		if g.CDefineName != "" {
			def = g.CDefineName
		}
		if v, ok := h.strs[cName(def)]; ok {
			if v != g.Name {
				t.Errorf("%s is %q, group %q", cName(def), v, g.Name)
			}
		} else if g.CDefineName != "" {
			t.Errorf("group %s: c-define-name %s not in the header", g.Name, cName(def))
		}
	}
}

// TestSpecNumbersMatchUAPI checks every attribute, message, enum entry and
// constant number of each spec against the enums and #defines of its 6.12
// UAPI header (for acpi_event, of drivers/acpi/event.c).
func TestSpecNumbersMatchUAPI(t *testing.T) {
	all := ourSpecs(t)
	for _, name := range wantSpecs {
		s := all[name]
		t.Run(name, func(t *testing.T) {
			h := headersFor(t, name)
			n := checkNumbers(t, s, h, true)
			checkNames(t, s, h)
			t.Logf("%d values match %s", n, strings.Join(h.files, ", "))
		})
	}
}

// TestSpecNumbersMatchOlderUAPI checks the same numbers against the UAPI
// headers of the installed libc (Linux 6.1 on Debian 12): a name both know
// must have the same value, the enums being ABI.
func TestSpecNumbersMatchOlderUAPI(t *testing.T) {
	dir := os.Getenv("GENLBRIDGE_OLD_UAPI_DIR")
	if dir == "" {
		dir = "/usr/include/linux"
	}
	all := ourSpecs(t)
	for name, files := range olderHeaders {
		t.Run(name, func(t *testing.T) {
			var have []string
			for _, f := range files {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					have = append(have, f)
				}
			}
			if len(have) == 0 {
				t.Skipf("none of %v in %s", files, dir)
			}
			h, err := loadHeaders(dir, have...)
			if err != nil {
				t.Fatal(err)
			}
			n := checkNumbers(t, all[name], h, false)
			t.Logf("%d values match %s", n, strings.Join(h.files, ", "))
		})
	}
}

// TestStructLayouts checks that every struct a spec defines has the
// members, offsets and size of the C struct of the same name, laid out
// with natural alignment (YNL structs are packed: padding must be explicit).
func TestStructLayouts(t *testing.T) {
	found := 0
	for name, s := range ourSpecs(t) {
		for _, d := range s.Definitions {
			if d.Type != "struct" {
				continue
			}
			found++
			t.Run(name+"/"+d.Name, func(t *testing.T) {
				h := headersFor(t, name)
				cMembers, cSize, err := h.cStruct(strings.ReplaceAll(d.Name, "-", "_"), cTypedefs)
				if err != nil {
					t.Fatal(err)
				}
				var fixed []cMember
				for _, m := range cMembers {
					if !m.flexible {
						fixed = append(fixed, m)
					}
				}
				off, i := 0, 0
				for _, m := range d.Members {
					size, err := memberSize(m)
					if err != nil {
						t.Fatal(err)
					}
					if m.Type != "pad" {
						if i >= len(fixed) {
							t.Fatalf("member %s: the C struct has only %d members", m.Name, len(fixed))
						}
						c := fixed[i]
						if cName(m.Name) != strings.ToUpper(c.name) || off != c.offset || size != c.size {
							t.Errorf("member %s at %d size %d; C: %s at %d size %d", m.Name, off, size, c.name, c.offset, c.size)
						}
						i++
					}
					off += size
				}
				if i != len(fixed) {
					t.Errorf("spec has %d members, C %d", i, len(fixed))
				}
				if off != cSize {
					t.Errorf("spec struct is %d bytes, C sizeof %d", off, cSize)
				}
			})
		}
	}
	if found == 0 {
		t.Error("no struct definitions found")
	}
}

// override is genlbridge's override format (<family>.override.yaml).
type override struct {
	Family        string            `yaml:"family"`
	Notifications []ntfMapping      `yaml:"notifications"`
	Meta          map[string]string `yaml:"meta"`
	Format        string            `yaml:"format"`
}

type ntfMapping struct {
	Group        string `yaml:"group"`
	Op           string `yaml:"op"`
	Cmd          any    `yaml:"cmd"`
	Name         string `yaml:"name"`
	AttributeSet string `yaml:"attribute-set"`
	Enum         string `yaml:"enum"`
}

var metaFields = map[string]bool{"seq": true, "jiffies": true, "kernel-ns": true, "msg": true}

func parseOverride(data []byte) (*override, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var o override
	if err := dec.Decode(&o); err != nil {
		return nil, err
	}
	return &o, nil
}

// resolved is what one override entry maps a message id to.
type resolved struct {
	cmd  int64 // -1: any
	name string
	set  string
}

// checkOverride validates o against s (with h, when not nil, for the
// numbers) and returns what its entries resolve to.
func checkOverride(t *testing.T, o *override, s *spec, h *cHeader) []resolved {
	t.Helper()
	if o.Family != s.Name {
		t.Errorf("family %q, spec %q", o.Family, s.Name)
	}
	if len(o.Notifications) == 0 {
		t.Error("no notifications")
	}
	if o.Format != "" && o.Format != "exmpl" {
		t.Errorf("format %q", o.Format)
	}
	var out []resolved
	var setsUsed []string
	for i, m := range o.Notifications {
		where := fmt.Sprintf("notifications[%d]", i)
		switch {
		case m.Group == "*":
		case len(s.McastGroups.List) > 0:
			if !s.group(m.Group) {
				t.Errorf("%s: group %q is not a group of the spec", where, m.Group)
			}
		default:
			if g, ok := kernelGroups[s.Name]; !ok || g[0] != m.Group {
				t.Errorf("%s: group %q is not the group the kernel sends %s notifications to", where, m.Group, s.Name)
			}
		}
		forms := 0
		for _, set := range []bool{m.Op != "", m.Cmd != nil, m.Enum != ""} {
			if set {
				forms++
			}
		}
		if forms != 1 {
			t.Errorf("%s: needs exactly one of op, cmd, enum", where)
			continue
		}
		switch {
		case m.Op != "":
			if m.Name != "" || m.AttributeSet != "" {
				t.Errorf("%s: op takes its name and attribute set from the spec", where)
			}
			id, err := s.ntfID(m.Op)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			set := s.ntfAttrSet(m.Op)
			if s.set(set) == nil {
				t.Errorf("%s: op %s has no attribute set", where, m.Op)
			}
			if h != nil {
				cname := cName(s.opPrefix(), m.Op)
				if want, ok := h.lookup(cname); !ok {
					t.Errorf("%s: %s not in the header", where, cname)
				} else if want != id {
					t.Errorf("%s: op %s is message %d in the spec, %s is %d", where, m.Op, id, cname, want)
				}
			}
			out = append(out, resolved{id, m.Op, set})
			setsUsed = append(setsUsed, set)
		case m.Cmd != nil:
			if a := s.set(m.AttributeSet); a == nil || a.SubsetOf != "" {
				t.Errorf("%s: attribute-set %q is not a full set of the spec", where, m.AttributeSet)
			}
			setsUsed = append(setsUsed, m.AttributeSet)
			if str, ok := m.Cmd.(string); ok {
				if str != "any" {
					t.Errorf("%s: cmd %q (a number or \"any\")", where, str)
				}
				out = append(out, resolved{-1, m.Name, m.AttributeSet})
				continue
			}
			cmd, ok := intValue(m.Cmd)
			if !ok || cmd < 0 || cmd > 255 {
				t.Errorf("%s: cmd %v", where, m.Cmd)
				continue
			}
			if m.Name == "" {
				t.Errorf("%s: cmd %d has no name", where, cmd)
			}
			if h != nil {
				cname := cName(s.opPrefix(), m.Name)
				if want, ok := h.lookup(cname); !ok {
					t.Errorf("%s: %s not in the header", where, cname)
				} else if want != cmd {
					t.Errorf("%s: cmd %d, %s is %d", where, cmd, cname, want)
				}
			}
			out = append(out, resolved{cmd, m.Name, m.AttributeSet})
		default:
			if m.Name != "" {
				t.Errorf("%s: enum entries name themselves", where)
			}
			d := s.def(m.Enum)
			if d == nil || d.Type != "enum" {
				t.Errorf("%s: no enum %q", where, m.Enum)
				continue
			}
			if a := s.set(m.AttributeSet); a == nil || a.SubsetOf != "" {
				t.Errorf("%s: attribute-set %q is not a full set of the spec", where, m.AttributeSet)
			}
			setsUsed = append(setsUsed, m.AttributeSet)
			for j, v := range enumValues(d) {
				e := d.Entries[j].Name
				if h != nil {
					cname := cName(s.enumPrefix(d), e)
					if want, ok := h.lookup(cname); !ok {
						t.Errorf("%s: %s not in the header", where, cname)
					} else if want != v {
						t.Errorf("%s: %s is %d in the spec, %s is %d", where, e, v, cname, want)
					}
				}
				out = append(out, resolved{v, e, m.AttributeSet})
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range out {
		key := fmt.Sprint(r.cmd)
		if seen[key] {
			t.Errorf("message %d mapped twice", r.cmd)
		}
		seen[key] = true
	}
	for k, attr := range o.Meta {
		if !metaFields[k] {
			t.Errorf("meta: unknown field %q", k)
		}
		for _, set := range setsUsed {
			if a := s.set(set); a != nil && a.attr(attr) == nil {
				t.Errorf("meta %s: no attribute %q in set %s", k, attr, set)
			}
		}
	}
	return out
}

func readOverride(t *testing.T, family string) *override {
	t.Helper()
	data, err := fs.ReadFile(specs.FS, family+".override.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseOverride(data)
	if err != nil {
		t.Fatalf("%s.override.yaml: %v", family, err)
	}
	return o
}

// optionalHeaders loads a family's 6.12 headers when they are installed.
func optionalHeaders(t *testing.T, family string) *cHeader {
	t.Helper()
	dir := os.Getenv("GENLBRIDGE_UAPI_DIR")
	if dir == "" {
		dirs, _ := filepath.Glob("/usr/src/linux-headers-6.12*-common/include/uapi/linux")
		if len(dirs) == 0 {
			t.Logf("no 6.12 UAPI headers: %s numbers not checked", family)
			return nil
		}
		sort.Strings(dirs)
		dir = dirs[len(dirs)-1]
	}
	h, err := loadHeaders(dir, specHeaders[family]...)
	if err != nil {
		t.Logf("%v: %s numbers not checked", err, family)
		return nil
	}
	return h
}

// TestOverridesOfShippedSpecs checks the overrides of the families
// genlbridge ships a spec for, against that spec and, where the override
// must fit it too, against the kernel's own 6.12 spec, both resolving every
// message the same way.
func TestOverridesOfShippedSpecs(t *testing.T) {
	all := ourSpecs(t)
	for _, family := range []string{"mptcp_pm", "ethtool"} {
		t.Run(family, func(t *testing.T) {
			o := readOverride(t, family)
			h := optionalHeaders(t, family)
			ours := checkOverride(t, o, all[family], h)
			t.Run("kernel-spec", func(t *testing.T) {
				ks, err := loadKernelSpec(kernelSpecDir(t), family)
				if err != nil {
					t.Skip(err)
				}
				theirs := checkOverride(t, o, ks, h)
				if fmt.Sprint(ours) != fmt.Sprint(theirs) {
					t.Errorf("resolves differently:\n ours   %v\n kernel %v", ours, theirs)
				}
			})
		})
	}
}

// TestOverridesOfKernelSpecs checks the overrides of the families
// genlbridge ships no spec for against the kernel's own 6.12 spec.
func TestOverridesOfKernelSpecs(t *testing.T) {
	for _, family := range []string{"devlink", "team", "nlctrl"} {
		t.Run(family, func(t *testing.T) {
			o := readOverride(t, family)
			ks, err := loadKernelSpec(kernelSpecDir(t), family)
			if err != nil {
				t.Skip(err)
			}
			checkOverride(t, o, ks, optionalHeaders(t, family))
		})
	}
}

// TestControlExmplOverride checks CONTROL_EXMPL.override.yaml against the
// module's spec, kmod/control_exmpl.yaml.
func TestControlExmplOverride(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "kmod", "control_exmpl.yaml"))
	if err != nil {
		t.Skip(err)
	}
	s, err := parseSpec(data, false)
	if err != nil {
		t.Fatal(err)
	}
	o := readOverride(t, "CONTROL_EXMPL")
	got := checkOverride(t, o, s, nil)
	if len(got) != 1 || got[0].cmd != -1 || got[0].set != "event" {
		t.Errorf("resolves to %v, want every cmd to set event", got)
	}
	if o.Format != "exmpl" {
		t.Errorf("format %q, want exmpl", o.Format)
	}
	for _, k := range []string{"seq", "jiffies", "kernel-ns", "msg"} {
		if o.Meta[k] == "" {
			t.Errorf("meta %s missing", k)
		}
	}
}

// TestKernelGroupNames checks the group names the overrides use for specs
// without mcast-groups against the UAPI defines.
func TestKernelGroupNames(t *testing.T) {
	for family, g := range kernelGroups {
		if g[1] == "" {
			continue
		}
		h := headersFor(t, family)
		if v, ok := h.strs[g[1]]; !ok || v != g[0] {
			t.Errorf("%s: %s is %q, want %q", family, g[1], v, g[0])
		}
	}
}

// kernelSpecDifferences are the intended differences from the kernel's own
// 6.12 specs, by family, set and attribute.
var kernelSpecDifferences = map[string]string{
	// The kernel's spec gives TDR notifications the nest of the plain
	// cable test; net/ethtool/cabletest.c fills ETHTOOL_A_CABLE_TDR_NEST_*
	// (ethnl_cable_test_amplitude, _pulse, _step) into it.
	"ethtool cable-test-tdr-ntf.nest": "nested-attributes",
}

// TestAgreesWithKernelSpecs compares the attribute sets that genlbridge's
// specs and the kernel's own 6.12 specs both have: an attribute of both
// must have the same number, type and nesting.
func TestAgreesWithKernelSpecs(t *testing.T) {
	all := ourSpecs(t)
	dir := kernelSpecDir(t)
	for _, family := range []string{"netdev", "mptcp_pm", "ethtool"} {
		t.Run(family, func(t *testing.T) {
			ks, err := loadKernelSpec(dir, family)
			if err != nil {
				t.Skip(err)
			}
			s := all[family]
			compared := 0
			for _, a := range s.AttributeSets {
				ka := ks.set(a.Name)
				if ka == nil || a.SubsetOf != "" || ka.SubsetOf != "" {
					continue
				}
				ourVals, theirVals := attrValues(&a), attrValues(ka)
				for i, at := range a.Attributes {
					for j, kat := range ka.Attributes {
						if kat.Name != at.Name {
							continue
						}
						compared++
						key := family + " " + a.Name + "." + at.Name
						if ourVals[i] != theirVals[j] {
							t.Errorf("%s: number %d, kernel %d", key, ourVals[i], theirVals[j])
						}
						if at.Type != kat.Type {
							t.Errorf("%s: type %s, kernel %s", key, at.Type, kat.Type)
						}
						if at.NestedAttributes != kat.NestedAttributes && kernelSpecDifferences[key] != "nested-attributes" {
							t.Errorf("%s: nests %s, kernel %s", key, at.NestedAttributes, kat.NestedAttributes)
						}
						if at.ByteOrder != kat.ByteOrder {
							t.Errorf("%s: byte-order %q, kernel %q", key, at.ByteOrder, kat.ByteOrder)
						}
					}
				}
			}
			if compared == 0 {
				t.Error("no attribute in common")
			}
			t.Logf("%d attributes agree", compared)
		})
	}
}
