package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/internal/natstest"
)

// A spec that does not parse in GENLBRIDGE_SPEC_DIRS stops the start with
// its file and line, however the directory is written ("." included).
func TestBadUserSpecStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	bad := "name: broken\nprotocol: genetlink\nattribute-sets:\n  - name: x\n    attributes:\n      - {name: a, type: u32, enum: nope}\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, d := range []string{".", "./", dir} {
		if _, err := loadSpecs([]string{d}, natstest.Logger()); err == nil || !strings.Contains(err.Error(), "broken.yaml:6:") {
			t.Errorf("GENLBRIDGE_SPEC_DIRS=%s: err = %v, want broken.yaml:6:...", d, err)
		}
	}
	// Without the bad directory the start goes on.
	if _, err := loadSpecs(nil, natstest.Logger()); err != nil {
		t.Fatalf("no user directory: %v", err)
	}
}
