// Package schematest validates genlbridge's records against the JSON
// Schemas of package schema with a real validator
// (github.com/santhosh-tekuri/jsonschema), for tests: each record against
// the document of its family and group, made from the registry the bridge
// decoded with.
package schematest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/genlbridge/genlbridge/schema"
	"github.com/genlbridge/genlbridge/ynl"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validator checks records. Safe for concurrent use.
type Validator struct {
	reg *ynl.Registry // nil: no family has a spec

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema // family/group -> compiled
	counts  map[string]int                // family/group -> records valid
}

// New returns a validator whose documents come from reg (nil: none).
func New(reg *ynl.Registry) *Validator {
	return &Validator{reg: reg, schemas: map[string]*jsonschema.Schema{}, counts: map[string]int{}}
}

// Compile compiles a schema document (as package schema makes it).
func Compile(doc map[string]any) (*jsonschema.Schema, error) {
	text, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	id, _ := doc["$id"].(string)
	if err := c.AddResource(id, parsed); err != nil {
		return nil, err
	}
	return c.Compile(id)
}

// Check validates one record (its JSON text) against the document of its
// family and group.
func (v *Validator) Check(line []byte) error {
	var head struct{ Family, Group string }
	if err := json.Unmarshal(line, &head); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	key := head.Family + "/" + head.Group
	v.mu.Lock()
	sch := v.schemas[key]
	if sch == nil {
		var f *ynl.Family
		if v.reg != nil {
			f, _, _ = v.reg.Family(head.Family)
		}
		var err error
		if sch, err = Compile(schema.Document(head.Family, head.Group, f)); err != nil {
			v.mu.Unlock()
			return fmt.Errorf("schema of %s: %w", key, err)
		}
		v.schemas[key] = sch
	}
	v.mu.Unlock()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("does not fit the schema of %s: %w", key, err)
	}
	v.mu.Lock()
	v.counts[key]++
	v.mu.Unlock()
	return nil
}

// Counts returns how many records of each family/group were valid.
func (v *Validator) Counts() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int{}
	for k, n := range v.counts {
		out[k] = n
	}
	return out
}
