package ynl

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds a spec or override file (and a .gz after decompression):
// the YAML library's node tree takes up to about 120 times a file's size
// (measured with a file that is one long flow list), so 1 MiB stays near
// 120 MiB while parsing. The kernel's largest specs are 100-200 KiB.
const maxFileSize = 1 << 20

// reader turns yaml.Node trees into values, every error carrying the file,
// line and column of the node at fault. It is used by one goroutine.
type reader struct {
	file string
	// budget is how many more nodes the reader may visit. Aliases make a
	// node visited once per reference, and references to lists of
	// references multiply: a small file could make the reader work for
	// ever. A spec visits each node about once; the budget is a multiple of
	// the document's size.
	budget int
}

// newReader returns a reader of the document root (of file).
func newReader(file string, root *yaml.Node) *reader {
	return &reader{file: file, budget: 16*countNodes(root) + 10_000}
}

// countNodes counts the nodes of a tree, not following aliases.
func countNodes(root *yaml.Node) int {
	n := 0
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		stack = append(stack, top.Content...)
	}
	return n
}

// parseYAML parses data into the root node of its first document. A syntax
// error becomes an *Error with the line the YAML library reports. The
// library is not trusted not to panic on hostile input: a panic becomes an
// error too.
func parseYAML(file string, data []byte) (root *yaml.Node, err error) {
	if len(data) > maxFileSize {
		return nil, errorAt(Pos{File: file}, "file is larger than %d bytes", maxFileSize)
	}
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, errorAt(Pos{File: file}, "yaml: parser failed: %v", r)
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, errorAt(Pos{File: file, Line: 1}, "empty document")
	}
	return doc.Content[0], nil
}

// yamlError converts the YAML library's "yaml: line N: msg" into an *Error
// at that line.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return errorAt(Pos{File: file, Line: line}, "yaml: %s", msg)
}

func (r *reader) pos(n *yaml.Node) Pos {
	return Pos{File: r.file, Line: n.Line, Column: n.Column}
}

func (r *reader) errf(n *yaml.Node, format string, args ...any) *Error {
	return errorAt(r.pos(n), format, args...)
}

// deref follows aliases to the node they name. A nil node (a property
// the file does not have) is an error: list treats it as empty first.
func (r *reader) deref(n *yaml.Node) (*yaml.Node, error) {
	if n == nil {
		return nil, errorAt(Pos{File: r.file}, "missing value")
	}
	for {
		if r.budget--; r.budget < 0 {
			return nil, r.errf(n, "aliases expand the document too much")
		}
		if n.Kind != yaml.AliasNode {
			break
		}
		if n.Alias == nil {
			return nil, r.errf(n, "alias to nothing")
		}
		n = n.Alias
	}
	return n, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// mapping calls fn for each key of the mapping n. what names n in errors.
// A repeated key is an error.
func (r *reader) mapping(n *yaml.Node, what string, fn func(key string, v *yaml.Node) error) error {
	n, err := r.deref(n)
	if err != nil {
		return err
	}
	if n.Kind != yaml.MappingNode {
		return r.errf(n, "%s: want a mapping, got %s", what, kindName(n))
	}
	var seen map[string]int // line of each key, for mappings too long to search
	if len(n.Content) > 32 {
		seen = make(map[string]int, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := r.deref(n.Content[i])
		if err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return r.errf(k, "%s: key is %s, want a name", what, kindName(k))
		}
		first := 0
		if seen != nil {
			first = seen[k.Value]
			seen[k.Value] = k.Line
		} else {
			for j := 0; j < i; j += 2 {
				if prev := n.Content[j]; prev.Kind == yaml.ScalarNode && prev.Value == k.Value {
					first = prev.Line
				}
			}
		}
		if first != 0 {
			return r.errf(k, "%s: key %q repeated (first at line %d)", what, k.Value, first)
		}
		if err := fn(k.Value, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// list calls fn for each item of the list n; a null or missing node is an
// empty list.
func (r *reader) list(n *yaml.Node, what string, fn func(item *yaml.Node) error) error {
	if n == nil {
		return nil
	}
	n, err := r.deref(n)
	if err != nil {
		return err
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return r.errf(n, "%s: want a list, got %s", what, kindName(n))
	}
	for _, item := range n.Content {
		if err := fn(item); err != nil {
			return err
		}
	}
	return nil
}

// scalar returns the node a scalar is, following aliases.
func (r *reader) scalar(n *yaml.Node, what string) (*yaml.Node, error) {
	n, err := r.deref(n)
	if err != nil {
		return nil, err
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return nil, r.errf(n, "%s: want a value, got %s", what, kindName(n))
	}
	return n, nil
}

// str returns a scalar's text.
func (r *reader) str(n *yaml.Node, what string) (string, error) {
	s, err := r.scalar(n, what)
	if err != nil {
		return "", err
	}
	return s.Value, nil
}

// name returns a scalar's text, which must not be empty nor longer than
// maxNameLen bytes.
func (r *reader) name(n *yaml.Node, what string) (string, error) {
	s, err := r.str(n, what)
	switch {
	case err != nil:
	case s == "":
		err = r.errf(n, "%s: empty", what)
	case len(s) > maxNameLen:
		err = r.errf(n, "%s is %d bytes, longer than %d", what, len(s), maxNameLen)
	}
	return s, err
}

// int returns an integer scalar (decimal, 0x, 0o, 0b; an optional sign).
func (r *reader) int(n *yaml.Node, what string) (int64, error) {
	s, err := r.scalar(n, what)
	if err != nil {
		return 0, err
	}
	text := strings.ReplaceAll(s.Value, "_", "")
	if v, err := strconv.ParseInt(text, 0, 64); err == nil {
		return v, nil
	}
	return 0, r.errf(s, "%s: want an integer, got %q", what, s.Value)
}

// intIn returns an integer scalar within [lo, hi].
func (r *reader) intIn(n *yaml.Node, what string, lo, hi int64) (int64, error) {
	v, err := r.int(n, what)
	if err == nil && (v < lo || v > hi) {
		err = r.errf(n, "%s: %d out of range %d..%d", what, v, lo, hi)
	}
	return v, err
}

// boolean returns a true/false scalar.
func (r *reader) boolean(n *yaml.Node, what string) (bool, error) {
	s, err := r.scalar(n, what)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(s.Value) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return false, r.errf(s, "%s: want true or false, got %q", what, s.Value)
}

// names returns a list of scalars.
func (r *reader) names(n *yaml.Node, what string) ([]string, error) {
	var out []string
	err := r.list(n, what, func(item *yaml.Node) error {
		s, err := r.name(item, what)
		out = append(out, s)
		return err
	})
	return out, err
}

// Bounds of the numbers specs give: attribute and operation values are
// below maxValue, enum values within [minValue, math.MaxUint32].
const (
	minValue = math.MinInt32
	maxValue = math.MaxUint32
)
