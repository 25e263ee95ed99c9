package bridge

import (
	"errors"
	"fmt"
	"sync"

	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/genlbridge/genlbridge/ynl"
	"github.com/genlbridge/genlbridge/ynl/specs"
)

// exmplSpecFamily is CONTROL_EXMPL compiled from the embedded sources alone:
// the module's spec and its override (format exmpl). DecodeExmpl uses it
// whatever the subscription's family, so that tests can inject the
// module's events into any group.
var exmplSpecFamily = sync.OnceValues(func() (*ynl.Family, error) {
	reg, errs := specs.EmbeddedRegistry()
	if len(errs) > 0 {
		return nil, fmt.Errorf("embedded specs: %w", errors.Join(errs...))
	}
	f, _, ok := reg.Family(exmpl.FamilyName)
	if !ok {
		return nil, fmt.Errorf("embedded specs: no %s", exmpl.FamilyName)
	}
	return f, nil
})

// resolveDecoder says how sub's messages decode, given the spec registry
// (nil: only the embedded CONTROL_EXMPL spec): the compiled family (nil:
// generically) and the file its spec came from.
func resolveDecoder(sub Subscription, reg *ynl.Registry) (*ynl.Family, string, error) {
	lookup := func() (*ynl.Family, string, bool) {
		if reg == nil {
			return nil, "", false
		}
		return reg.Family(sub.Family)
	}
	switch sub.Decoder {
	case DecodeGeneric:
		return nil, "", nil
	case DecodeExmpl:
		f, err := exmplSpecFamily()
		return f, "embedded/kmod/control_exmpl.yaml", err
	case DecodeYNL:
		f, origin, ok := lookup()
		if !ok {
			return nil, "", fmt.Errorf("subscription %s: no YNL spec of family %s (add one to GENLBRIDGE_SPEC_DIRS)", sub, sub.Family)
		}
		return f, origin, nil
	default: // DecodeAuto
		if f, origin, ok := lookup(); ok {
			return f, origin, nil
		}
		if sub.Family == exmpl.FamilyName {
			f, err := exmplSpecFamily()
			return f, "embedded/kmod/control_exmpl.yaml", err
		}
		return nil, "", nil
	}
}
