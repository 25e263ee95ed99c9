package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const replayHelp = `Usage: genlbridge replay [flags]

Reads events and loss records back from the JetStream stream, oldest first,
with an ordered consumer: from the start, a stream sequence (--seq), a time
(--since) or a duration ago (--ago), up to the stream's last message when the
replay starts, or on with new ones (--follow). Filters by family, group and
host build the subject filters from GENLBRIDGE_SUBJECT and
GENLBRIDGE_LOSS_SUBJECT. Records are printed like 'genlbridge tail' (or raw
JSON with --json), or republished to another subject (--republish) to drive a
consumer again. A finite replay shows its progress on stderr when stderr is
a terminal.
`

// replayOptions is what cmdReplay parsed.
type replayOptions struct {
	stream              string
	events, losses      sink.Template
	family, group, host string
	noLosses            bool
	seq                 uint64
	since               time.Time
	follow, raw         bool
	republish           string
	progress            bool // draw a progress bar on stderr
	progressEvery       time.Duration
}

func cmdReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr, func(w io.Writer) {
		fmt.Fprint(w, replayHelp)
	})
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
	fs.BoolVar(&o.noLosses, "no-losses", false, "leave loss records out")
	fs.Uint64Var(&o.seq, "seq", 0, "start at this stream sequence")
	since := fs.String("since", "", "start at this time (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
	ago := fs.Duration("ago", 0, "start this long ago (e.g. 15m)")
	fs.BoolVar(&o.follow, "follow", false, "after the stored records, wait for new ones until interrupted")
	fs.BoolVar(&o.raw, "json", false, "print the raw JSON records")
	fs.StringVar(&o.republish, "republish", "", "publish every message again to this subject instead of printing it")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := o.start(*since, *ago); err != nil {
		return err
	}
	var err error
	if o.events, o.losses, err = templatesFromEnv(); err != nil {
		return err
	}
	o.progress = !o.follow && isTerminal(stderr)
	nc, err := connectTool(*url, "genlbridge replay")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := replay(ctx, nc, &o, stdout, stderr)
	if o.republish != "" {
		fmt.Fprintf(stderr, "republished %d messages to %s\n", n, o.republish)
	}
	if o.follow && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// isTerminal says whether w is a terminal (a progress bar goes there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// start sets where reading begins from --since or --ago (--seq is set
// already): at most one of the three.
func (o *replayOptions) start(since string, ago time.Duration) error {
	starts := 0
	if o.seq > 0 {
		starts++
	}
	if since != "" {
		starts++
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			return fmt.Errorf("--since %q: want a time such as 2026-01-02T15:04:05Z: %w", since, errUsage)
		}
		o.since = t
	}
	if ago != 0 {
		starts++
		if ago < 0 {
			return fmt.Errorf("--ago %s: want a positive duration: %w", ago, errUsage)
		}
		o.since = time.Now().Add(-ago)
	}
	if starts > 1 {
		return fmt.Errorf("give at most one of --seq, --since and --ago: %w", errUsage)
	}
	return nil
}

// templatesFromEnv reads the subject templates the bridge publishes with.
func templatesFromEnv() (events, losses sink.Template, err error) {
	get := func(env, def string) (sink.Template, error) {
		v := os.Getenv(env)
		if v == "" {
			v = def
		}
		t, err := sink.ParseTemplate(v)
		if err != nil {
			return t, fmt.Errorf("%s: %w", env, err)
		}
		return t, nil
	}
	if events, err = get("GENLBRIDGE_SUBJECT", sink.DefaultSubject); err != nil {
		return
	}
	losses, err = get("GENLBRIDGE_LOSS_SUBJECT", sink.DefaultLossSubject)
	return
}

// openStream makes the ordered consumer o asks for and returns its
// messages and, unless o.follow, how many it will deliver (the messages
// that match when it is made).
func openStream(ctx context.Context, nc *nats.Conn, o *replayOptions) (jetstream.MessagesContext, int, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, err
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{o.events.Filter(o.family, o.group, o.host, "")}}
	if !o.noLosses {
		cc.FilterSubjects = append(cc.FilterSubjects, o.losses.Filter(o.family, o.group, o.host, ""))
	}
	switch {
	case o.seq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.seq
	case !o.since.IsZero():
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.since
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, o.stream, cc)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", o.stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", o.stream, err)
	}
	total := -1
	if !o.follow {
		info := cons.CachedInfo()
		if info == nil {
			it.Stop()
			return nil, 0, fmt.Errorf("stream %s: no consumer information", o.stream)
		}
		total = int(info.NumPending)
	}
	return it, total, nil
}

// replay reads the stream as o says and returns how many messages it
// handled. Printing (not republishing), it says on stderr where a number
// is missing that no loss record accounts for (audit.Live).
func replay(ctx context.Context, nc *nats.Conn, o *replayOptions, stdout, stderr io.Writer) (int, error) {
	it, total, err := openStream(ctx, nc, o)
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	bar := newProgress(stderr, o.progress && total > 0, total, o.progressEvery)
	defer bar.done()

	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	holes := newHoleReporter(stderr)
	var out nats.Msg
	n := 0
	for total < 0 || n < total {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return n, err
		}
		n++
		if o.republish != "" {
			// The message as stored, its headers too (the ce- ones), but for
			// the Nats-Msg-Id: another stream must not take the copy for a
			// repeat of the original.
			out = nats.Msg{Subject: o.republish, Data: m.Data(), Header: nats.Header{}}
			for k, v := range m.Headers() {
				if k != nats.MsgIdHdr {
					out.Header[k] = v
				}
			}
			if md, err := m.Metadata(); err == nil {
				out.Header.Set("Genlbridge-Stream-Seq", strconv.FormatUint(md.Sequence.Stream, 10))
			}
			out.Header.Set("Genlbridge-Subject", m.Subject())
			if err := nc.PublishMsg(&out); err != nil {
				return n, fmt.Errorf("republish to %s: %w", o.republish, err)
			}
		} else {
			// A batched message holds several JSON lines.
			for _, line := range bytes.Split(bytes.TrimSpace(m.Data()), []byte{'\n'}) {
				if len(line) == 0 {
					continue
				}
				if o.raw {
					w.Write(line)
				} else {
					w.WriteString(formatRecord(line))
				}
				w.WriteByte('\n')
				holes.record(line)
			}
			if o.follow {
				w.Flush()
				holes.due(false)
			}
		}
		bar.set(n)
	}
	if o.republish != "" {
		if err := nc.FlushTimeout(10 * time.Second); err != nil {
			return n, fmt.Errorf("republish to %s: %w", o.republish, err)
		}
	}
	w.Flush()
	holes.due(true)
	return n, nil
}

// progress draws "replay 1234/5678 messages (21%)" on a terminal, at most
// every interval.
type progress struct {
	w     io.Writer
	on    bool
	total int
	every time.Duration
	last  time.Time
	n     int
}

func newProgress(w io.Writer, on bool, total int, every time.Duration) *progress {
	if every == 0 {
		every = 100 * time.Millisecond
	}
	return &progress{w: w, on: on, total: total, every: every}
}

func (p *progress) set(n int) {
	p.n = n
	if !p.on || time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	const width = 30
	filled := width * p.n / p.total
	fmt.Fprintf(p.w, "\rreplay [%s%s] %d/%d messages (%d%%)", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		p.n, p.total, 100*p.n/p.total)
}

func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
