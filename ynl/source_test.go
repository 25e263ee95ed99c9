package ynl

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sourceOf returns the index of the source err concerns, or -1.
func sourceOf(err error) int {
	var se *SourceError
	if errors.As(err, &se) {
		return se.Source
	}
	return -1
}

func TestSourceError(t *testing.T) {
	// Relative directories, as GENLBRIDGE_SPEC_DIRS may give them: "." and
	// "specs".
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("specs", 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"broken.yaml":               "name: broken\nattribute-sets: [{name: s, attributes: [{name: n, type: nest, nested-attributes: zz}]}]\n",
		"bad.override.yaml":         "family: fam\nformats: exmpl\n",
		"specs/fam.yaml":            regSpecOf("fam", "op"),
		"specs/fam.override.yaml":   "family: fam\nnotifications: [{group: g, op: nope}]\n",
		"specs/syntax.yaml":         "name: bad\n  x: [\n",
		"specs/dup.yaml":            regSpecOf("fam", "again"),
		"specs/unreadable.yaml.gz":  "not gzip",
		"specs/README.md":           "not a spec",
		"specs/nested/ignored.yaml": "",
	}
	os.Mkdir("specs/nested", 0o755)
	for name, text := range files {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sources := []Source{DirSource(".", false), DirSource("specs", false), DirSource("missing", false), DirSource("absent", true)}
	_, errs := LoadRegistry(sources...)
	want := map[string]int{
		"broken.yaml:2:82: attribute n: nested-attributes zz is not an attribute set": 0,
		`bad.override.yaml:2:10: override: unknown key "formats"`:                     0,
		"specs/syntax.yaml:2: yaml: ":                                                 1,
		"specs/fam.yaml:1:1: second spec of family fam in specs":                      1,
		"read specs/unreadable.yaml.gz: ":                                             1,
		"override specs/fam.override.yaml does not fit spec specs/dup.yaml: ":         1,
		"read spec source missing: ":                                                  2,
	}
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d: %v", len(errs), len(want), errs)
	}
	for _, err := range errs {
		src := sourceOf(err)
		if src < 0 {
			t.Errorf("%v (%T) is not a *SourceError", err, err)
			continue
		}
		found := false
		for text, i := range want {
			if strings.HasPrefix(err.Error(), text) {
				found = true
				if src != i {
					t.Errorf("%v: source %d, want %d", err, src, i)
				}
			}
		}
		if !found {
			t.Errorf("unexpected error %v", err)
		}
		// The file:line:col stays reachable.
		var e *Error
		if strings.Contains(err.Error(), ".yaml:") && !errors.As(err, &e) {
			t.Errorf("%v: no *Error inside", err)
		}
	}
	// A missing required source wraps fs.ErrNotExist.
	for _, err := range errs {
		if sourceOf(err) == 2 && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v does not wrap ErrNotExist", err)
		}
	}
}

func TestReadSpecFile(t *testing.T) {
	dir := t.TempDir()
	text := regSpecOf("fam", "op")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(text))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "a.yaml.gz"), buf.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(text), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml.gz"), []byte(text), 0o644)
	for _, name := range []string{"a.yaml.gz", "b.yaml"} {
		b, err := ReadSpecFile(filepath.Join(dir, name))
		if err != nil || string(b) != text {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	if _, err := ReadSpecFile(filepath.Join(dir, "c.yaml.gz")); err == nil {
		t.Error("c.yaml.gz is not gzip")
	}
	if _, err := ReadSpecFile(filepath.Join(dir, "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("none.yaml: %v", err)
	}
}
