package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/spool"
)

// errDamaged makes spool verify exit 1 once its report is printed.
var errDamaged = errors.New("the spool is damaged")

// cmdSpool is `genlbridge spool status|verify`: what the node's spool
// holds, and whether every record of it reads back.
func cmdSpool(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "verify") {
		fmt.Fprint(stderr, spoolUsage)
		return errUsage
	}
	verb := args[0]
	fs := newFlagSet("spool "+verb, stderr, func(w io.Writer) { fmt.Fprint(w, spoolUsage) })
	def := os.Getenv(config.Prefix + "_SPOOL_DIR")
	if def == "" {
		def = config.Default(config.Prefix + "_SPOOL_DIR")
	}
	dir := fs.String("dir", def, "the spool directory (env GENLBRIDGE_SPOOL_DIR)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	records := fs.Bool("records", false, "list every record's place (file, offset, bytes)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	r, err := spool.Inspect(*dir, spool.Options{Records: *records})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printSpool(stdout, r, verb == "verify")
	}
	if verb == "verify" && r.Damaged() {
		fmt.Fprintf(stderr, "genlbridge spool verify: %d damaged places in %s\n", len(r.Damage), r.Dir)
		return errDamaged
	}
	return nil
}

const spoolUsage = `Usage:
  genlbridge spool status [--dir DIR] [--json]   what the node's spool holds, per subscription, and where forwarding stands
  genlbridge spool verify [--dir DIR] [--json]   read every record back; exit 1 if any is damaged, naming what it held

Both read the directory without changing it, with or without a bridge running on it.
`

func printSpool(w io.Writer, r *spool.Report, verify bool) {
	fmt.Fprintf(w, "spool %s", r.Dir)
	if r.Running {
		fmt.Fprint(w, " (a bridge runs on it: what follows may change while it is read)")
	}
	fmt.Fprintln(w)
	switch {
	case r.State != nil:
		clean := "no (a crash, a power cut, or running now)"
		if r.State.Clean {
			clean = "yes"
		}
		fmt.Fprintf(w, "state: forwarded up to record %d, on the disk up to record %d, sync %s, closed cleanly: %s, incarnation %s\n",
			r.State.Cursor, r.State.Synced, r.State.Sync, clean, r.State.Incarnation)
	case r.StateError != "":
		fmt.Fprintf(w, "state: %s\n", r.StateError)
	default:
		fmt.Fprintln(w, "state: none (a new spool)")
	}
	fmt.Fprintf(w, "files: %d segments, %s\n", len(r.Segments), bytesText(r.Bytes))
	fmt.Fprintf(w, "records: %d (%d events); not forwarded: %d records, %d events", r.Records, r.Events, r.PendingRecords, r.PendingEvents)
	if !r.OldestPending.IsZero() {
		fmt.Fprintf(w, ", the oldest from %s (%s ago)", r.OldestPending.Format(time.RFC3339), time.Since(r.OldestPending).Round(time.Second))
	}
	fmt.Fprintln(w)
	if len(r.Subscriptions) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSUBSCRIPTION\tINSTANCE\tRECORDS\tEVENTS\tNOT FORWARDED\tSEQUENCES\tLOSS RECORDS\tOLDEST\tNEWEST")
		for _, s := range r.Subscriptions {
			seqs := rangesText(s.Ranges, s.MoreRanges)
			if seqs != "" && !s.Kernel {
				seqs += " (bridge)"
			}
			var lost []string
			for reason, n := range s.Lost {
				lost = append(lost, fmt.Sprintf("%s %d", reason, n))
			}
			fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Host, s.Family, s.Group, s.Instance, s.Records, s.Events,
				s.Pending, seqs, strings.Join(lost, ", "), s.Oldest.Format(time.RFC3339), s.Newest.Format(time.RFC3339))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(r.Damage) == 0 {
		fmt.Fprintln(w, "damage: none (every record's checksums checked)")
	} else {
		fmt.Fprintf(w, "damage: %d places\n", len(r.Damage))
		for _, d := range r.Damage {
			fmt.Fprintf(w, "  %s at byte %d: %s", d.File, d.Offset, d.What)
			if d.Bytes > 0 {
				fmt.Fprintf(w, ", %d bytes", d.Bytes)
			}
			if d.LastRecord > 0 {
				fmt.Fprintf(w, ", records %d-%d", d.FirstRecord, d.LastRecord)
			}
			fmt.Fprintln(w)
			for _, g := range d.Ranges {
				what := "events"
				if g.Reason != "" {
					what = g.Reason + " loss record"
				}
				fmt.Fprintf(w, "    %s/%s instance %d: %s %d-%d\n", g.Family, g.Group, g.Instance, what, g.First, g.Last)
			}
		}
		if verify {
			fmt.Fprintln(w, "A running bridge publishes what these held as spool_damaged loss records when it forwards them.")
		}
	}
	for _, rec := range r.RecordList {
		fmt.Fprintf(w, "record %d: %s at byte %d, %d bytes (payload at %d, %d bytes)\n", rec.Seq, rec.File, rec.Offset, rec.Bytes,
			rec.PayloadOffset, rec.PayloadBytes)
	}
}

func rangesText(rs [][2]uint64, more int) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		if r[0] == r[1] {
			fmt.Fprintf(&b, "%d", r[0])
		} else {
			fmt.Fprintf(&b, "%d-%d", r[0], r[1])
		}
	}
	if more > 0 {
		fmt.Fprintf(&b, " (+%d more)", more)
	}
	return b.String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
