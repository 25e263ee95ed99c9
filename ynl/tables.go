package ynl

// This file holds the compiled form of a spec that Decode walks: kinds,
// attribute tables indexed by number, enums and structs with their JSON
// rendered ahead. Compile (compile.go) builds them; they are never
// modified afterwards, so any number of goroutines may read them.

// maxDepth bounds how deep Decode follows nests; deeper nests are kept raw.
// It also ends a set that contains itself. Compile rejects structs nested
// deeper.
const maxDepth = 16

// maxAttrType is the largest attribute number on the wire (NLA_TYPE_MASK).
const maxAttrType = 0x3fff

// maxCells bounds the entries of a family's attribute tables (indexed by
// attribute number): a hostile spec of many sets with large numbers cannot
// make Compile use much memory. The kernel's specs need a few thousand.
const maxCells = 1 << 18

// maxGroups bounds a family's multicast groups (each has a table of 256).
const maxGroups = 1024

// maxMulti bounds the multi-attr attributes of one attribute set: Decode
// keeps which it has written in a bitset of this many bits. The kernel's
// specs have at most 15.
const maxMulti = 256

// maxNameLen bounds the names a spec or override gives (attributes, sets,
// enum entries, struct members...), which Compile renders ahead as JSON.
const maxNameLen = 256

// kind is how an attribute's payload decodes.
type kind uint8

const (
	kindUnknown kind = iota
	kindPad
	kindU8
	kindU16
	kindU32
	kindU64
	kindS8
	kindS16
	kindS32
	kindS64
	kindUint // 4 or 8 bytes
	kindSint // 4 or 8 bytes
	kindString
	kindBinary
	kindFlag
	kindNest
	kindIndexedArray
	kindNestTypeValue
	kindBitfield32
)

var kindNames = map[string]kind{
	"u8": kindU8, "u16": kindU16, "u32": kindU32, "u64": kindU64,
	"s8": kindS8, "s16": kindS16, "s32": kindS32, "s64": kindS64,
	"uint": kindUint, "sint": kindSint,
	"string": kindString, "binary": kindBinary, "flag": kindFlag,
	"nest": kindNest, "indexed-array": kindIndexedArray, "array-nest": kindIndexedArray,
	"nest-type-value": kindNestTypeValue, "bitfield32": kindBitfield32,
	"pad": kindPad, "unused": kindUnknown,
}

// size is the payload size of a fixed-width integer kind (0 for others).
func (k kind) size() int {
	switch k {
	case kindU8, kindS8:
		return 1
	case kindU16, kindS16:
		return 2
	case kindU32, kindS32:
		return 4
	case kindU64, kindS64:
		return 8
	}
	return 0
}

func (k kind) integer() bool { return k >= kindU8 && k <= kindSint }
func (k kind) signed() bool  { return k >= kindS8 && k <= kindS64 || k == kindSint }

// byteOrder of an integer.
type byteOrder uint8

const (
	orderHost byteOrder = iota
	orderBig
	orderLittle
)

func parseOrder(s string) byteOrder {
	switch s {
	case "big-endian":
		return orderBig
	case "little-endian":
		return orderLittle
	}
	return orderHost
}

// hint is a display hint.
type hint uint8

const (
	hintNone hint = iota
	hintMAC
	hintIPv4
	hintIPv6
	hintIPv4or6
	hintUUID
	hintHex
)

func parseHint(s string) hint {
	switch s {
	case "mac":
		return hintMAC
	case "ipv4":
		return hintIPv4
	case "ipv6":
		return hintIPv6
	case "ipv4-or-v6":
		return hintIPv4or6
	case "uuid":
		return hintUUID
	case "hex":
		return hintHex
	}
	return hintNone
}

// metaRole says which of the event's own fields a top-level attribute fills.
type metaRole uint8

const (
	roleNone metaRole = iota
	roleSeq
	roleJiffies
	roleKernelNS
	roleMsg
)

// attr is a compiled attribute.
type attr struct {
	name  string
	key   []byte // ,"name":
	size  int8   // payload size of a fixed-width integer that is not a multi-attr, else 0
	kind  kind
	order byteOrder
	hint  hint
	multi bool
	// multiWord and multiBit are the attribute's bit in the set of
	// multi-attrs of its set already written in a nest ([maxMulti/64]uint64):
	// every multi-attr of a set has its own.
	multiBit  uint64
	multiWord uint8
	enum      *enumTab
	flags     bool // enum printed as a list of names
	// keyed[v] is key and flag list of value v together, for an unsigned
	// fixed-width flags attribute whose enum has flagSets.
	keyed  [][]byte
	nested *attrSet
	st     *structType
	sub    kind // element kind of an indexed-array or a binary array
	levels int  // type levels of a nest-type-value
	role   metaRole
}

// attrSet is a compiled attribute set, indexed by attribute number.
type attrSet struct {
	name  string
	attrs []*attr
}

func (s *attrSet) lookup(t uint16) *attr {
	if int(t) < len(s.attrs) {
		return s.attrs[t]
	}
	return nil
}

// enumTab renders enum values as JSON strings.
type enumTab struct {
	dense  [][]byte  // by value, for small non-negative values
	sparse []enumVal // sorted by value, for the others
	bits   [64][]byte
	// flagSets[v] is the rendered list of flags of value v, for values
	// below len(flagSets): a flags enum whose bits all fit in a byte is
	// written with one copy (unless the family's budget ran out:
	// flagsTried says flagSets was considered).
	flagSets   [][]byte
	flagsTried bool
}

// maxFlagSetBits bounds the flags enums rendered ahead for every value.
const maxFlagSetBits = 8

type enumVal struct {
	v    int64
	name []byte
}

const maxDenseEnum = 1024

func (e *enumTab) lookup(v int64) []byte {
	if v >= 0 && v < int64(len(e.dense)) {
		return e.dense[v]
	}
	lo, hi := 0, len(e.sparse)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if e.sparse[m].v < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(e.sparse) && e.sparse[lo].v == v {
		return e.sparse[lo].name
	}
	return nil
}

// structType is a compiled struct definition.
type structType struct {
	name string
	// size is the sum of the members' sizes, each at least 1: a struct
	// used as a member, a fixed header or an attribute's struct has members.
	size    int
	fields  int // members that are not pad
	depth   int // 1, plus the depth of the deepest struct member
	members []member
}

type member struct {
	key   []byte
	kind  kind // an integer kind, kindBinary, kindString or kindPad
	size  int
	order byteOrder
	hint  hint
	enum  *enumTab
	flags bool
	st    *structType
}
