package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/genlbridge/genlbridge/ynl"
	"github.com/genlbridge/genlbridge/ynl/specs"
)

func cmdSpec(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, "Usage: genlbridge spec check FILE...\n\nChecks YNL specs (*.yaml, *.yaml.gz) and genlbridge overrides (*.override.yaml) as the bridge would load them,\nand says what each decodes; errors name the file, line and column.\n")
		return errUsage
	}
	fs := newFlagSet("spec check", stderr, func(w io.Writer) {
		fmt.Fprint(w, "Usage: genlbridge spec check FILE...\n\nChecks YNL specs (*.yaml, *.yaml.gz) and genlbridge overrides (*.override.yaml) as the bridge would load them: an\noverride against its family's spec (among FILEs, else the one the bridge would use), a spec with its family's override.\n")
	})
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no file to check", errUsage)
	}
	failed, err := checkSpecs(fs.Args(), envSpecDirs(), stdout)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files have errors", failed, fs.NArg())
	}
	return nil
}

// envSpecDirs is GENLBRIDGE_SPEC_DIRS, for the tools.
func envSpecDirs() []string {
	var dirs []string
	for _, d := range strings.Split(os.Getenv("GENLBRIDGE_SPEC_DIRS"), ",") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// checkSpecs loads files ahead of every source the bridge reads (so they
// win), and reports, per file, its errors or what it decodes. It returns
// how many files failed.
func checkSpecs(files, userDirs []string, w io.Writer) (int, error) {
	var sources []ynl.Source
	kind := map[string]string{} // file -> family it describes or completes
	bad := map[string][]string{}
	origin := map[string]string{} // file -> the name the registry gives it
	var srcFile []string          // the file of each source
	for _, f := range files {
		data, err := ynl.ReadSpecFile(f)
		if err != nil {
			bad[f] = append(bad[f], err.Error())
			continue
		}
		base := filepath.Base(f)
		if strings.Contains(base, ".override.yaml") {
			if o, err := ynl.ParseOverride(f, data); err == nil {
				kind[f] = o.Family
			}
		} else if s, err := ynl.ParseSpec(f, data); err == nil {
			kind[f] = s.Name
		}
		// One source per file, in the given order (the first wins), its
		// contents as read (a .gz is decompressed: the name loses .gz).
		name := strings.TrimSuffix(base, ".gz")
		sources = append(sources, ynl.MemSource(filepath.Dir(f), map[string][]byte{name: data}))
		srcFile = append(srcFile, f)
		origin[f] = path.Join(filepath.Dir(f), name)
	}
	reg, errs := ynl.LoadRegistry(append(sources, ynl.DefaultSources(userDirs, specs.Embedded()...)...)...)
	for _, err := range errs {
		var se *ynl.SourceError
		if errors.As(err, &se) && se.Source < len(sources) {
			f := srcFile[se.Source]
			bad[f] = append(bad[f], err.Error())
		}
	}
	originOf := origin
	failed := 0
	for _, f := range files {
		if len(bad[f]) > 0 {
			failed++
			for _, e := range bad[f] {
				fmt.Fprintln(w, e)
			}
			continue
		}
		name := kind[f]
		fam, origin, ok := reg.Family(name)
		switch {
		case !ok:
			fmt.Fprintf(w, "%s: ok, but no spec of family %s loads (neither among the files nor on this system)\n", f, name)
		case origin != originOf[f] && !strings.Contains(f, ".override."):
			fmt.Fprintf(w, "%s: ok, but %s describes family %s first: the bridge would use that one\n", f, origin, name)
		default:
			fmt.Fprintf(w, "%s: ok: family %s (spec %s", f, name, origin)
			if ov, ok := reg.Override(name); ok {
				fmt.Fprintf(w, ", override %s", ov)
			}
			fmt.Fprintf(w, ") decodes %s\n", describeNotifications(fam))
			for _, warn := range fam.Warnings() {
				fmt.Fprintf(w, "  warning: %s\n", warn)
			}
		}
	}
	return failed, nil
}

// describeNotifications lists what a family decodes, group by group.
func describeNotifications(f *ynl.Family) string {
	var parts []string
	for _, g := range f.Groups() {
		if d := f.Group(g).Decodes(); len(d) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", g, strings.Join(d, ", ")))
		}
	}
	if d := f.Group(ynl.GroupAny).Decodes(); len(d) > 0 {
		parts = append(parts, fmt.Sprintf("any other group: %s", strings.Join(d, ", ")))
	}
	if len(parts) == 0 {
		return "nothing (no notification names a group)"
	}
	return strings.Join(parts, "; ")
}
