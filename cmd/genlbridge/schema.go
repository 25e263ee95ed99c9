package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/genlbridge/genlbridge/schema"
	"github.com/genlbridge/genlbridge/ynl/specs"
)

func cmdSchema(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("schema", stderr, func(w io.Writer) {
		fmt.Fprintln(w, `Usage: genlbridge schema [--out DIR] [FAMILY[/GROUP]]

Prints the JSON Schema (draft 2020-12) of the records genlbridge publishes
(format v2): events and loss records, and for a family decoded by a YNL spec
the attrs of each message it decodes, from the same spec the bridge would
decode with (GENLBRIDGE_SPEC_DIRS, built in, /usr/share/ynl/specs,
linux-doc). Without FAMILY: the schema of any family's records (attrs
unconstrained). With --out: one file per family with a spec
(DIR/<family>.json), and DIR/genlbridge.json for any family.`)
	})
	out := fs.String("out", "", "write one file per family into this directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	reg, errs := specs.Registry(envSpecDirs())
	for _, err := range errs {
		fmt.Fprintf(stderr, "genlbridge schema: spec: %v\n", err)
	}
	write := func(w io.Writer, doc map[string]any) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	if *out != "" {
		if fs.NArg() > 0 {
			return fmt.Errorf("--out writes every family: give no FAMILY: %w", errUsage)
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
		files := map[string]map[string]any{"genlbridge.json": schema.Document("", "", nil)}
		for _, name := range reg.Families() {
			f, _, _ := reg.Family(name)
			files[name+".json"] = schema.Document(name, "", f)
		}
		for name, doc := range files {
			fh, err := os.Create(filepath.Join(*out, name))
			if err != nil {
				return fmt.Errorf("schema: %w", err)
			}
			err = write(fh, doc)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("schema: write %s: %w", name, err)
			}
		}
		fmt.Fprintf(stderr, "wrote %d schemas into %s\n", len(files), *out)
		return nil
	}
	switch fs.NArg() {
	case 0:
		return write(stdout, schema.Document("", "", nil))
	case 1:
	default:
		return fmt.Errorf("want at most one FAMILY[/GROUP]: %w", errUsage)
	}
	family, group, _ := strings.Cut(fs.Arg(0), "/")
	f, origin, ok := reg.Family(family)
	if !ok {
		fmt.Fprintf(stderr, "genlbridge schema: no YNL spec of family %s: its events are generic\n", family)
	} else {
		if group != "" && !contains(f.Groups(), group) {
			return fmt.Errorf("family %s has no multicast group %q (it has %s): %w", family, group, strings.Join(f.Groups(), ", "), errUsage)
		}
		fmt.Fprintf(stderr, "genlbridge schema: %s from %s\n", family, origin)
	}
	return write(stdout, schema.Document(family, group, f))
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
