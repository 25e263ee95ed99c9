package spool

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

type packed struct{ subject, id, data string }

func pack(msgs ...packed) []byte {
	p := appendPackHeader(nil)
	for _, m := range msgs {
		n := len(p)
		p = appendPacked(p, m.subject, []byte(m.id), []byte(m.data))
		if len(p)-n != packedSize(len(m.subject), len(m.id), len(m.data)) {
			panic("packedSize disagrees with appendPacked")
		}
	}
	return p
}

func unpackAll(p []byte) ([]packed, error) {
	var out []packed
	_, err := Unpack(p, func(_ int, s, id, d []byte) bool {
		out = append(out, packed{string(s), string(id), string(d)})
		return true
	})
	return out, err
}

func TestPackRoundTrip(t *testing.T) {
	big := string(bytes.Repeat([]byte("x"), 300)) // a two-byte length
	for _, msgs := range [][]packed{
		nil,
		{{"genl.a.b.h", "id-1", `{"seq":1}`}},
		{{"genl.a.b.h", "", ""}, {"genl.loss.a.b.h", "loss-1", big}, {"s", "i", "d"}},
	} {
		got, err := unpackAll(pack(msgs...))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(msgs) {
			t.Fatalf("round trip of %v: %v, %v", msgs, got, err)
		}
	}
	// fn stops the walk.
	p := pack(packed{"a", "1", "x"}, packed{"b", "2", "y"}, packed{"c", "3", "z"})
	n, err := Unpack(p, func(i int, _, _, _ []byte) bool { return i < 1 })
	if n != 2 || err != nil {
		t.Fatalf("stopped walk: %d, %v", n, err)
	}
}

// Damage is reported with where it is; what came before it is passed.
func TestPackDamage(t *testing.T) {
	whole := pack(packed{"genl.a", "1", "one"}, packed{"genl.b", "2", "two"})
	for _, tc := range []struct {
		name   string
		data   []byte
		passed int
		where  string
	}{
		{"empty", nil, 0, "version byte (empty)"},
		{"other version", append([]byte{9}, whole[1:]...), 0, "version byte 9"},
		{"cut in the second message", whole[:len(whole)-2], 1, "message 1 at byte"},
		{"no subject", pack(packed{"", "1", "x"}), 0, "message 0 at byte 1"},
		{"length past the end", append(appendPackHeader(nil), 0x7f), 0, "message 0 at byte 1"},
	} {
		n, err := Unpack(tc.data, func(int, []byte, []byte, []byte) bool { return true })
		if !errors.Is(err, ErrBadPack) || n != tc.passed || !bytes.Contains([]byte(err.Error()), []byte(tc.where)) {
			t.Errorf("%s: passed %d, %v; want %d and ErrBadPack naming %q", tc.name, n, err, tc.passed, tc.where)
		}
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(pack(packed{"genl.a.b.h", "id", `{"seq":1}`}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := unpackAll(data)
		if err != nil {
			return
		}
		// What unpacks packs to the same bytes.
		if again := pack(msgs...); !bytes.Equal(again, data) {
			t.Fatalf("%x unpacks to %v, which packs to %x", data, msgs, again)
		}
	})
}

func TestPackLongLengthIsDamage(t *testing.T) {
	// 0x81 0x00 is 1 written in two bytes.
	p := append(appendPackHeader(nil), 0x81, 0x00, 'a', 0, 0)
	if _, err := unpackAll(p); !errors.Is(err, ErrBadPack) {
		t.Fatalf("a length not in its shortest form: %v", err)
	}
}
