// deploy/README.md against the files of deploy/: it names every one but
// these tests (deploy/*_test.go), which it describes by their test names.

package deploy_test

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadmeNamesEveryFile(t *testing.T) {
	readme := string(read(t, "README.md"))
	// The tests are several files, split by artifact: not each in the README.
	for _, f := range deployFiles(t, func(p string) bool { return p != "README.md" && !strings.HasSuffix(p, "_test.go") }) {
		rel := filepath.ToSlash(f)
		if !strings.Contains(readme, rel) && !strings.Contains(readme, "`"+path.Base(rel)+"`") {
			t.Errorf("README.md does not mention %s", rel)
		}
	}
}
