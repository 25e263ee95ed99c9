package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends e as one JSON object (no newline) to dst and returns the
// extended buffer. It allocates only when dst must grow. The result decodes
// with encoding/json into an Event equal to e, except that invalid UTF-8 in
// strings becomes U+FFFD, as encoding/json itself does.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"type":"event","host":`...)
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
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"seq_src":`...)
	dst = appendString(dst, e.SeqSource)
	dst = append(dst, `,"instance":`...)
	dst = strconv.AppendUint(dst, e.Instance, 10)
	if e.Jiffies != 0 {
		dst = append(dst, `,"jiffies":`...)
		dst = strconv.AppendUint(dst, e.Jiffies, 10)
	}
	if e.KernelNS != 0 {
		dst = append(dst, `,"kernel_ns":`...)
		dst = strconv.AppendInt(dst, e.KernelNS, 10)
	}
	dst = append(dst, `,"recv_ns":`...)
	dst = strconv.AppendInt(dst, e.RecvNS, 10)
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

// AppendLossJSON appends l as one JSON object (no newline) to dst.
func AppendLossJSON(dst []byte, l *Loss) []byte {
	dst = append(dst, `{"type":"loss","host":`...)
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
	dst = strconv.AppendUint(dst, l.Count, 10)
	if l.FirstSeq != 0 || l.LastSeq != 0 {
		dst = append(dst, `,"first_seq":`...)
		dst = strconv.AppendUint(dst, l.FirstSeq, 10)
		dst = append(dst, `,"last_seq":`...)
		dst = strconv.AppendUint(dst, l.LastSeq, 10)
	}
	if l.Instance != 0 {
		dst = append(dst, `,"instance":`...)
		dst = strconv.AppendUint(dst, l.Instance, 10)
	}
	dst = append(dst, `,"time_ns":`...)
	dst = strconv.AppendInt(dst, l.TimeNS, 10)
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

// UnmarshalJSON reads what AppendJSON writes: "attrs" is a FormatGeneric
// event's array of attributes, or a FormatYNL event's object (kept as
// text in Fields), "raw" kept as text in Raw.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event // without these methods
	var v struct {
		plain
		Attrs json.RawMessage `json:"attrs"`
		Raw   json.RawMessage `json:"raw"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Event(v.plain)
	switch a := bytes.TrimSpace(v.Attrs); {
	case len(a) == 0 || string(a) == "null":
	case a[0] == '{':
		e.Fields = bytes.Clone(a)
	default:
		if err := json.Unmarshal(a, &e.Attrs); err != nil {
			return fmt.Errorf("attrs: %w", err)
		}
	}
	if r := bytes.TrimSpace(v.Raw); len(r) > 0 && string(r) != "null" {
		e.Raw = bytes.Clone(r)
	}
	return nil
}

// Envelope decodes either record type from its JSON form, for consumers such
// as tail and replay. Type is "event" or "loss".
type Envelope struct {
	Type string `json:"type"`
	Event
	Reason   string `json:"reason,omitempty"`
	Count    uint64 `json:"count,omitempty"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	TimeNS   int64  `json:"time_ns,omitempty"`
}

// UnmarshalJSON decodes both parts: Event's own method would otherwise
// take the whole object and leave the loss fields unread.
func (v *Envelope) UnmarshalJSON(b []byte) error {
	var rest struct {
		Type     string `json:"type"`
		Reason   string `json:"reason"`
		Count    uint64 `json:"count"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
		TimeNS   int64  `json:"time_ns"`
	}
	if err := json.Unmarshal(b, &rest); err != nil {
		return err
	}
	if err := v.Event.UnmarshalJSON(b); err != nil {
		return err
	}
	v.Type, v.Reason, v.Count, v.FirstSeq, v.LastSeq, v.TimeNS = rest.Type, rest.Reason, rest.Count, rest.FirstSeq, rest.LastSeq, rest.TimeNS
	return nil
}

// Loss returns the loss record an Envelope of Type "loss" holds.
func (v *Envelope) Loss() Loss {
	return Loss{Host: v.Host, BootID: v.BootID, Family: v.Family, Group: v.Group,
		Reason: v.Reason, Count: v.Count, FirstSeq: v.FirstSeq, LastSeq: v.LastSeq, Instance: v.Instance, TimeNS: v.TimeNS}
}
