package specs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// cHeader is what the tests need of a set of C headers: the value of every
// enumerator and integer #define, the string #defines, and the text (for
// struct layouts).
type cHeader struct {
	ints    map[string]int64  // upper-cased name -> value
	strs    map[string]string // upper-cased name -> string literal
	text    string            // comment-free text of all files
	files   []string
	pending map[string]string // #defines not evaluated yet: name -> expression
}

// loadHeaders parses the named files of dir. A file that is missing is an
// error.
func loadHeaders(dir string, names ...string) (*cHeader, error) {
	h := &cHeader{ints: map[string]int64{}, strs: map[string]string{}, pending: map[string]string{}}
	var texts []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		texts = append(texts, string(b))
		h.files = append(h.files, filepath.Join(dir, n))
	}
	if err := h.parse(strings.Join(texts, "\n")); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHeaderText parses C source given as a string.
func parseHeaderText(src string) (*cHeader, error) {
	h := &cHeader{ints: map[string]int64{}, strs: map[string]string{}, pending: map[string]string{}}
	return h, h.parse(src)
}

var (
	reBlockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	reLineComment  = regexp.MustCompile(`//[^\n]*`)
	reDefine       = regexp.MustCompile(`^\s*#\s*define\s+([A-Za-z_]\w*)(\(?)(.*)$`)
	reEnum         = regexp.MustCompile(`(?s)\benum\s*([A-Za-z_]\w*)?\s*\{(.*?)\}`)
	reStringLit    = regexp.MustCompile(`^"((?:[^"\\]|\\.)*)"$`)
)

func stripComments(src string) string {
	src = reBlockComment.ReplaceAllStringFunc(src, func(c string) string {
		// keep line structure
		return strings.Repeat("\n", strings.Count(c, "\n")) + " "
	})
	return reLineComment.ReplaceAllString(src, "")
}

func (h *cHeader) parse(src string) error {
	src = stripComments(src)
	src = strings.ReplaceAll(src, "\\\n", " ") // line continuations
	h.text = src

	// #defines first (collected, evaluated lazily), then the text
	// without preprocessor lines for the enums.
	var body []string
	for _, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			if m := reDefine.FindStringSubmatch(line); m != nil && m[2] == "" {
				val := strings.TrimSpace(m[3])
				if s := reStringLit.FindStringSubmatch(val); s != nil {
					h.strs[strings.ToUpper(m[1])] = s[1]
				} else if val != "" {
					h.pending[strings.ToUpper(m[1])] = val
				}
			}
			continue
		}
		body = append(body, line)
	}
	text := strings.Join(body, "\n")
	for _, m := range reEnum.FindAllStringSubmatch(text, -1) {
		next := int64(0)
		for _, item := range strings.Split(m[2], ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			name, expr, hasExpr := strings.Cut(item, "=")
			name = strings.TrimSpace(name)
			if !isIdent(name) {
				return fmt.Errorf("enum %s: cannot parse item %q", m[1], item)
			}
			v := next
			if hasExpr {
				var err error
				if v, err = h.eval(strings.TrimSpace(expr)); err != nil {
					return fmt.Errorf("enum %s: %s: %v", m[1], name, err)
				}
			}
			h.ints[strings.ToUpper(name)] = v
			next = v + 1
		}
	}
	for name := range h.pending {
		// Defines that do not evaluate (types, casts of unknown
		// macros, ...) are simply not integers.
		if v, err := h.eval(h.pending[name]); err == nil {
			h.ints[name] = v
		}
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

// lookup returns the integer value of name (case-insensitively).
func (h *cHeader) lookup(name string) (int64, bool) {
	v, ok := h.ints[strings.ToUpper(name)]
	return v, ok
}

// eval evaluates a C integer constant expression of the kind UAPI headers
// use: numbers (with U/L suffixes), names, + - | & << >> ~, parentheses,
// _BITUL/_BITULL/BIT(n) and GENMASK(h, l).
func (h *cHeader) eval(expr string) (int64, error) {
	p := &exprParser{h: h, toks: tokenize(expr), depth: 0}
	v, err := p.or()
	if err != nil {
		return 0, err
	}
	if p.pos != len(p.toks) {
		return 0, fmt.Errorf("trailing %q in %q", p.toks[p.pos], expr)
	}
	return v, nil
}

func tokenize(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '<' || c == '>':
			if i+1 < len(s) && s[i+1] == c {
				toks = append(toks, s[i:i+2])
				i += 2
			} else {
				toks = append(toks, s[i:i+1])
				i++
			}
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			toks = append(toks, s[i:i+1])
			i++
		}
	}
	return toks
}

type exprParser struct {
	h     *cHeader
	toks  []string
	pos   int
	depth int
}

func (p *exprParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *exprParser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *exprParser) or() (int64, error) {
	v, err := p.and()
	for err == nil && p.peek() == "|" {
		p.next()
		var w int64
		w, err = p.and()
		v |= w
	}
	return v, err
}

func (p *exprParser) and() (int64, error) {
	v, err := p.shift()
	for err == nil && p.peek() == "&" {
		p.next()
		var w int64
		w, err = p.shift()
		v &= w
	}
	return v, err
}

func (p *exprParser) shift() (int64, error) {
	v, err := p.add()
	for err == nil && (p.peek() == "<<" || p.peek() == ">>") {
		op := p.next()
		var w int64
		if w, err = p.add(); err == nil {
			if op == "<<" {
				v <<= uint(w)
			} else {
				v >>= uint(w)
			}
		}
	}
	return v, err
}

func (p *exprParser) add() (int64, error) {
	v, err := p.unary()
	for err == nil && (p.peek() == "+" || p.peek() == "-") {
		op := p.next()
		var w int64
		if w, err = p.unary(); err == nil {
			if op == "+" {
				v += w
			} else {
				v -= w
			}
		}
	}
	return v, err
}

func (p *exprParser) unary() (int64, error) {
	switch p.peek() {
	case "-":
		p.next()
		v, err := p.unary()
		return -v, err
	case "+":
		p.next()
		return p.unary()
	case "~":
		p.next()
		v, err := p.unary()
		return ^v, err
	}
	return p.primary()
}

func (p *exprParser) primary() (int64, error) {
	t := p.next()
	switch {
	case t == "":
		return 0, fmt.Errorf("unexpected end")
	case t == "(":
		v, err := p.or()
		if err != nil {
			return 0, err
		}
		if p.next() != ")" {
			return 0, fmt.Errorf("missing )")
		}
		return v, nil
	case t[0] >= '0' && t[0] <= '9':
		num := strings.TrimRight(t, "uUlL")
		return strconv.ParseInt(num, 0, 64)
	case isIdent(t):
		if p.peek() == "(" {
			p.next()
			var args []int64
			for {
				v, err := p.or()
				if err != nil {
					return 0, err
				}
				args = append(args, v)
				if sep := p.next(); sep == ")" {
					break
				} else if sep != "," {
					return 0, fmt.Errorf("bad argument list of %s", t)
				}
			}
			switch {
			case (t == "_BITUL" || t == "_BITULL" || t == "BIT") && len(args) == 1:
				return 1 << uint(args[0]), nil
			case t == "GENMASK" && len(args) == 2:
				return ((int64(1) << uint(args[0]-args[1]+1)) - 1) << uint(args[1]), nil
			}
			return 0, fmt.Errorf("unknown macro %s", t)
		}
		if v, ok := p.h.ints[strings.ToUpper(t)]; ok {
			return v, nil
		}
		if e, ok := p.h.pending[strings.ToUpper(t)]; ok && p.depth < 16 {
			sub := &exprParser{h: p.h, toks: tokenize(e), depth: p.depth + 1}
			v, err := sub.or()
			if err == nil && sub.pos == len(sub.toks) {
				return v, nil
			}
		}
		return 0, fmt.Errorf("unknown name %s", t)
	}
	return 0, fmt.Errorf("unexpected %q", t)
}

// cMember is one member of a C struct, laid out with natural alignment.
type cMember struct {
	name     string
	offset   int
	size     int
	align    int
	flexible bool // a flexible array member (size 0, not in sizeof)
}

// cStruct finds "struct name { ... };" in the text and lays it out as a C
// compiler does on Linux: every scalar aligned to its size. typedefs maps a
// type name to (element type, array length), e.g. acpi_device_class ->
// (char, 20).
func (h *cHeader) cStruct(name string, typedefs map[string][2]string) ([]cMember, int, error) {
	members, size, _, err := h.cLayout(name, typedefs)
	return members, size, err
}

// cLayout is cStruct that also returns the struct's alignment.
func (h *cHeader) cLayout(name string, typedefs map[string][2]string) ([]cMember, int, int, error) {
	re := regexp.MustCompile(`(?s)\bstruct\s+` + regexp.QuoteMeta(name) + `\s*\{(.*?)\}\s*;`)
	m := re.FindStringSubmatch(h.text)
	if m == nil {
		return nil, 0, 0, fmt.Errorf("struct %s not found", name)
	}
	sizes := map[string]int{
		"char": 1, "__u8": 1, "u8": 1, "__s8": 1, "s8": 1,
		"__u16": 2, "u16": 2, "__s16": 2, "s16": 2, "__be16": 2,
		"__u32": 4, "u32": 4, "__s32": 4, "s32": 4, "__be32": 4, "int": 4, "unsigned": 4,
		"__u64": 8, "u64": 8, "__s64": 8, "s64": 8,
	}
	reMember := regexp.MustCompile(`^((?:struct\s+)?\w+)\s+(\w+)\s*(?:\[\s*(\w*)\s*\])?$`)
	var out []cMember
	off, maxAlign := 0, 1
	for _, decl := range strings.Split(m[1], ";") {
		decl = strings.TrimSpace(decl)
		if decl == "" {
			continue
		}
		mm := reMember.FindStringSubmatch(decl)
		if mm == nil {
			return nil, 0, 0, fmt.Errorf("struct %s: cannot parse member %q", name, decl)
		}
		typ, count, flexible := mm[1], 1, false
		if td, ok := typedefs[typ]; ok {
			typ = td[0]
			n, err := strconv.Atoi(td[1])
			if err != nil {
				return nil, 0, 0, err
			}
			count = n
		}
		var elem, align int
		if strings.HasPrefix(typ, "struct ") {
			_, subSize, subAlign, err := h.cLayout(strings.TrimSpace(strings.TrimPrefix(typ, "struct ")), typedefs)
			if err != nil {
				return nil, 0, 0, err
			}
			elem, align = subSize, subAlign
		} else {
			s, ok := sizes[typ]
			if !ok {
				return nil, 0, 0, fmt.Errorf("struct %s: unknown type %s", name, typ)
			}
			elem, align = s, s
		}
		if mm[3] != "" {
			n, err := strconv.Atoi(mm[3])
			if err != nil {
				return nil, 0, 0, err
			}
			count *= n
		} else if strings.Contains(decl, "[") {
			flexible, count = true, 0
		}
		if align > maxAlign {
			maxAlign = align
		}
		off = (off + align - 1) / align * align
		out = append(out, cMember{name: mm[2], offset: off, size: elem * count, align: align, flexible: flexible})
		off += elem * count
	}
	size := (off + maxAlign - 1) / maxAlign * maxAlign
	return out, size, maxAlign, nil
}
