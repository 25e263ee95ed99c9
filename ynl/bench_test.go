package ynl

import (
	"testing"
)

// BenchmarkDecodeNetdevDevAdd decodes netdev's dev-add-ntf (the kernel's
// spec) to JSON: the target is within 3x of the exmpl hand decoder.
func BenchmarkDecodeNetdevDevAdd(b *testing.B) {
	m := kernelFamily(b, "netdev", nil).Lookup("mgmt", 2)
	payload := vethDevAdd()
	var out Output
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		out.Reset()
		if err := m.Decode(&out, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeExmpl decodes the CONTROL_EXMPL event through the engine
// (kmod's spec, the format-exmpl override).
func BenchmarkDecodeExmpl(b *testing.B) {
	m := exmplFamily(b).Lookup("EXMPL_GRP", 1)
	payload := exmplPayload("Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001)
	var out Output
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		if err := m.Decode(&out, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeExmplHand is the hand decoder on the same payload, for
// the ratio (it makes a string of msg, as the bridge copies it).
func BenchmarkDecodeExmplHand(b *testing.B) {
	payload := exmplPayload("Hello from kernel at jiffies 4295000123", 4295000123, 77, 1795000000000000001)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := refDecodeExmpl(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEthtoolFeatures decodes a features-ntf with verbose bitsets.
func BenchmarkDecodeEthtoolFeatures(b *testing.B) {
	m := kernelFamily(b, "ethtool", nil).Lookup("monitor", 13)
	bit := func(i uint32, name string) []byte {
		return nest(1, nla(1, u32(i)), nla(2, strz(name)), nla(3, nil))
	}
	var bits [][]byte
	for i := range 32 {
		bits = append(bits, bit(uint32(i), "feature-name"))
	}
	payload := cat(nest(1, nla(1, u32(2)), nla(2, strz("eth0"))), nest(2, nla(2, u32(64)), nest(3, bits...)))
	var out Output
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		out.Reset()
		if err := m.Decode(&out, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	netdev := kernelFamily(t, "netdev", nil).Lookup("mgmt", 2)
	exmpl := exmplFamily(t).Lookup("EXMPL_GRP", 1)
	types := typesFamily(t).Lookup("events", 2)
	for _, c := range []struct {
		name    string
		m       *Message
		payload []byte
	}{
		{"netdev", netdev, vethDevAdd()},
		{"netdev unknown bits", netdev, netdevDevAdd(1<<40|1, 0, 0x41)},
		{"exmpl", exmpl, exmplPayload("Hello from kernel at jiffies 4295000123", 4295000123, 77, 1)},
		{"seed", exmpl, seedPayload("Hello from kernel at jiffies 4294937296")},
		{"types", types, cat(nla(20, make([]byte, 16)), nla(21, make([]byte, 16)), nla(28, make([]byte, 24)),
			nla(11, strz("\x01\xff")), nest(30, nest(1, nla(1, u32(1)))), nest(32, nest(3, nest(7, nla(1, u32(9))))),
			nla(15, u32(1)), nla(1, u8(1)), nla(15, u32(2)), nla(77, []byte{1}), nla(3, u8(1)), deepTree(20))},
	} {
		var out Output
		allocs := testing.AllocsPerRun(100, func() {
			out.Reset()
			if err := c.m.Decode(&out, c.payload); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per message", c.name, allocs)
		}
	}
}
