package ynl

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/kmod"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		data := []byte(text)
		if strings.HasSuffix(name, ".gz") {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			data = buf.Bytes()
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const regSpec = `name: %s
attribute-sets:
  - name: s
    attributes:
      - {name: a, type: u32}
operations:
  list:
    - {name: %s, attribute-set: s, event: {attributes: [a]}, mcgrp: g}
mcast-groups:
  list: [{name: g}]
`

func regSpecOf(family, op string) string {
	return strings.Replace(strings.Replace(regSpec, "%s", family, 1), "%s", op, 1)
}

func TestRegistry(t *testing.T) {
	first := writeFiles(t, map[string]string{
		"fam.yaml":          regSpecOf("fam", "first-op"),
		"fam.override.yaml": "family: fam\nnotifications: [{group: g, cmd: 9, name: nine, attribute-set: s}]\n",
		"broken.yaml":       "name: broken\nattribute-sets: [{name: s, attributes: [{name: n, type: nest, nested-attributes: zz}]}]\n",
		"raw.yaml":          "name: rt\nprotocol: netlink-raw\n",
		"raw2.yaml":         "name: rt2\nprotocol: netlink-raw\noperations: {enum-model: directional, list: [{name: x}]}\n",
		"README.md":         "not a spec",
	})
	second := writeFiles(t, map[string]string{
		"fam.yaml":             regSpecOf("fam", "second-op"),
		"other.yaml.gz":        regSpecOf("other", "gz-op"),
		"other.override.yaml":  "family: other\nnotifications: [{group: g, op: nope}]\n",
		"broken.yaml":          regSpecOf("broken", "fixed-op"),
		"bad.yaml":             "name: bad\n  x: [\n",
		"orphan.override.yaml": "family: nobody\n",
		"dup.yaml":             regSpecOf("fam2", "a"),
		"dup2.yaml":            regSpecOf("fam2", "b"),
	})
	r, errs := LoadRegistry(DirSource(first, false), DirSource(second, false),
		DirSource(filepath.Join(first, "missing"), true))
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		filepath.Join(first, "broken.yaml") + ":2:82: attribute n: nested-attributes zz is not an attribute set",
		filepath.Join(second, "bad.yaml") + ":2: yaml: ",
		"override " + filepath.Join(second, "other.override.yaml") + " does not fit spec " + filepath.Join(second, "other.yaml.gz") + ": " +
			filepath.Join(second, "other.override.yaml") + ":2:32: op nope is not an operation of other",
		filepath.Join(second, "dup2.yaml") + ":1:1: second spec of family fam2 in " + second,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
	if len(errs) != 4 {
		t.Errorf("%d errors:\n%s", len(errs), all)
	}
	if got := strings.Join(r.Families(), " "); got != "broken fam fam2 other" {
		t.Fatalf("families %s", got)
	}
	f, origin, ok := r.Family("fam")
	if !ok || origin != filepath.Join(first, "fam.yaml") || f.Lookup("g", 1).Name != "first-op" || f.Lookup("g", 9).Name != "nine" {
		t.Fatalf("fam from %s: %v", origin, f.Notifications())
	}
	if o, ok := r.Override("fam"); !ok || o != filepath.Join(first, "fam.override.yaml") {
		t.Fatalf("fam override %s", o)
	}
	// A spec that does not compile lets the next source's win.
	if f, origin, _ := r.Family("broken"); origin != filepath.Join(second, "broken.yaml") || f.Lookup("g", 1).Name != "fixed-op" {
		t.Fatalf("broken from %s", origin)
	}
	// An override that does not fit is left out; the family loads without it.
	if f, origin, _ := r.Family("other"); origin != filepath.Join(second, "other.yaml.gz") || f.Lookup("g", 1).Name != "gz-op" {
		t.Fatalf("other from %s", origin)
	}
	if _, ok := r.Override("other"); ok {
		t.Fatal("other has an override")
	}
	if _, _, ok := r.Family("rt"); ok {
		t.Fatal("netlink-raw family loaded")
	}
	notes := strings.Join(r.Notes(), "\n")
	if !strings.Contains(notes, filepath.Join(first, "raw.yaml")+": skipped: family rt is netlink-raw") ||
		!strings.Contains(notes, filepath.Join(first, "raw2.yaml")+": skipped: family rt2 is netlink-raw") ||
		!strings.Contains(notes, filepath.Join(second, "orphan.override.yaml")+": unused: no spec of family nobody") {
		t.Fatalf("notes:\n%s", notes)
	}
	// A required source that is missing is an error.
	_, errs = LoadRegistry(DirSource(filepath.Join(first, "missing"), false))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "read spec source "+filepath.Join(first, "missing")) {
		t.Fatalf("missing source: %v", errs)
	}
}

func TestRegistryMemSource(t *testing.T) {
	r, errs := LoadRegistry(
		MemSource("testdata", map[string][]byte{"control_exmpl.override.yaml": readTestdata(t, "control_exmpl.override.yaml")}),
		MemSource("kmod", map[string][]byte{"control_exmpl.yaml": kmod.Spec}),
	)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	f, origin, ok := r.Family("CONTROL_EXMPL")
	if !ok || origin != "kmod/control_exmpl.yaml" || f.Format != FormatExmpl || f.Lookup("EXMPL_GRP", 1) == nil {
		t.Fatalf("CONTROL_EXMPL from %s: %+v", origin, f)
	}
}

// TestRegistryKernelAndProject loads the kernel's specs and the project's
// (ynl/specs) as the daemon does, and checks none fails.
func TestRegistryKernelAndProject(t *testing.T) {
	if _, err := os.Stat("specs"); err != nil {
		t.Skip("no ynl/specs")
	}
	sources := []Source{DirSource(kernelSpecDir, true), {Name: "embedded", FS: os.DirFS("specs"), Dir: "."},
		MemSource("kmod", map[string][]byte{"control_exmpl.yaml": kmod.Spec})}
	r, errs := LoadRegistry(sources...)
	for _, err := range errs {
		t.Error(err)
	}
	for _, name := range []string{"netdev", "ethtool", "mptcp_pm", "devlink", "nlctrl", "team", "CONTROL_EXMPL"} {
		f, origin, ok := r.Family(name)
		if !ok {
			t.Errorf("no family %s", name)
			continue
		}
		ov, _ := r.Override(name)
		t.Logf("%s: %s (override %s): %d notifications in %v", name, origin, ov, len(f.Notifications()), f.Groups())
	}
	if f, _, ok := r.Family("ethtool"); ok {
		if m := f.Lookup("monitor", 13); m == nil || m.Name != "features-ntf" {
			t.Errorf("ethtool monitor/13 = %v", m)
		}
	}
}

func TestSourceOrder(t *testing.T) {
	dirs := []string{
		"/usr/share/doc/linux-doc-6.1/Documentation/netlink/specs",
		"/usr/share/doc/linux-doc-6.12/Documentation/netlink/specs",
		"/usr/share/doc/linux-doc-5.10/Documentation/netlink/specs",
		"/usr/share/doc/linux-doc-6.12.2/Documentation/netlink/specs",
	}
	sortNewestFirst(dirs)
	var got []string
	for _, d := range dirs {
		got = append(got, strings.TrimPrefix(strings.TrimSuffix(d, "/Documentation/netlink/specs"), "/usr/share/doc/linux-doc-"))
	}
	if g := strings.Join(got, " "); g != "6.12.2 6.12 6.1 5.10" {
		t.Fatalf("order %s", g)
	}
	src := DefaultSources([]string{"/a", "/b"}, MemSource("embedded", nil))
	var names []string
	for _, s := range src {
		names = append(names, s.Name)
	}
	want := append([]string{"/a", "/b", "embedded", SystemSpecDir}, LinuxDocSpecDirs()...)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("sources %v, want %v", names, want)
	}
	if src[0].Optional || !src[3].Optional {
		t.Fatal("user directories must be required, the system's optional")
	}
}
