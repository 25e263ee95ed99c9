package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

func cmdTail(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tail", stderr, func(w io.Writer) {
		fmt.Fprintln(w, "Usage: genlbridge tail [flags] [subject]\n\nPrints events and loss records published by genlbridge (default subject genl.>), and on stderr\nany sequence numbers that are missing with no loss record accounting for them (HOLE ...).")
	})
	url := serverFlag(fs)
	raw := fs.Bool("json", false, "print the raw JSON records")
	count := fs.Int("count", 0, "exit after this many records (0: run until interrupted)")
	timeout := fs.Duration("timeout", 0, "exit with an error if --count records have not arrived by then")
	if err := parse(fs, args); err != nil {
		return err
	}
	subject := "genl.>"
	if fs.NArg() > 0 {
		subject = fs.Arg(0)
	}
	nc, err := connectTool(*url, "genlbridge tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	// A synchronous subscription with no pending limit: a burst printed to a
	// slow terminal waits in memory instead of being dropped by the client.
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return fmt.Errorf("subscribe %q: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("subscribe %q: %w", subject, err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		return fmt.Errorf("subscribe %q: %w", subject, err)
	}
	fmt.Fprintf(stderr, "tailing %s on %s\n", subject, *url)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	// Holes no loss record accounts for, on stderr (audit.Live).
	holes := newHoleReporter(stderr)
	// At the end, only holes whose grace has passed: the stream goes on,
	// and what tail has not waited for may still come.
	defer holes.due(false)
	n := 0
	for {
		// A second at most between looks at the holes: one whose grace
		// passes while nothing arrives is told then.
		wait, cancel := context.WithTimeout(ctx, time.Second)
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			holes.due(false)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				if *count > 0 && n < *count {
					return fmt.Errorf("got %d of %d records: %w", n, *count, ctx.Err())
				}
				return nil
			}
			return fmt.Errorf("receive: %w", err)
		}
		// A batched message holds several JSON lines.
		for _, line := range bytes.Split(bytes.TrimSpace(m.Data), []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			if *raw {
				fmt.Fprintf(out, "%s\n", line)
			} else {
				fmt.Fprintln(out, formatRecord(line))
			}
			holes.record(line)
			n++
			if *count > 0 && n >= *count {
				return nil
			}
		}
		if pending, _, _ := sub.Pending(); pending == 0 {
			out.Flush()
			holes.due(false)
		}
	}
}

// formatRecord renders one JSON record as a readable line.
func formatRecord(line []byte) string {
	var v event.Envelope
	if err := json.Unmarshal(line, &v); err != nil {
		return fmt.Sprintf("unreadable record (%v): %s", err, line)
	}
	var b strings.Builder
	if v.Type == "loss" {
		l := v.Loss()
		fmt.Fprintf(&b, "%s LOSS %s %s/%s %s count=%d", stamp(l.TimeNS), l.Host, l.Family, l.Group, l.Reason, l.Count)
		if l.FirstSeq != 0 || l.LastSeq != 0 {
			fmt.Fprintf(&b, " seq=%d-%d", l.FirstSeq, l.LastSeq)
		}
		return b.String()
	}
	e := &v.Event
	if e.Format == event.FormatYNL {
		// op key=value ...: the message's name, then its attributes.
		fmt.Fprintf(&b, "%s %s %s/%s %s seq=%d", stamp(e.RecvNS), e.Host, e.Family, e.Group, e.Op, e.Seq)
		if e.SeqSource == event.SeqBridge {
			b.WriteString("(bridge)")
		}
		for _, kv := range flatten(e.Fields) {
			b.WriteByte(' ')
			b.WriteString(kv)
		}
		if len(e.Raw) > 0 {
			var raw []json.RawMessage
			_ = json.Unmarshal(e.Raw, &raw)
			fmt.Fprintf(&b, " (%d attributes raw)", len(raw))
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%s %s %s/%s cmd=%d seq=%d", stamp(e.RecvNS), e.Host, e.Family, e.Group, e.Cmd, e.Seq)
	if e.SeqSource == event.SeqBridge {
		b.WriteString("(bridge)")
	}
	if e.Jiffies != 0 {
		fmt.Fprintf(&b, " jiffies=%d", e.Jiffies)
	}
	if e.KernelNS != 0 {
		fmt.Fprintf(&b, " kernel_lag=%s", time.Duration(e.RecvNS-e.KernelNS))
	}
	if e.Msg != "" {
		fmt.Fprintf(&b, " %s", strconv.Quote(e.Msg))
	}
	for _, a := range e.Attrs {
		fmt.Fprintf(&b, " a%d=%x", a.Type, a.Data)
	}
	return b.String()
}

// flatten turns a JSON object into key=value words, in its order: nested
// objects' keys joined with dots, arrays of scalars joined with commas,
// arrays of anything else indexed (key.0.sub=...). Strings with spaces or
// quotes are quoted. What does not parse is returned as one word.
func flatten(obj []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	n, err := readNode(dec)
	if err != nil {
		return []string{string(obj)}
	}
	var out []string
	n.words("", &out)
	return out
}

// jsonNode is a JSON value with its object keys in order.
type jsonNode struct {
	scalar string     // a scalar's text, when keys and items are nil
	keys   []string   // an object's keys, in order
	vals   []jsonNode // an object's values, or an array's items
	array  bool
}

func readNode(dec *json.Decoder) (jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return jsonNode{}, err
	}
	switch tok {
	case json.Delim('{'), json.Delim('['):
		n := jsonNode{array: tok == json.Delim('['), vals: []jsonNode{}}
		for dec.More() {
			if !n.array {
				k, err := dec.Token()
				if err != nil {
					return n, err
				}
				n.keys = append(n.keys, fmt.Sprint(k))
			}
			v, err := readNode(dec)
			if err != nil {
				return n, err
			}
			n.vals = append(n.vals, v)
		}
		_, err := dec.Token() // the closing delimiter
		return n, err
	}
	switch v := tok.(type) {
	case string:
		if v == "" || strings.ContainsAny(v, " \t\"=") {
			return jsonNode{scalar: strconv.Quote(v)}, nil
		}
		return jsonNode{scalar: v}, nil
	case nil:
		return jsonNode{scalar: "null"}, nil
	default:
		return jsonNode{scalar: fmt.Sprint(v)}, nil
	}
}

func (n jsonNode) words(prefix string, out *[]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch {
	case n.vals == nil:
		*out = append(*out, prefix+"="+n.scalar)
	case !n.array:
		for i, k := range n.keys {
			n.vals[i].words(join(k), out)
		}
	default:
		items := make([]string, 0, len(n.vals))
		for _, v := range n.vals {
			if v.vals != nil {
				for i, v := range n.vals {
					v.words(join(strconv.Itoa(i)), out)
				}
				return
			}
			items = append(items, v.scalar)
		}
		*out = append(*out, prefix+"="+strings.Join(items, ","))
	}
}

func stamp(ns int64) string {
	return time.Unix(0, ns).UTC().Format("15:04:05.000000")
}
