package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A spec that does not parse given to spec check is reported with its file
// and line, and the exit is non-zero.
func TestSpecCheckReportsABadSpec(t *testing.T) {
	dir := t.TempDir()
	bad := "name: broken\nprotocol: genetlink\nattribute-sets:\n  - name: x\n    attributes:\n      - {name: a, type: u32, enum: nope}\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	var out, errb strings.Builder
	if code := mainErr([]string{"spec", "check", "./broken.yaml"}, &out, &errb); code != 1 || !strings.Contains(out.String(), "broken.yaml:6:") {
		t.Errorf("spec check: exit %d, output %q", code, out.String())
	}
}
