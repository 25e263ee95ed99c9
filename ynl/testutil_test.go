package ynl

import (
	"encoding/base64"
	"encoding/binary"
	"os"
	"testing"
)

// Builders of netlink attributes for tests, in host byte order as the
// kernel writes them.

const nlaFNested = 0x8000

// nla is one attribute of type t with payload data, padded to 4 bytes.
func nla(t uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], t)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nest is an attribute of type t (NLA_F_NESTED set) holding attrs.
func nest(t uint16, attrs ...[]byte) []byte { return nla(t|nlaFNested, cat(attrs...)) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func u8(v uint8) []byte { return []byte{v} }

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func strz(s string) []byte { return append([]byte(s), 0) }

// mustCompile parses and compiles spec (and override, if not empty) from
// test files or literal text.
func mustCompile(t testing.TB, specFile string, spec []byte, ovFile string, ov []byte) *Family {
	t.Helper()
	s, err := ParseSpec(specFile, spec)
	if err != nil {
		t.Fatal(err)
	}
	var o *Override
	if ov != nil {
		if o, err = ParseOverride(ovFile, ov); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Compile(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// b64 is b in standard base64, as Raw holds data.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
