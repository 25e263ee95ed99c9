package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/genlbridge/genlbridge/internal/jsonint"
)

// AppendJSON appends e as one JSON object (no newline) to dst and returns the
// extended buffer: format Version, whose every field a JSON parser of any
// language reads exactly (64-bit integers above 2^53-1 as strings, times in
// RFC 3339). It allocates only when dst must grow. The result decodes with
// UnmarshalJSON into an Event equal to e, except that invalid UTF-8 in
// strings becomes U+FFFD, as encoding/json itself does.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"v":2,"type":"event","host":`...)
	dst = appendString(dst, e.Host)
	dst = append(dst, `,"boot_id":`...)
	dst = appendString(dst, e.BootID)
	dst = append(dst, `,"family":`...)
	dst = appendString(dst, e.Family)
	dst = append(dst, `,"group":`...)
	dst = appendString(dst, e.Group)
	dst = append(dst, `,"cmd":`...)
	dst = strconv.AppendUint(dst, uint64(e.Cmd), 10)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(e.Version), 10)
	dst = append(dst, `,"seq":`...)
	dst = jsonint.AppendUint(dst, e.Seq)
	dst = append(dst, `,"seq_src":`...)
	dst = appendString(dst, e.SeqSource)
	dst = append(dst, `,"instance":`...)
	dst = jsonint.AppendUint(dst, e.Instance)
	if e.Jiffies != 0 {
		dst = append(dst, `,"jiffies":`...)
		dst = jsonint.AppendUint(dst, e.Jiffies)
	}
	if e.KernelNS != 0 {
		dst = append(dst, `,"kernel_time":`...)
		dst = AppendTime(dst, e.KernelNS)
	}
	dst = append(dst, `,"recv_time":`...)
	dst = AppendTime(dst, e.RecvNS)
	dst = append(dst, `,"format":`...)
	dst = appendString(dst, e.Format)
	if e.Op != "" {
		dst = append(dst, `,"op":`...)
		dst = appendString(dst, e.Op)
	}
	if e.Msg != "" {
		dst = append(dst, `,"msg":`...)
		dst = appendString(dst, e.Msg)
	}
	if len(e.Fields) > 0 {
		// Already JSON: the spec-driven decoder wrote it.
		dst = append(dst, `,"attrs":`...)
		dst = append(dst, e.Fields...)
	}
	if len(e.Raw) > 0 {
		dst = append(dst, `,"raw":`...)
		dst = append(dst, e.Raw...)
	}
	if len(e.Attrs) > 0 {
		dst = append(dst, `,"attrs":[`...)
		for i := range e.Attrs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"type":`...)
			dst = strconv.AppendUint(dst, uint64(e.Attrs[i].Type), 10)
			dst = append(dst, `,"data":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Attrs[i].Data)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// AppendLossJSON appends l as one JSON object (no newline) to dst, in
// format Version.
func AppendLossJSON(dst []byte, l *Loss) []byte {
	dst = append(dst, `{"v":2,"type":"loss","host":`...)
	dst = appendString(dst, l.Host)
	dst = append(dst, `,"boot_id":`...)
	dst = appendString(dst, l.BootID)
	dst = append(dst, `,"family":`...)
	dst = appendString(dst, l.Family)
	dst = append(dst, `,"group":`...)
	dst = appendString(dst, l.Group)
	dst = append(dst, `,"reason":`...)
	dst = appendString(dst, l.Reason)
	dst = append(dst, `,"count":`...)
	dst = jsonint.AppendUint(dst, l.Count)
	if l.FirstSeq != 0 || l.LastSeq != 0 {
		dst = append(dst, `,"first_seq":`...)
		dst = jsonint.AppendUint(dst, l.FirstSeq)
		dst = append(dst, `,"last_seq":`...)
		dst = jsonint.AppendUint(dst, l.LastSeq)
	}
	if l.Instance != 0 {
		dst = append(dst, `,"instance":`...)
		dst = jsonint.AppendUint(dst, l.Instance)
	}
	dst = append(dst, `,"time":`...)
	dst = AppendTime(dst, l.TimeNS)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters, quote and
// backslash are escaped; invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// MarshalJSON is AppendJSON, for encoding/json.
func (e Event) MarshalJSON() ([]byte, error) { return AppendJSON(nil, &e), nil }

// MarshalJSON is AppendLossJSON, for encoding/json.
func (l Loss) MarshalJSON() ([]byte, error) { return AppendLossJSON(nil, &l), nil }

// wire is every field of both record types in both formats, as JSON has
// them: 64-bit integers as numbers or strings, times as RFC 3339 text
// (version 2) or ns (version 1's *_ns).
type wire struct {
	V        int             `json:"v"`
	Type     string          `json:"type"`
	Host     string          `json:"host"`
	BootID   string          `json:"boot_id"`
	Family   string          `json:"family"`
	Group    string          `json:"group"`
	Cmd      uint8           `json:"cmd"`
	Version  uint8           `json:"version"`
	Seq      jsonint.Uint    `json:"seq"`
	SeqSrc   string          `json:"seq_src"`
	Instance jsonint.Uint    `json:"instance"`
	Jiffies  jsonint.Uint    `json:"jiffies"`
	Kernel   string          `json:"kernel_time"`
	Recv     string          `json:"recv_time"`
	Format   string          `json:"format"`
	Op       string          `json:"op"`
	Msg      string          `json:"msg"`
	Attrs    json.RawMessage `json:"attrs"`
	Raw      json.RawMessage `json:"raw"`
	Reason   string          `json:"reason"`
	Count    jsonint.Uint    `json:"count"`
	FirstSeq jsonint.Uint    `json:"first_seq"`
	LastSeq  jsonint.Uint    `json:"last_seq"`
	Time     string          `json:"time"`
	// Version 1.
	KernelNS int64 `json:"kernel_ns"`
	RecvNS   int64 `json:"recv_ns"`
	TimeNS   int64 `json:"time_ns"`
}

// InstanceOf is an instance as format 2 writes it, in µs: one of format 1
// (in ns, at or above 2^53) is converted, so that one registration keeps
// one instance across the change of format.
func InstanceOf(v uint64) uint64 {
	if v >= 1<<53 {
		return v / 1000
	}
	return v
}

// decode reads b into w, and checks its version and times; a format-1
// instance is read in µs (InstanceOf).
func (w *wire) decode(b []byte) error {
	if err := json.Unmarshal(b, w); err != nil {
		return err
	}
	if w.V > Version {
		return fmt.Errorf("record format v%d is newer than this program reads (v%d)", w.V, Version)
	}
	if w.V < 2 {
		w.Instance = jsonint.Uint(InstanceOf(uint64(w.Instance)))
	}
	for _, t := range []struct {
		text string
		ns   *int64
	}{{w.Kernel, &w.KernelNS}, {w.Recv, &w.RecvNS}, {w.Time, &w.TimeNS}} {
		if t.text == "" {
			continue
		}
		ns, err := ParseTime(t.text)
		if err != nil {
			return err
		}
		*t.ns = ns
	}
	return nil
}

func (w *wire) event() (Event, error) {
	e := Event{Host: w.Host, BootID: w.BootID, Family: w.Family, Group: w.Group, Cmd: w.Cmd, Version: w.Version,
		Seq: uint64(w.Seq), SeqSource: w.SeqSrc, Instance: uint64(w.Instance), Jiffies: uint64(w.Jiffies),
		KernelNS: w.KernelNS, RecvNS: w.RecvNS, Format: w.Format, Op: w.Op, Msg: w.Msg}
	switch a := bytes.TrimSpace(w.Attrs); {
	case len(a) == 0 || string(a) == "null":
	case a[0] == '{':
		e.Fields = bytes.Clone(a)
	default:
		if err := json.Unmarshal(a, &e.Attrs); err != nil {
			return Event{}, fmt.Errorf("attrs: %w", err)
		}
	}
	if r := bytes.TrimSpace(w.Raw); len(r) > 0 && string(r) != "null" {
		e.Raw = bytes.Clone(r)
	}
	return e, nil
}

// UnmarshalJSON reads what AppendJSON writes, and version 1's records:
// "attrs" is a FormatGeneric event's array of attributes, or a FormatYNL
// event's object (kept as text in Fields), "raw" kept as text in Raw.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := w.decode(b); err != nil {
		return err
	}
	v, err := w.event()
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// UnmarshalJSON reads what AppendLossJSON writes, and version 1's records.
func (l *Loss) UnmarshalJSON(b []byte) error {
	var w wire
	if err := w.decode(b); err != nil {
		return err
	}
	*l = w.loss()
	return nil
}

func (w *wire) loss() Loss {
	return Loss{Host: w.Host, BootID: w.BootID, Family: w.Family, Group: w.Group, Reason: w.Reason,
		Count: uint64(w.Count), FirstSeq: uint64(w.FirstSeq), LastSeq: uint64(w.LastSeq), Instance: uint64(w.Instance), TimeNS: w.TimeNS}
}

// Envelope decodes either record type from its JSON form, for consumers such
// as tail and replay. Type is "event" or "loss"; V is the record's format
// (1 for records without "v"). Event holds an event's fields and the
// subscription and instance of a loss record, whose own fields are
// Reason, Count, FirstSeq, LastSeq and TimeNS (Loss returns them together).
type Envelope struct {
	V    int
	Type string
	Event
	Reason   string
	Count    uint64
	FirstSeq uint64
	LastSeq  uint64
	TimeNS   int64
}

// UnmarshalJSON decodes both record types, in both formats.
func (v *Envelope) UnmarshalJSON(b []byte) error {
	var w wire
	if err := w.decode(b); err != nil {
		return err
	}
	e, err := w.event()
	if err != nil {
		return err
	}
	l := w.loss()
	v.V, v.Type, v.Event = max(w.V, 1), w.Type, e
	v.Reason, v.Count, v.FirstSeq, v.LastSeq, v.TimeNS = l.Reason, l.Count, l.FirstSeq, l.LastSeq, l.TimeNS
	return nil
}

// Loss returns the loss record an Envelope of Type "loss" holds.
func (v *Envelope) Loss() Loss {
	return Loss{Host: v.Host, BootID: v.BootID, Family: v.Family, Group: v.Group,
		Reason: v.Reason, Count: v.Count, FirstSeq: v.FirstSeq, LastSeq: v.LastSeq, Instance: v.Instance, TimeNS: v.TimeNS}
}

// MarshalJSON writes the record v holds: AppendLossJSON's for Type "loss",
// else AppendJSON's (without it, Event's method would be promoted and drop
// a loss record's fields).
func (v Envelope) MarshalJSON() ([]byte, error) {
	if v.Type == "loss" {
		l := v.Loss()
		return AppendLossJSON(nil, &l), nil
	}
	return AppendJSON(nil, &v.Event), nil
}
