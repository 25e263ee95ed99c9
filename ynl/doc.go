// Package ynl decodes generic netlink notifications to JSON with the
// kernel's YNL specs (Documentation/netlink/specs/*.yaml, protocols
// genetlink, genetlink-c and genetlink-legacy) and genlbridge's override
// files (see Override), so that every family a spec describes reaches NATS
// as named attributes instead of base64.
//
// The pieces, in the order they are used:
//
//   - ParseSpec and ParseOverride read one file each (spec.go, load.go,
//     override.go). Files are untrusted input: every problem is an *Error
//     carrying file:line:col, never a panic.
//   - Compile resolves a spec and its override into a Family (compile.go,
//     family.go): tables indexed by attribute number with JSON keys and enum
//     names rendered ahead. Family.Lookup (or Group.Lookup) says which
//     Message a (multicast group, cmd) is.
//   - Message.Decode writes one message's payload as a JSON object into an
//     Output (decode.go, json.go), without allocating once the Output's
//     buffers have grown. Attributes it cannot decode are kept raw, never an
//     error; only a broken TLV structure is (ErrMalformed).
//   - LoadRegistry reads specs and overrides from several directories in
//     precedence order (registry.go); DefaultSources is genlbridge's order.
//
// Parsed specs, Families, Messages and Registries are immutable and safe
// for concurrent use; an Output belongs to one goroutine at a time.
//
// The decoding follows the kernel's own YNL library (tools/net/ynl, ynl.py
// and nlspec.py): attribute and message numbers are counted as nlspec.py
// counts them (and as the UAPI headers number them), notifications decode
// with the attribute set of the operation they notify, fixed headers'
// members join the top-level object, binaries are hex, flags are lists of
// names, display hints on uint and sint are ignored, a nest-type-value
// without type-value is a plain nest, a later notification of an id wins.
// Where this package differs it says so: indexed-arrays are plain arrays
// (and those of uint and sint, which ynl.py does not decode, take 4- or
// 8-byte entries as the attributes do), nest-type-values objects keyed by
// type number, unknown enum values and flag bits numbers.
package ynl
