package ynl

import (
	"encoding/base64"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// JSON text helpers for Decode. Each appends to dst and returns it; none
// allocates beyond growing dst.

const hexDigits = "0123456789abcdef"

// safeASCII[c] is true when byte c goes into a JSON string as is.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string: quotes and backslashes escaped,
// control characters as \n, \t... or \u00XX, invalid UTF-8 as \ufffd, and
// U+2028 and U+2029 escaped (as encoding/json does) so that the text is
// also safe inside JavaScript.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendHex appends b as a JSON string of hex digits, "0a1b"; with sep, the
// bytes are separated by a space, "0a 1b", as ynl.py prints the hex hint.
func appendHex(dst, b []byte, sep bool) []byte {
	dst = append(dst, '"')
	for i, c := range b {
		if sep && i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(dst, '"')
}

// appendMAC appends b as "aa:bb:cc:dd:ee:ff" (any number of bytes).
func appendMAC(dst, b []byte) []byte {
	dst = append(dst, '"')
	for i, c := range b {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(dst, '"')
}

// appendIPv4 appends the address whose first octet is the top byte of v.
func appendIPv4(dst []byte, v uint32) []byte {
	dst = append(dst, '"')
	for i := 3; i >= 0; i-- {
		dst = strconv.AppendUint(dst, uint64(v>>(8*i)&0xff), 10)
		if i > 0 {
			dst = append(dst, '.')
		}
	}
	return append(dst, '"')
}

// appendIP appends a 4- or 16-byte address in its canonical text (RFC 5952
// for IPv6). The caller checks the length.
func appendIP(dst, b []byte) []byte {
	dst = append(dst, '"')
	if len(b) == 4 {
		dst = netip.AddrFrom4([4]byte(b)).AppendTo(dst)
	} else {
		dst = netip.AddrFrom16([16]byte(b)).AppendTo(dst)
	}
	return append(dst, '"')
}

// appendUUID appends 16 bytes as 8-4-4-4-12 hex digits.
func appendUUID(dst, b []byte) []byte {
	dst = append(dst, '"')
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(dst, '"')
}

// appendHexUint appends v as ynl.py's hex(): "0x1f".
func appendHexUint(dst []byte, v uint64) []byte {
	dst = append(dst, '"', '0', 'x')
	dst = strconv.AppendUint(dst, v, 16)
	return append(dst, '"')
}

// appendBase64 appends b as a JSON string in standard base64.
func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}
