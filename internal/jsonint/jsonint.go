// Package jsonint writes 64-bit integers into JSON so that every consumer
// reads them exactly: a value that a double holds exactly (|v| at most
// 2^53-1, JavaScript's Number.MAX_SAFE_INTEGER) is a JSON number, any other
// a JSON string of its decimal digits. A JavaScript consumer's JSON.parse
// then never rounds: it sees a number, or a string to give to BigInt.
//
// The functions are pure and allocate only when dst must grow.
package jsonint

import "strconv"

// MaxSafe is the largest integer written as a JSON number: 2^53-1.
const MaxSafe = 1<<53 - 1

// AppendUint appends v: a number up to MaxSafe, else a quoted decimal string.
func AppendUint(dst []byte, v uint64) []byte {
	if v <= MaxSafe {
		return strconv.AppendUint(dst, v, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '"')
}

// AppendInt appends v: a number when |v| is at most MaxSafe, else a quoted
// decimal string.
func AppendInt(dst []byte, v int64) []byte {
	if v <= MaxSafe && v >= -MaxSafe {
		return strconv.AppendInt(dst, v, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '"')
}

// ParseUint reads what AppendUint writes (and a number or string of any
// size up to 2^64-1): b is the JSON value's text.
func ParseUint(b []byte) (uint64, error) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// ParseInt reads what AppendInt writes.
func ParseInt(b []byte) (int64, error) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// Uint is a uint64 that encoding/json reads from a JSON number or string
// (AppendUint's two forms) and writes as AppendUint does.
type Uint uint64

// UnmarshalJSON reads a number or a string of decimal digits; null leaves
// the value alone.
func (u *Uint) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParseUint(b)
	if err != nil {
		return err
	}
	*u = Uint(v)
	return nil
}

// MarshalJSON writes u as AppendUint does.
func (u Uint) MarshalJSON() ([]byte, error) { return AppendUint(nil, uint64(u)), nil }
