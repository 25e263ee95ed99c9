package sink

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/genlbridge/genlbridge/event"
)

// DefaultSubject and DefaultLossSubject are the default subject templates.
const (
	DefaultSubject     = "genl.{family}.{group}.{host}"
	DefaultLossSubject = "genl.{family}.{group}.{host}.loss"
)

// Template builds NATS subjects from {family}, {group}, {host} and, for
// events, {op}: the event's message name (OpToken). Each value is sanitized
// into a single subject token (see Token). Safe for concurrent use.
type Template struct {
	raw string
}

// ParseTemplate checks a subject template: dot-separated tokens, no
// wildcards, spaces or empty tokens, placeholders only among {family},
// {group}, {host} and {op}.
func ParseTemplate(t string) (Template, error) {
	if t == "" {
		return Template{}, fmt.Errorf("subject template is empty")
	}
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("subject template %q: unclosed {", t)
		}
		switch name := rest[i+1 : i+j]; name {
		case "family", "group", "host", "op":
		default:
			return Template{}, fmt.Errorf("subject template %q: unknown placeholder {%s}: want {family}, {group}, {host} or {op}", t, name)
		}
		rest = rest[i+j+1:]
	}
	probe := Template{raw: t}.Subject("f", "g", "h", "o")
	for _, tok := range strings.Split(probe, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return Template{}, fmt.Errorf("subject template %q: tokens must be non-empty, without wildcards or spaces", t)
		}
	}
	return Template{raw: t}, nil
}

// Subject fills the template; op is the {op} of an event (OpToken), or ""
// for a template without it.
func (t Template) Subject(family, group, host, op string) string {
	return t.fill(Token(family), Token(group), Token(host), Token(op))
}

// Filter is Subject for a subscription or a stream filter: an empty value
// matches any token ("*").
func (t Template) Filter(family, group, host, op string) string {
	tok := func(v string) string {
		if v == "" {
			return "*"
		}
		return Token(v)
	}
	return t.fill(tok(family), tok(group), tok(host), tok(op))
}

// HasOp says whether the template has {op}.
func (t Template) HasOp() bool { return strings.Contains(t.raw, "{op}") }

func (t Template) fill(family, group, host, op string) string {
	return strings.NewReplacer("{family}", family, "{group}", group, "{host}", host, "{op}", op).Replace(t.raw)
}

// cmdTokens are the {op} of events without a message name.
var cmdTokens = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// OpToken is an event's {op}: its message's name (a YNL-decoded event's
// Op, e.g. "dev-add-ntf"), or its command number when it has none (exmpl
// and generic events), so that consumers can subscribe to one kind of
// event.
func OpToken(e *event.Event) string {
	if e.Op != "" {
		return e.Op
	}
	return cmdTokens[e.Cmd]
}

// String returns the template text.
func (t Template) String() string { return t.raw }

// Token turns s into one NATS subject token: '.', '*', '>', white space and
// control characters become '_', so a hostname "a.b.c" cannot add subject
// levels and no wildcard reaches a subject. An empty s becomes "_".
func Token(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if badTokenByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if badTokenByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func badTokenByte(c byte) bool {
	return c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f
}
