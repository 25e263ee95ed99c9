package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/mdlayher/genetlink"
)

func cmdFamilies(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("families", stderr, func(w io.Writer) {
		fmt.Fprintln(w, "Usage: genlbridge families [--json]\n\nLists the generic netlink families the kernel has registered, with their multicast groups.")
	})
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
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
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(fams)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAMILY\tID\tVERSION\tMULTICAST GROUPS (name:id)")
	for _, f := range fams {
		groups := ""
		for i, g := range f.Groups {
			if i > 0 {
				groups += " "
			}
			groups += fmt.Sprintf("%s:%d", g.Name, g.ID)
		}
		if groups == "" {
			groups = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", f.Name, f.ID, f.Version, groups)
	}
	return tw.Flush()
}
