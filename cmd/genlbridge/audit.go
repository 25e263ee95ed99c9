package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/audit"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go/jetstream"
)

const auditHelp = `Usage: genlbridge audit [flags]

Reads the JetStream stream (all of it, or from --seq, --since or --ago up to
--until; filtered by --family, --group, --host) and proves it complete: per
host, boot, family, group and instance, the sequence numbers present, those
present twice, the missing ones each loss record accounts for (by reason),
and the missing ones no loss record accounts for; and loss records that claim
events that arrived or numbers another loss record claims. Numbers before
the first one an instance shows in the range read are no hole.

Exit status: 0 when complete, 1 on any hole no loss record accounts for,
duplicate, double count or unreadable record, 2 on a usage error.
`

// errIncomplete is an audit that found a hole or a double count: exit 1,
// the report said it.
var errIncomplete = errors.New("the stream is not complete")

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit", stderr, func(w io.Writer) { fmt.Fprint(w, auditHelp) })
	defStream := os.Getenv("GENLBRIDGE_STREAM")
	if defStream == "" {
		defStream = sink.DefaultStream.Name
	}
	url := serverFlag(fs)
	var o replayOptions
	fs.StringVar(&o.stream, "stream", defStream, "stream to read (env GENLBRIDGE_STREAM)")
	fs.StringVar(&o.family, "family", "", "only this generic netlink family (default: all)")
	fs.StringVar(&o.group, "group", "", "only this multicast group (default: all)")
	fs.StringVar(&o.host, "host", "", "only this host (default: all)")
	fs.Uint64Var(&o.seq, "seq", 0, "start at this stream sequence")
	since := fs.String("since", "", "start at this time (RFC 3339)")
	ago := fs.Duration("ago", 0, "start this long ago (e.g. 1h)")
	until := fs.String("until", "", "stop at messages stored after this time (RFC 3339)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if err := o.start(*since, *ago); err != nil {
		return err
	}
	var end time.Time
	if *until != "" {
		t, err := time.Parse(time.RFC3339Nano, *until)
		if err != nil {
			return fmt.Errorf("--until %q: want a time such as 2026-01-02T15:04:05Z: %w", *until, errUsage)
		}
		end = t
	}
	var err error
	if o.events, o.losses, err = templatesFromEnv(); err != nil {
		return err
	}
	o.progress = isTerminal(stderr)
	nc, err := connectTool(*url, "genlbridge audit")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	it, total, err := openStream(ctx, nc, &o)
	if err != nil {
		return err
	}
	defer it.Stop()
	bar := newProgress(stderr, o.progress && total > 0, total, 0)
	a := audit.New()
	msgs := 0
	for n := 0; n < total; n++ {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			bar.done()
			return fmt.Errorf("after %d of %d messages: %w", n, total, err)
		}
		if !end.IsZero() {
			if md, err := m.Metadata(); err == nil && md.Timestamp.After(end) {
				break
			}
		}
		msgs++
		for _, line := range bytes.Split(bytes.TrimSpace(m.Data()), []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			var v event.Envelope
			if err := json.Unmarshal(line, &v); err != nil {
				a.Unreadable(fmt.Sprintf("%s: %v", m.Subject(), err))
				continue
			}
			a.Envelope(&v)
		}
		bar.set(n + 1)
	}
	bar.done()
	r := a.Report()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Complete bool `json:"complete"`
			Messages int  `json:"messages"`
			audit.Report
		}{r.OK(), msgs, r}); err != nil {
			return err
		}
	} else {
		printAudit(stdout, &r, msgs, o.stream)
	}
	if !r.OK() {
		return errIncomplete
	}
	return nil
}

// printAudit writes the report for people: one line per instance, then
// its findings, then the verdict.
func printAudit(w io.Writer, r *audit.Report, msgs int, stream string) {
	fmt.Fprintf(w, "%s: %d messages, %d events, %d events reported lost, %d instances\n", stream, msgs, r.Events, r.Lost, len(r.Instances))
	for i := range r.Instances {
		in := &r.Instances[i]
		src := "bridge"
		if in.Kernel {
			src = "kernel"
		}
		fmt.Fprintf(w, "%s: seq %d..%d (%s), %d events", in.Key, in.First, in.Last, src, in.Events)
		reasons := make([]string, 0, len(in.Covered))
		for reason, n := range in.Covered {
			reasons = append(reasons, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(reasons)
		if len(reasons) > 0 {
			fmt.Fprintf(w, ", lost and reported: %s", strings.Join(reasons, ", "))
		}
		fmt.Fprintln(w)
		for _, h := range in.Holes {
			fmt.Fprintf(w, "  HOLE seq %d..%d (%d): no loss record with a range accounts for it\n", h.First, h.Last, h.Last-h.First+1)
		}
		for _, d := range in.Duplicates {
			fmt.Fprintf(w, "  DUPLICATE seq %d..%d arrived more than once\n", d.First, d.Last)
		}
		for _, l := range in.Overlaps {
			fmt.Fprintf(w, "  DOUBLE COUNT a %s loss record of seq %d..%d claims events that arrived\n", l.Reason, l.First, l.Last)
		}
		for _, l := range in.OverlappingLosses {
			fmt.Fprintf(w, "  DOUBLE COUNT seq %d..%d claimed by two loss records\n", l.First, l.Last)
		}
	}
	subs := make([]string, 0, len(r.Unplaced))
	for s := range r.Unplaced {
		subs = append(subs, s)
	}
	sort.Strings(subs)
	for _, s := range subs {
		for reason, n := range r.Unplaced[s] {
			fmt.Fprintf(w, "%s: %d events lost (%s) without a range: they account for as many missing numbers of the subscription\n", s, n, reason)
		}
	}
	for _, u := range r.Unreadable {
		fmt.Fprintf(w, "UNREADABLE %s\n", u)
	}
	if r.OK() {
		fmt.Fprintln(w, "complete: every number arrived once or is in one loss record")
	} else {
		dups, double := 0, 0
		for i := range r.Instances {
			in := &r.Instances[i]
			dups += len(in.Duplicates)
			double += len(in.Overlaps) + len(in.OverlappingLosses)
		}
		fmt.Fprintf(w, "NOT COMPLETE: %d missing numbers no loss record accounts for, %d ranges that arrived twice, %d loss records that count twice, %d records unreadable\n",
			r.UncoveredHoles, dups, double, len(r.Unreadable))
	}
}

// holeReporter tells, on w, of holes tail and replay see (audit.Live).
type holeReporter struct {
	w    io.Writer
	live *audit.Live
}

func newHoleReporter(w io.Writer) *holeReporter { return &holeReporter{w: w, live: audit.NewLive()} }

func (h *holeReporter) record(line []byte) {
	var v event.Envelope
	if json.Unmarshal(line, &v) == nil {
		h.live.Envelope(&v, time.Now())
	}
}

// due prints the holes whose grace has passed (all of them at the end).
func (h *holeReporter) due(end bool) {
	holes := h.live.Due(time.Now())
	if end {
		holes = append(holes, h.live.Pending()...)
	}
	for _, x := range holes {
		fmt.Fprintf(h.w, "HOLE %s: seq %d..%d missing, and no loss record accounts for them\n", x.Key, x.First, x.Last)
	}
}
