// Package schema makes the JSON Schemas (draft 2020-12) of the records
// genlbridge publishes, format event.Version: the envelope of events and
// loss records, and, for a family decoded by a YNL spec, the "attrs" of
// each message the spec decodes, from the same compiled spec the decoder
// uses (ynl.Family.Schema), so that the two cannot disagree.
//
// Documents are plain JSON values (maps, slices, strings, numbers), built
// fresh at each call; the package holds no state.
package schema

import (
	"sort"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/jsonint"
	"github.com/genlbridge/genlbridge/ynl"
)

// Draft is the JSON Schema dialect of every document.
const Draft = "https://json-schema.org/draft/2020-12/schema"

// ID is the $id of the document of family ("" for the one of any family).
func ID(family string) string {
	if family == "" {
		return "urn:genlbridge:schema:v2"
	}
	return "urn:genlbridge:schema:v2:" + family
}

// Document returns the schema of the records of family (any family when
// ""), group ("": any group). f is the family's compiled spec (nil: none,
// its events are generic; or a family of format exmpl): with it, a ynl
// event's op is one of the messages the spec decodes (on group, when
// given) and its attrs are that message's.
func Document(family, group string, f *ynl.Family) map[string]any {
	defs := map[string]any{
		"uint64": uint64Schema(),
		"time": map[string]any{"type": "string", "format": "date-time",
			"pattern":     `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$`,
			"description": "RFC 3339, UTC, nine fractional digits"},
		"instance": map[string]any{"type": "integer", "minimum": 1, "maximum": jsonint.MaxSafe,
			"description": "what seq counts within: a registration of the family (kernel) or a run of the bridge (bridge), in µs since the epoch of when it began"},
		"raw": map[string]any{"type": "array", "items": map[string]any{"type": "object",
			"properties": map[string]any{"path": map[string]any{"type": "string"}, "type": map[string]any{"type": "integer", "minimum": 0, "maximum": 0x3fff},
				"data": base64Schema()},
			"required": []any{"path", "type", "data"}, "additionalProperties": false}},
		"generic-attrs": map[string]any{"type": "array", "items": map[string]any{"type": "object",
			"properties": map[string]any{"type": map[string]any{"type": "integer", "minimum": 0, "maximum": 0xffff}, "data": base64Schema()},
			"required":   []any{"type", "data"}, "additionalProperties": false}},
	}
	name := func(v string) any {
		if v == "" {
			return map[string]any{"type": "string"}
		}
		return map[string]any{"const": v}
	}
	formats := []any{event.FormatYNL, event.FormatExmpl, event.FormatSeed, event.FormatGeneric}
	ev := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"v":           map[string]any{"const": event.Version},
			"type":        map[string]any{"const": "event"},
			"host":        map[string]any{"type": "string"},
			"boot_id":     map[string]any{"type": "string"},
			"family":      name(family),
			"group":       name(group),
			"cmd":         byteSchema(),
			"version":     byteSchema(),
			"seq":         ref("uint64"),
			"seq_src":     map[string]any{"enum": []any{event.SeqKernel, event.SeqBridge}},
			"instance":    ref("instance"),
			"jiffies":     ref("uint64"),
			"kernel_time": ref("time"),
			"recv_time":   ref("time"),
			"format":      map[string]any{"enum": formats},
			"op":          map[string]any{"type": "string"},
			"msg":         map[string]any{"type": "string"},
			"attrs":       map[string]any{"type": []any{"object", "array"}},
			"raw":         ref("raw"),
		},
		"required":             []any{"v", "type", "host", "boot_id", "family", "group", "cmd", "version", "seq", "seq_src", "instance", "recv_time", "format"},
		"additionalProperties": false,
	}
	rules := []any{
		// ynl: the message's name and its attributes (an object).
		ifThen(map[string]any{"format": map[string]any{"const": event.FormatYNL}},
			map[string]any{"required": []any{"op", "attrs"}, "properties": map[string]any{"attrs": map[string]any{"type": "object"}}}),
		// generic: every attribute as type and base64 data; no op.
		ifThen(map[string]any{"format": map[string]any{"const": event.FormatGeneric}},
			map[string]any{"properties": map[string]any{"attrs": ref("generic-attrs"), "op": false, "raw": false}}),
		// exmpl and seed: the module's fields; no attrs.
		ifThen(map[string]any{"format": map[string]any{"enum": []any{event.FormatExmpl, event.FormatSeed}}},
			map[string]any{"properties": map[string]any{"attrs": false, "op": false, "raw": false}}),
	}
	if f != nil {
		fs := f.Schema()
		for k, v := range fs.Defs {
			defs[k] = v
		}
		var ops []any
		for _, m := range fs.Messages {
			if group != "" && !onGroup(f, m, group) {
				continue
			}
			def := "message-" + m.Name
			defs[def] = m.Attrs
			ops = append(ops, m.Name)
			rules = append(rules, ifThen(
				map[string]any{"format": map[string]any{"const": event.FormatYNL}, "op": map[string]any{"const": m.Name}},
				map[string]any{"properties": map[string]any{"attrs": ref(def)}}))
		}
		if len(ops) > 0 {
			sort.Slice(ops, func(i, j int) bool { return ops[i].(string) < ops[j].(string) })
			rules = append(rules, ifThen(map[string]any{"format": map[string]any{"const": event.FormatYNL}},
				map[string]any{"properties": map[string]any{"op": map[string]any{"enum": ops}}}))
		} else {
			// Nothing decodes by name (a family of format exmpl, or a group
			// the spec has no message for): no ynl event.
			ev["properties"].(map[string]any)["format"] = map[string]any{"enum": []any{event.FormatExmpl, event.FormatSeed, event.FormatGeneric}}
		}
	}
	ev["allOf"] = rules
	reasons := make([]any, len(event.Reasons))
	for i, r := range event.Reasons {
		reasons[i] = r
	}
	loss := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"v":         map[string]any{"const": event.Version},
			"type":      map[string]any{"const": "loss"},
			"host":      map[string]any{"type": "string"},
			"boot_id":   map[string]any{"type": "string"},
			"family":    name(family),
			"group":     name(group),
			"reason":    map[string]any{"enum": reasons},
			"count":     ref("uint64"),
			"first_seq": ref("uint64"),
			"last_seq":  ref("uint64"),
			"instance":  ref("instance"),
			"time":      ref("time"),
		},
		"required":             []any{"v", "type", "host", "boot_id", "family", "group", "reason", "count", "time"},
		"dependentRequired":    map[string]any{"first_seq": []any{"last_seq"}, "last_seq": []any{"first_seq"}},
		"additionalProperties": false,
	}
	defs["event"], defs["loss"] = ev, loss
	title := "genlbridge records (format v2)"
	if family != "" {
		title += " of " + family
		if group != "" {
			title += "/" + group
		}
	}
	return map[string]any{
		"$schema": Draft,
		"$id":     ID(family),
		"title":   title,
		"oneOf":   []any{ref("event"), ref("loss")},
		"$defs":   defs,
	}
}

func onGroup(f *ynl.Family, m ynl.MessageSchema, group string) bool {
	for _, g := range m.Groups {
		if g == group || g == ynl.GroupAny && !contains(f.Groups(), group) {
			return true
		}
	}
	return false
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/$defs/" + name} }

func ifThen(props, then map[string]any) map[string]any {
	req := make([]any, 0, len(props))
	for k := range props {
		req = append(req, k)
	}
	sort.Slice(req, func(i, j int) bool { return req[i].(string) < req[j].(string) })
	return map[string]any{"if": map[string]any{"properties": props, "required": req}, "then": then}
}

func byteSchema() map[string]any {
	return map[string]any{"type": "integer", "minimum": 0, "maximum": 255}
}

func base64Schema() map[string]any {
	return map[string]any{"type": "string", "contentEncoding": "base64", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
}

// uint64Schema: a number up to 2^53-1, beyond it a string of its digits.
func uint64Schema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "integer", "minimum": 0, "maximum": jsonint.MaxSafe},
		map[string]any{"type": "string", "pattern": "^[1-9][0-9]{15,19}$"},
	}, "description": "a 64-bit unsigned integer: a JSON number up to 2^53-1, beyond it a string of its decimal digits"}
}
