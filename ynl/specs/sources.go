package specs

import (
	"github.com/genlbridge/genlbridge/kmod"
	"github.com/genlbridge/genlbridge/ynl"
)

// Embedded returns the sources the binary carries, for ynl.DefaultSources:
// this directory's specs and overrides, and the example module's spec
// (kmod/control_exmpl.yaml).
func Embedded() []ynl.Source {
	return []ynl.Source{
		{Name: "embedded", FS: FS, Dir: "."},
		ynl.MemSource("embedded/kmod", map[string][]byte{"control_exmpl.yaml": kmod.Spec}),
	}
}

// Registry loads the registry genlbridge decodes with: the user's spec
// directories, then the embedded ones, then the system's
// (/usr/share/ynl/specs, Debian's linux-doc packages, newest first); see
// ynl.DefaultSources for why in this order. The errors are per file, each a
// *ynl.SourceError whose Source counts the user's directories first; see
// ynl.LoadRegistry.
func Registry(userDirs []string) (*ynl.Registry, []error) {
	return ynl.LoadRegistry(ynl.DefaultSources(userDirs, Embedded()...)...)
}

// EmbeddedRegistry loads the embedded sources alone.
func EmbeddedRegistry() (*ynl.Registry, []error) {
	return ynl.LoadRegistry(Embedded()...)
}
