// Every GENLBRIDGE_ name written in the files of deploy/ (manifests, README,
// unit, dashboard...) and in the root Dockerfile against the binary's
// settings (config.Vars) and the callout responder's variables.

package deploy_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/config"
)

// Every GENLBRIDGE_ name written anywhere in deploy/ or the Dockerfile is a
// setting (a name ending in _ or _* is a prefix of some), or one the
// callout responder reads (calloutEnv).
func TestSettingNamesInFiles(t *testing.T) {
	known := vars(t)
	for name := range calloutEnv(t) {
		known[name] = config.Var{Env: name}
	}
	files := deployFiles(t, func(p string) bool { return !strings.HasSuffix(p, "_test.go") })
	files = append(files, "../Dockerfile")
	re := regexp.MustCompile(`GENLBRIDGE_[A-Z0-9_]*`)
	for _, f := range files {
		for _, name := range re.FindAllString(string(read(t, f)), -1) {
			if strings.HasSuffix(name, "_") {
				found := false
				for k := range known {
					found = found || strings.HasPrefix(k, name)
				}
				if !found {
					t.Errorf("%s: %s* matches no setting", f, name)
				}
				continue
			}
			if _, ok := known[name]; !ok {
				t.Errorf("%s: %s is not a setting of the binary", f, name)
			}
		}
	}
}
