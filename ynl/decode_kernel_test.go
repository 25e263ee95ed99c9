package ynl

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// Messages as the kernel's 6.12 code builds them, decoded with its specs.

// netdevDevAdd is the payload of a dev-add-ntf (netdev_nl_dev_fill): ifindex,
// then the u64s with NETDEV_A_DEV_PAD before each to align it.
func netdevDevAdd(xdp, rxMeta, xsk uint64) []byte {
	return cat(
		nla(1, u32(3)),                // ifindex
		nla(2, nil), nla(3, u64(xdp)), // pad, xdp-features
		nla(4, u32(1)),                   // xdp-zc-max-segs
		nla(2, nil), nla(5, u64(rxMeta)), // xdp-rx-metadata-features
		nla(2, nil), nla(6, u64(xsk)), // xsk-features
	)
}

// vethDevAdd is what a veth's dev-add-ntf carries in 6.12.
func vethDevAdd() []byte {
	return netdevDevAdd(0x67, 0x7, 0) // basic, redirect, ndo-xmit, rx-sg, ndo-xmit-sg; timestamp, hash, vlan-tag
}

func TestDecodeNetdevDevAdd(t *testing.T) {
	f := kernelFamily(t, "netdev", nil)
	m := f.Lookup("mgmt", 2)
	if m == nil || m.Name != "dev-add-ntf" {
		t.Fatalf("mgmt/2 = %v", m)
	}
	var out Output
	// Unknown bits come last, as one number.
	if err := m.Decode(&out, netdevDevAdd(0x7, 0x3, 0x41)); err != nil {
		t.Fatal(err)
	}
	want := `{"ifindex":3,"xdp-features":["basic","redirect","ndo-xmit"],"xdp-zc-max-segs":1,` +
		`"xdp-rx-metadata-features":["timestamp","hash"],"xsk-features":["tx-timestamp",64]}`
	if string(out.JSON) != want || len(out.Raw) != 0 {
		t.Fatalf("got %s %s\nwant %s", out.JSON, out.Raw, want)
	}
	out.Reset()
	if err := m.Decode(&out, vethDevAdd()); err != nil {
		t.Fatal(err)
	}
	want = `{"ifindex":3,"xdp-features":["basic","redirect","ndo-xmit","rx-sg","ndo-xmit-sg"],"xdp-zc-max-segs":1,` +
		`"xdp-rx-metadata-features":["timestamp","hash","vlan-tag"],"xsk-features":[]}`
	if string(out.JSON) != want || len(out.Raw) != 0 {
		t.Fatalf("got %s %s\nwant %s", out.JSON, out.Raw, want)
	}
}

func TestDecodeEthtoolFeatures(t *testing.T) {
	f := kernelFamily(t, "ethtool", nil)
	m := f.Lookup("monitor", 13) // ETHTOOL_MSG_FEATURES_NTF
	if m == nil || m.Name != "features-ntf" || m.AttributeSet != "features" {
		t.Fatalf("monitor/13 = %+v", m)
	}
	header := nest(1, nla(1, u32(2)), nla(2, strz("eth0")))
	bit := func(i uint32, name string, on bool) []byte {
		b := cat(nla(1, u32(i)), nla(2, strz(name)))
		if on {
			b = cat(b, nla(3, nil))
		}
		return nest(1, b)
	}
	// Verbose bitsets (ETHTOOL_A_BITSET_BITS of BIT nests) and a compact one
	// (VALUE and MASK as binaries).
	hw := nest(2, nla(2, u32(64)), nest(3, bit(0, "tx-scatter-gather", true), bit(5, "rx-checksum", false)))
	wanted := nest(3, nla(1, nil), nla(2, u32(64)), nest(3, bit(0, "tx-scatter-gather", true)))
	active := nest(4, nla(2, u32(8)), nla(4, []byte{0x21}), nla(5, []byte{0xff}))
	var out Output
	if err := m.Decode(&out, cat(header, hw, wanted, active)); err != nil {
		t.Fatal(err)
	}
	want := `{"header":{"dev-index":2,"dev-name":"eth0"},` +
		`"hw":{"size":64,"bits":{"bit":[{"index":0,"name":"tx-scatter-gather","value":true},{"index":5,"name":"rx-checksum"}]}},` +
		`"wanted":{"nomask":true,"size":64,"bits":{"bit":[{"index":0,"name":"tx-scatter-gather","value":true}]}},` +
		`"active":{"size":8,"value":"21","mask":"ff"}}`
	if string(out.JSON) != want || len(out.Raw) != 0 {
		t.Fatalf("got  %s %s\nwant %s", out.JSON, out.Raw, want)
	}
}

func TestDecodeMptcpCreated(t *testing.T) {
	ov, err := ParseOverride("testdata/mptcp_pm.override.yaml", readTestdata(t, "mptcp_pm.override.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := kernelFamily(t, "mptcp_pm", ov)
	if g := f.Groups(); len(g) != 1 || g[0] != "mptcp_pm_events" {
		t.Fatalf("groups %v", g)
	}
	m := f.Lookup("mptcp_pm_events", 1) // MPTCP_EVENT_CREATED
	if m == nil || m.Name != "created" {
		t.Fatalf("created = %v", m)
	}
	if m := f.Lookup("mptcp_pm_events", 15); m == nil || m.Name != "listener-created" {
		t.Fatalf("15 = %v", m)
	}
	if m := f.Lookup("mptcp_pm_events", 5); m != nil {
		t.Fatalf("5 = %s", m.Name)
	}
	// mptcp_event_put_token_and_ssk + mptcp_event_created's attributes.
	payload := cat(
		nla(1, u32(0xdeadbeef)),  // token
		nla(2, u16(2)),           // family AF_INET
		nla(5, be32(0x0a000001)), // saddr4 10.0.0.1 (big-endian, no display hint)
		nla(7, be32(0x0a000002)), // daddr4
		nla(9, be16(43210)),      // sport
		nla(10, be16(80)),        // dport
		nla(18, u8(0)),           // server-side
		nla(3, u8(0)),            // loc-id
		nla(99, []byte{1, 2, 3}), // newer than the spec
	)
	var out Output
	if err := m.Decode(&out, payload); err != nil {
		t.Fatal(err)
	}
	want := `{"token":3735928559,"family":2,"saddr4":167772161,"daddr4":167772162,"sport":43210,"dport":80,"server-side":0,"loc-id":0}`
	if string(out.JSON) != want {
		t.Fatalf("got  %s\nwant %s", out.JSON, want)
	}
	if string(out.Raw) != `[{"path":"","type":99,"data":"AQID"}]` || out.Unknown != 1 {
		t.Fatalf("raw %s %d", out.Raw, out.Unknown)
	}
}

// TestDecodeKernelSpecsValid decodes one message of every attribute type
// each kernel spec's sets have, checking the output is valid JSON.
func TestDecodeKernelSpecsValid(t *testing.T) {
	for _, path := range kernelSpecs(t) {
		s, err := ParseSpec(path, readSpecFile(t, path))
		if err != nil {
			t.Fatal(err)
		}
		if s.Protocol == ProtocolNetlinkRaw {
			continue
		}
		f, err := Compile(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, set := range s.AttributeSets {
			m := &Message{Name: set.Name, fam: f, set: f.sets[set.Name], top: f.sets[set.Name]}
			// Every attribute, with 8 zero bytes (fits most types) or, for
			// nests, an empty nest.
			var payload []byte
			for num, a := range m.set.attrs {
				data := make([]byte, 8)
				if a != nil && (a.kind == kindNest || a.kind == kindIndexedArray || a.kind == kindNestTypeValue) {
					data = nil
				}
				payload = append(payload, nla(uint16(num), data)...)
			}
			var out Output
			if err := m.Decode(&out, payload); err != nil {
				t.Fatalf("%s %s: %v", filepath.Base(path), set.Name, err)
			}
			if !json.Valid(out.JSON) || len(out.Raw) > 0 && !json.Valid(out.Raw) {
				t.Fatalf("%s %s: invalid JSON %s %s", filepath.Base(path), set.Name, out.JSON, out.Raw)
			}
		}
	}
}
