package kmod_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// parseYAML parses the small block-style subset of YAML that the kernel's
// netlink specs use: mappings, lists ("-" alone on its line or followed by an
// inline "key: value"), flow lists "[ a, b ]", literal block scalars "|",
// plain or quoted scalars, and comments. Scalars are returned as strings,
// mappings as map[string]any and lists as []any. It keeps the module free of
// a YAML dependency; it is not a general YAML parser.
func parseYAML(src string) (any, error) {
	p := &yamlParser{}
	for n, raw := range strings.Split(src, "\n") {
		raw = strings.TrimRight(raw, " \t\r")
		text := strings.TrimLeft(raw, " ")
		if strings.Contains(raw[:len(raw)-len(text)], "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n+1)
		}
		p.lines = append(p.lines, yamlLine{n: n + 1, indent: len(raw) - len(text), text: text, raw: raw})
	}
	// Drop the document start and skip blank and comment lines up front,
	// except inside block scalars, which blockScalar reads from raw lines.
	p.skip()
	if p.i < len(p.lines) && p.lines[p.i].text == "---" {
		p.i++
		p.skip()
	}
	if p.i >= len(p.lines) {
		return nil, fmt.Errorf("empty document")
	}
	v, err := p.node(p.lines[p.i].indent)
	if err != nil {
		return nil, err
	}
	if p.skip(); p.i < len(p.lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", p.lines[p.i].n)
	}
	return v, nil
}

type yamlLine struct {
	n      int
	indent int
	text   string
	raw    string
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

func isComment(text string) bool { return text == "" || strings.HasPrefix(text, "#") }

func (p *yamlParser) skip() {
	for p.i < len(p.lines) && isComment(p.lines[p.i].text) {
		p.i++
	}
}

func isItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// node parses the mapping or list whose lines start at column indent.
func (p *yamlParser) node(indent int) (any, error) {
	p.skip()
	if p.i < len(p.lines) && isItem(p.lines[p.i].text) {
		return p.list(indent)
	}
	return p.mapping(indent)
}

func (p *yamlParser) list(indent int) (any, error) {
	var out []any
	for p.skip(); p.i < len(p.lines); p.skip() {
		l := p.lines[p.i]
		if l.indent < indent || !isItem(l.text) {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.n)
		}
		rest := strings.TrimSpace(strings.TrimPrefix(l.text, "-"))
		switch {
		case rest == "":
			p.i++
			p.skip()
			if p.i >= len(p.lines) || p.lines[p.i].indent <= indent {
				out = append(out, "")
				continue
			}
			v, err := p.node(p.lines[p.i].indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case strings.HasSuffix(rest, ":") || strings.Contains(rest, ": "):
			// "- key: value": a mapping whose first line shares the dash's.
			col := l.indent + len(l.text) - len(rest)
			p.lines[p.i] = yamlLine{n: l.n, indent: col, text: rest, raw: l.raw}
			v, err := p.mapping(col)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			p.i++
			v, err := scalarOrFlow(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", l.n, err)
			}
			out = append(out, v)
		}
	}
	return out, nil
}

func (p *yamlParser) mapping(indent int) (any, error) {
	out := map[string]any{}
	for p.skip(); p.i < len(p.lines); p.skip() {
		l := p.lines[p.i]
		if l.indent < indent || isItem(l.text) {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.n)
		}
		key, rest, ok := strings.Cut(l.text, ":")
		if !ok || (rest != "" && rest[0] != ' ') {
			return nil, fmt.Errorf("line %d: want key: value, got %q", l.n, l.text)
		}
		key = strings.TrimSpace(key)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.n, key)
		}
		rest = stripComment(strings.TrimSpace(rest))
		p.i++
		switch {
		case rest == "|" || rest == "|-" || rest == ">":
			out[key] = p.blockScalar(indent)
		case rest == "":
			p.skip()
			if p.i < len(p.lines) && (p.lines[p.i].indent > indent ||
				(p.lines[p.i].indent == indent && isItem(p.lines[p.i].text))) {
				v, err := p.node(p.lines[p.i].indent)
				if err != nil {
					return nil, err
				}
				out[key] = v
			} else {
				out[key] = ""
			}
		default:
			v, err := scalarOrFlow(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", l.n, err)
			}
			out[key] = v
		}
	}
	return out, nil
}

// blockScalar reads the lines indented deeper than indent, as text.
func (p *yamlParser) blockScalar(indent int) string {
	var b []string
	blockIndent := -1
	for ; p.i < len(p.lines); p.i++ {
		l := p.lines[p.i]
		if l.text != "" && l.indent <= indent {
			break
		}
		if blockIndent < 0 && l.text != "" {
			blockIndent = l.indent
		}
		if l.text == "" {
			b = append(b, "")
		} else {
			b = append(b, l.raw[min(blockIndent, l.indent):])
		}
	}
	return strings.TrimRight(strings.Join(b, "\n"), "\n") + "\n"
}

func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 && !strings.ContainsAny(s[:i], `"'`) {
		return strings.TrimSpace(s[:i])
	}
	return s
}

func scalarOrFlow(s string) (any, error) {
	s = stripComment(s)
	if strings.HasPrefix(s, "[") {
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("unterminated flow list %q", s)
		}
		out := []any{}
		for _, e := range strings.Split(s[1:len(s)-1], ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, unquote(e))
			}
		}
		return out, nil
	}
	if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "&") || strings.HasPrefix(s, "*") {
		return nil, fmt.Errorf("unsupported YAML %q", s)
	}
	return unquote(s), nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func TestParseYAML(t *testing.T) {
	src := `# comment
name: x
doc: |
  two
  lines
list:
  -
    name: a
    value: 3 # trailing
  - name: b
    flags: [ admin-perm, "q" ]
top:
- plain
- 'quoted'
empty:
`
	got, err := parseYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "x",
		"doc":  "two\nlines\n",
		"list": []any{
			map[string]any{"name": "a", "value": "3"},
			map[string]any{"name": "b", "flags": []any{"admin-perm", "q"}},
		},
		"top":   []any{"plain", "quoted"},
		"empty": "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseYAML:\n got %#v\nwant %#v", got, want)
	}
	for _, bad := range []string{"a: 1\n  b: 2\n", "a: {x: 1}\n", "a: 1\na: 2\n"} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("parseYAML(%q) succeeded, want an error", bad)
		}
	}
}
