package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/genlbridge/genlbridge/ynl/specs"
	"github.com/mdlayher/genetlink"
)

func cmdFamilies(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("families", stderr, func(w io.Writer) {
		fmt.Fprintln(w, "Usage: genlbridge families [--json]\n\nLists the generic netlink families the kernel has registered, with their multicast groups, the YNL spec\nthe bridge would decode each with (GENLBRIDGE_SPEC_DIRS, built in, /usr/share/ynl/specs, linux-doc), and which messages\nof each group it decodes by name; the others are published in the generic form.")
	})
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	reg, errs := specs.Registry(envSpecDirs())
	for _, err := range errs {
		fmt.Fprintf(stderr, "genlbridge families: spec: %v\n", err)
	}
	c, err := genetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("dial generic netlink: %w", err)
	}
	defer c.Close()
	fams, err := c.ListFamilies()
	if err != nil {
		return fmt.Errorf("list families: %w", err)
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].Name < fams[j].Name })
	type group struct {
		Name string `json:"name"`
		ID   uint32 `json:"id"`
		// Decodes lists the messages of the group that decode by name.
		Decodes []string `json:"decodes,omitempty"`
	}
	type family struct {
		Name    string  `json:"name"`
		ID      uint16  `json:"id"`
		Version uint8   `json:"version"`
		Spec    string  `json:"spec,omitempty"`
		Groups  []group `json:"groups"`
	}
	var out []family
	for _, f := range fams {
		fam := family{Name: f.Name, ID: f.ID, Version: f.Version, Groups: []group{}}
		spec, origin, ok := reg.Family(f.Name)
		if ok {
			fam.Spec = origin
		}
		for _, g := range f.Groups {
			gr := group{Name: g.Name, ID: g.ID}
			if ok {
				gr.Decodes = spec.Group(g.Name).Decodes()
			}
			fam.Groups = append(fam.Groups, gr)
		}
		out = append(out, fam)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAMILY\tID\tVERSION\tSPEC\tMULTICAST GROUPS (name:id, then what decodes by name)")
	for _, f := range out {
		var groups []string
		for _, g := range f.Groups {
			s := fmt.Sprintf("%s:%d", g.Name, g.ID)
			switch {
			case f.Spec == "":
			case len(g.Decodes) == 0:
				s += " (generic)"
			default:
				s += " (" + strings.Join(g.Decodes, ",") + ")"
			}
			groups = append(groups, s)
		}
		if len(groups) == 0 {
			groups = []string{"-"}
		}
		spec := f.Spec
		if spec == "" {
			spec = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", f.Name, f.ID, f.Version, spec, strings.Join(groups, " "))
	}
	return tw.Flush()
}
