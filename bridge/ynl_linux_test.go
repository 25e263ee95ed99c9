//go:build linux

package bridge_test

// The kernel's own event families decoded by name through YNL specs, in a
// fresh network namespace, compared with what the kernel's own tools read
// of the same events: ip -j link, ethtool --monitor, ip mptcp monitor. Each
// runs twice: with genlbridge's embedded specs, and with the kernel's specs
// from Debian's linux-doc-6.12 (with genlbridge's overrides, which the
// kernel's specs need to say which group carries which message).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/netnstest"
	"github.com/genlbridge/genlbridge/internal/schematest"
	"github.com/genlbridge/genlbridge/internal/syncbuf"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/genlbridge/genlbridge/ynl"
	"github.com/genlbridge/genlbridge/ynl/specs"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// linuxDoc612 is where Debian's linux-doc-6.12 keeps the kernel's specs.
const linuxDoc612 = "/usr/share/doc/linux-doc-6.12/Documentation/netlink/specs"

// registries are the two spec sources every test decodes with.
func registries(t *testing.T) map[string]*ynl.Registry {
	t.Helper()
	emb, errs := specs.EmbeddedRegistry()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	out := map[string]*ynl.Registry{"embedded": emb}
	if _, err := os.Stat(linuxDoc612); err != nil {
		t.Logf("no %s (Debian's linux-doc-6.12; make installs it): only the embedded specs", linuxDoc612)
		return out
	}
	kern, errs := ynl.LoadRegistry(append([]ynl.Source{ynl.DirSource(linuxDoc612, false)}, specs.Embedded()...)...)
	for _, err := range errs {
		t.Logf("kernel spec: %v", err)
	}
	out["linux-doc-6.12"] = kern
	return out
}

// ynlBridge runs a bridge on subs in ns, decoding with reg, publishing to
// an embedded NATS server, and returns a collector of what it publishes.
func ynlBridge(t *testing.T, ns *netnstest.NS, reg *ynl.Registry, wantSpec string, subs ...string) (*bridge.Bridge, *natstest.Collector) {
	t.Helper()
	nc := startNATS(t)
	// Every record fits the JSON Schema of its family (package schema),
	// made from the registry it decodes with, under a real validator.
	v := schematest.New(reg)
	col := natstest.Collect(t, nc.ConnectedUrl(), "genl.>", func(r *natstest.Record) string {
		if err := v.Check(r.Line); err != nil {
			return err.Error()
		}
		return ""
	})
	t.Cleanup(func() { t.Logf("%s: records valid against their schemas: %v", wantSpec, v.Counts()) })
	parsed, err := bridge.ParseSubscriptions(subs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{Subscriptions: parsed, Specs: reg, NetNS: ns.FD(), Logger: testLogger(t)},
		sink.NewNATS(nc, sink.NATSConfig{Logger: testLogger(t)}))
	if err != nil {
		t.Fatal(err)
	}
	runBridge(t, b)
	for _, s := range b.Subscriptions() {
		if !strings.Contains(s.Spec, wantSpec) {
			t.Fatalf("subscription %s decodes with %q, want a spec from %s", s.Subscription, s.Spec, wantSpec)
		}
	}
	return b, col
}

// ynlBridges runs one bridge per registry on subs in ns, all at once, so
// that each decodes the same kernel messages; it returns their collectors.
func ynlBridges(t *testing.T, ns *netnstest.NS, embeddedSpec string, subs ...string) map[string]*natstest.Collector {
	t.Helper()
	out := map[string]*natstest.Collector{}
	for name, reg := range registries(t) {
		want := embeddedSpec
		if name != "embedded" {
			want = name
		}
		_, out[name] = ynlBridge(t, ns, reg, want, subs...)
	}
	return out
}

// sameDecoding checks that both collectors decoded op's events alike: the
// kernel sent each message to both sockets in the same order, so the i-th
// events pair up. Attributes one spec has and the other not are logged;
// those both have must agree (an IPv4 address written as a number by a
// spec without the ipv4 display hint equals its dotted form).
func sameDecoding(t *testing.T, cols map[string]*natstest.Collector, op string) {
	t.Helper()
	a, b := cols["embedded"], cols["linux-doc-6.12"]
	if a == nil || b == nil {
		return
	}
	ea, eb := opEvents(a, op), opEvents(b, op)
	if len(ea) != len(eb) {
		t.Errorf("%s: %d events with the embedded spec, %d with the kernel's", op, len(ea), len(eb))
		return
	}
	onlyOne := map[string]bool{}
	for i := range ea {
		fa, fb := fields(t, &ea[i]), fields(t, &eb[i])
		compareValues(t, op, "", fa, fb, onlyOne)
	}
	if len(onlyOne) > 0 {
		var keys []string
		for k := range onlyOne {
			keys = append(keys, k)
		}
		t.Logf("%s: attributes only one of the specs decodes (compared the others): %v", op, keys)
	}
}

func compareValues(t *testing.T, op, path string, a, b any, onlyOne map[string]bool) {
	t.Helper()
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			t.Errorf("%s %s: embedded %v, kernel %v", op, path, a, b)
			return
		}
		for k, x := range av {
			if y, ok := bv[k]; ok {
				compareValues(t, op, path+"."+k, x, y, onlyOne)
			} else {
				onlyOne[path+"."+k] = true
			}
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				onlyOne[path+"."+k] = true
			}
		}
	default:
		x, y := canonical(a, b), canonical(b, a)
		if fmt.Sprint(x) != fmt.Sprint(y) {
			t.Errorf("%s %s: embedded spec %v, kernel spec %v", op, path, a, b)
		}
	}
}

// canonical writes v the way other is written where the two specs write
// one value differently: an array of 32-bit words as the hex of their
// little-endian bytes (ethtool's bitsets: the kernel's spec has them plain
// binary), a flags list of numbers as their sum (mptcp's flags: a plain
// integer in the kernel's spec), a big-endian u32 IPv4 address dotted.
func canonical(v, other any) any {
	switch x := v.(type) {
	case []any:
		if s, ok := other.(string); ok && len(s) == 8*len(x) {
			var b strings.Builder
			for _, w := range x {
				f, _ := w.(float64)
				u := uint32(f)
				fmt.Fprintf(&b, "%02x%02x%02x%02x", u&0xff, u>>8&0xff, u>>16&0xff, u>>24)
			}
			return b.String()
		}
		if _, ok := other.(float64); ok {
			sum := 0.0
			for _, w := range x {
				f, ok := w.(float64)
				if !ok {
					return v // a name: the other spec has no such enum
				}
				sum += f
			}
			return sum
		}
	case float64:
		if _, ok := other.(string); ok {
			return normalizeIPv4(v)
		}
	}
	return v
}

// normalizeIPv4 writes a number as a dotted IPv4 address when it is one of
// the address attributes (a big-endian u32 the kernel's spec gives no hint).
func normalizeIPv4(v any) any {
	if f, ok := v.(float64); ok && f >= 1<<24 && f < 1<<32 && f == float64(uint32(f)) {
		x := uint32(f)
		return fmt.Sprintf("%d.%d.%d.%d", x>>24, x>>16&0xff, x>>8&0xff, x&0xff)
	}
	return v
}

// fields decodes a YNL event's attributes.
func fields(t *testing.T, e *event.Event) map[string]any {
	t.Helper()
	if e.Format != event.FormatYNL {
		t.Fatalf("event %+v: format %q, want ynl", e, e.Format)
	}
	var m map[string]any
	if err := json.Unmarshal(e.Fields, &m); err != nil {
		t.Fatalf("attrs %s: %v", e.Fields, err)
	}
	if len(e.Raw) > 0 {
		t.Errorf("%s: attributes the spec could not decode: %s", e.Op, e.Raw)
	}
	return m
}

// ifindexes is `ip -j link` in ns: name -> ifindex.
func ifindexes(t *testing.T, ns *netnstest.NS) map[string]float64 {
	t.Helper()
	out, err := exec.Command("ip", "-j", "-n", ns.Name, "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Ifindex float64 `json:"ifindex"`
		Ifname  string  `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, l := range links {
		m[l.Ifname] = l.Ifindex
	}
	return m
}

// opEvents returns the events of op received so far.
func opEvents(col *natstest.Collector, op string) []event.Event {
	evs, _ := col.Snapshot()
	var out []event.Event
	for _, e := range evs {
		if e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

// TestYNLNetdev: dev-add-ntf and dev-del-ntf for a veth pair, decoded by
// name, with the ifindexes ip -j link reports.
func TestYNLNetdev(t *testing.T) {
	ns := netnstest.Need(t)
	cols := ynlBridges(t, ns, "embedded/netdev.yaml", "netdev/mgmt")
	if err := ns.IP("link", "add", "va", "type", "veth", "peer", "name", "vb"); err != nil {
		t.Fatal(err)
	}
	want := ifindexes(t, ns)
	if err := ns.IP("link", "del", "va"); err != nil {
		t.Fatal(err)
	}
	for name, col := range cols {
		t.Run(name, func(t *testing.T) {
			byIndex := func(op string) map[float64]bool {
				m := map[float64]bool{}
				for _, e := range opEvents(col, op) {
					f := fields(t, &e)
					m[f["ifindex"].(float64)] = true
					if _, ok := f["xdp-features"].([]any); !ok {
						t.Errorf("%s %s: xdp-features %v, want a list of flag names", op, e.Fields, f["xdp-features"])
					}
				}
				return m
			}
			natstest.WaitFor(t, 10*time.Second, "dev-add-ntf of va and vb", func() bool {
				m := byIndex("dev-add-ntf")
				return m[want["va"]] && m[want["vb"]]
			})
			natstest.WaitFor(t, 10*time.Second, "dev-del-ntf of va and vb", func() bool {
				m := byIndex("dev-del-ntf")
				return m[want["va"]] && m[want["vb"]]
			})
			e := opEvents(col, "dev-add-ntf")[0]
			t.Logf("ip -j link: va %v, vb %v; first event: %s %s", want["va"], want["vb"], e.Op, e.Fields)
			// A real event changed fails its schema.
			recs, _ := col.Since(0)
			var line []byte
			for _, r := range recs {
				if r.Op == "dev-add-ntf" {
					line = r.Line
					break
				}
			}
			v := schematest.New(registries(t)[name])
			if err := v.Check(line); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			for _, bad := range []string{strings.Replace(string(line), `"ifindex"`, `"ifidx"`, 1),
				strings.Replace(string(line), `"op":"dev-add-ntf"`, `"op":"dev-addd-ntf"`, 1),
				strings.Replace(string(line), `"v":2`, `"v":1`, 1)} {
				if err := v.Check([]byte(bad)); err == nil {
					t.Errorf("a changed event fits the schema: %s", bad)
				}
			}
		})
	}
	sameDecoding(t, cols, "dev-add-ntf")
	sameDecoding(t, cols, "dev-del-ntf")
}

// toolMonitor runs a kernel tool's monitor in ns (line-buffered), and
// returns its output once it printed ready.
func toolMonitor(t *testing.T, ns *netnstest.NS, ready string, args ...string) *syncbuf.Buffer {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		t.Fatalf("%s is not installed (make installs it)", args[0])
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "stdbuf", "-oL"}, args...)...)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if ready != "" {
		natstest.WaitFor(t, 10*time.Second, args[0]+" listening", func() bool { return strings.Contains(out.String(), ready) })
	} else {
		time.Sleep(500 * time.Millisecond) // ip mptcp monitor says nothing when ready
	}
	return out
}

// TestYNLEthtool: features-ntf from ethtool -K and channels-ntf from
// ethtool -L on a veth with four queues, compared field by field with what
// ethtool --monitor prints of the same notifications.
func TestYNLEthtool(t *testing.T) {
	ns := netnstest.Need(t)
	if err := ns.IP("link", "add", "va", "numtxqueues", "4", "numrxqueues", "4", "type", "veth", "peer", "name", "vb",
		"numtxqueues", "4", "numrxqueues", "4"); err != nil {
		t.Fatal(err)
	}
	cols := ynlBridges(t, ns, "embedded/ethtool.yaml", "ethtool/monitor")
	mon := toolMonitor(t, ns, "listening...", "ethtool", "--monitor")
	ethtool := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "ethtool"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ethtool %v: %v: %s", args, err, out)
		}
	}
	ethtool("-K", "va", "gro", "on")
	ethtool("-L", "va", "rx", "3", "tx", "3")
	names := featureNames(t, ns, "va")
	for name, col := range cols {
		t.Run(name, func(t *testing.T) {
			// channels-ntf, against "Channel parameters for va:".
			natstest.WaitFor(t, 10*time.Second, "channels-ntf", func() bool { return len(opEvents(col, "channels-ntf")) > 0 })
			natstest.WaitFor(t, 10*time.Second, "ethtool --monitor's channel parameters", func() bool {
				return strings.Count(mon.String(), "Combined:") >= 2
			})
			ch := fields(t, &opEvents(col, "channels-ntf")[0])
			hdr := ch["header"].(map[string]any)
			if hdr["dev-name"] != "va" || hdr["dev-index"] != ifindexes(t, ns)["va"] {
				t.Errorf("channels-ntf header %v, want va, ifindex %v", hdr, ifindexes(t, ns)["va"])
			}
			monCh := parseChannels(t, mon.String())
			for key, want := range map[string]string{"rx-max": monCh["max RX"], "tx-max": monCh["max TX"], "rx-count": monCh["RX"], "tx-count": monCh["TX"]} {
				if got := fmt.Sprint(ch[key]); got != want {
					t.Errorf("channels-ntf %s = %s, ethtool --monitor says %s", key, got, want)
				}
			}
			for _, key := range []string{"other-max", "combined-max", "other-count", "combined-count"} {
				if v, ok := ch[key]; ok && fmt.Sprint(v) != "0" {
					t.Errorf("channels-ntf %s = %v, ethtool --monitor says n/a", key, v)
				}
			}

			// features-ntf, against "Features for va:": every feature the
			// kernel names (its ETH_SS_FEATURES strings) on or off alike.
			natstest.WaitFor(t, 10*time.Second, "features-ntf", func() bool { return len(opEvents(col, "features-ntf")) > 0 })
			ft := fields(t, &opEvents(col, "features-ntf")[0])
			active := bitsetBits(t, ft["active"], len(names))
			monFeatures := parseFeatures(mon.String())
			compared := 0
			for i, n := range names {
				want, ok := monFeatures[n]
				if !ok {
					continue
				}
				compared++
				if active[i] != want {
					t.Errorf("feature %s (bit %d): features-ntf says active %v, ethtool --monitor says %v", n, i, active[i], want)
				}
			}
			if compared < 30 || !active[indexOf(names, "rx-gro")] {
				t.Errorf("compared %d features; rx-gro active %v, want it on (ethtool -K va gro on)", compared, active[indexOf(names, "rx-gro")])
			}
			t.Logf("channels-ntf %v; features-ntf: %d features compared with ethtool --monitor, rx-gro on", ch, compared)
		})
	}
	sameDecoding(t, cols, "channels-ntf")
	sameDecoding(t, cols, "features-ntf")
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// parseChannels reads ethtool --monitor's last "Channel parameters"
// block: "max RX", "max TX" (pre-set maximums) and "RX", "TX" (current).
func parseChannels(t *testing.T, out string) map[string]string {
	t.Helper()
	i := strings.LastIndex(out, "Channel parameters for va:")
	if i < 0 {
		t.Fatalf("ethtool --monitor printed no channel parameters:\n%s", out)
	}
	m := map[string]string{}
	prefix := ""
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		switch {
		case strings.HasPrefix(line, "Pre-set maximums:"):
			prefix = "max "
		case strings.HasPrefix(line, "Current hardware settings:"):
			prefix = ""
		case strings.Contains(line, ":"):
			k, v, _ := strings.Cut(line, ":")
			if k == "RX" || k == "TX" {
				m[prefix+k] = strings.TrimSpace(v)
			}
		}
		if line == "" && len(m) > 0 {
			break
		}
	}
	return m
}

var featureLine = regexp.MustCompile(`^\s*([a-z0-9_-]+): (on|off)`)

// parseFeatures reads ethtool --monitor's first "Features for" block.
func parseFeatures(out string) map[string]bool {
	m := map[string]bool{}
	i := strings.Index(out, "Features for va:")
	if i < 0 {
		return m
	}
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		if line == "" {
			break
		}
		if f := featureLine.FindStringSubmatch(line); f != nil {
			m[f[1]] = f[2] == "on"
		}
	}
	return m
}

// bitsetBits reads an ethtool bitset as notifications carry it (compact:
// "size" and "value" as 32-bit words) into one bool per bit.
func bitsetBits(t *testing.T, v any, n int) []bool {
	t.Helper()
	bs, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("bitset %v", v)
	}
	out := make([]bool, max(n, 1))
	switch words := bs["value"].(type) {
	case []any:
		for i := range out {
			if i/32 < len(words) {
				out[i] = uint32(words[i/32].(float64))>>(i%32)&1 != 0
			}
		}
	case string: // a hex string, when the spec has the value as plain binary
		b := make([]byte, len(words)/2)
		for i := range b {
			x, _ := strconv.ParseUint(words[2*i:2*i+2], 16, 8)
			b[i] = byte(x)
		}
		for i := range out {
			if w := i / 32; 4*w+3 < len(b) {
				word := uint32(b[4*w]) | uint32(b[4*w+1])<<8 | uint32(b[4*w+2])<<16 | uint32(b[4*w+3])<<24
				out[i] = word>>(i%32)&1 != 0
			}
		}
	default:
		t.Fatalf("bitset value %T %v", bs["value"], bs["value"])
	}
	return out
}

// featureNames asks the kernel for the names of the device's feature bits
// (ethtool's string set ETH_SS_FEATURES, index = bit), which is how ethtool
// --monitor names the bits of features-ntf's bitsets too.
func featureNames(t *testing.T, ns *netnstest.NS, dev string) []string {
	t.Helper()
	const (
		msgStrsetGet   = 1 // ETHTOOL_MSG_STRSET_GET
		aStrsetHeader  = 1 // ETHTOOL_A_STRSET_HEADER
		aStrsetSets    = 2 // ETHTOOL_A_STRSET_STRINGSETS
		aHeaderDevName = 2 // ETHTOOL_A_HEADER_DEV_NAME
		aSetsSet       = 1 // ETHTOOL_A_STRINGSETS_STRINGSET
		aSetID         = 1 // ETHTOOL_A_STRINGSET_ID
		aSetStrings    = 3 // ETHTOOL_A_STRINGSET_STRINGS
		aStringsString = 1 // ETHTOOL_A_STRINGS_STRING
		aStringIndex   = 1 // ETHTOOL_A_STRING_INDEX
		aStringValue   = 2 // ETHTOOL_A_STRING_VALUE
		ethSSFeatures  = 4 // ETH_SS_FEATURES
	)
	c, err := genetlink.Dial(&netlink.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.GetFamily("ethtool")
	if err != nil {
		t.Fatal(err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(aStrsetHeader, func(n *netlink.AttributeEncoder) error { n.String(aHeaderDevName, dev); return nil })
	ae.Nested(aStrsetSets, func(n *netlink.AttributeEncoder) error {
		n.Nested(aSetsSet, func(n *netlink.AttributeEncoder) error { n.Uint32(aSetID, ethSSFeatures); return nil })
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Execute(genetlink.Message{Header: genetlink.Header{Command: msgStrsetGet, Version: f.Version}, Data: data}, f.ID, netlink.Request)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ethtool string set of %s: %d replies, %v", dev, len(msgs), err)
	}
	var names []string
	set := func(i int, v string) {
		for len(names) <= i {
			names = append(names, "")
		}
		names[i] = v
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		if ad.Type() != aStrsetSets {
			continue
		}
		ad.Nested(func(sets *netlink.AttributeDecoder) error {
			for sets.Next() {
				sets.Nested(func(st *netlink.AttributeDecoder) error {
					for st.Next() {
						if st.Type() != aSetStrings {
							continue
						}
						st.Nested(func(strs *netlink.AttributeDecoder) error {
							for strs.Next() {
								strs.Nested(func(str *netlink.AttributeDecoder) error {
									idx, val := -1, ""
									for str.Next() {
										switch str.Type() {
										case aStringIndex:
											idx = int(str.Uint32())
										case aStringValue:
											val = str.String()
										}
									}
									if idx >= 0 {
										set(idx, val)
									}
									return nil
								})
							}
							return nil
						})
					}
					return nil
				})
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil || len(names) < 30 {
		t.Fatalf("ethtool string set of %s: %d names, %v", dev, len(names), err)
	}
	return names
}

// inNetns runs fn on a thread in ns, locked there for fn's duration and
// then let end.
func inNetns(t *testing.T, ns *netnstest.NS, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setns(ns.FD(), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var mptcpLine = regexp.MustCompile(`^\[\s*([A-Z_]+)\] (.*)$`)

// TestYNLMPTCP: the path manager's events of one MPTCP connection over
// loopback (socket protocol 262), created, established and closed for
// both ends, with their token, addresses and ports, compared with what
// ip mptcp monitor prints of them.
func TestYNLMPTCP(t *testing.T) {
	ns := netnstest.Need(t)
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-q", "net.mptcp.enabled=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl net.mptcp.enabled=1: %v: %s", err, out)
	}
	cols := ynlBridges(t, ns, "embedded/mptcp_pm.yaml", "mptcp_pm/mptcp_pm_events")
	mon := toolMonitor(t, ns, "", "ip", "mptcp", "monitor")
	var mptcp bool
	inNetns(t, ns, func() {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
			return
		}
		defer l.Close()
		var d net.Dialer
		d.SetMultipathTCP(true)
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		s, err := l.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = c.Write([]byte("hi"))
		buf := make([]byte, 2)
		_, _ = s.Read(buf)
		mptcp, _ = c.(*net.TCPConn).MultipathTCP()
		time.Sleep(100 * time.Millisecond)
		c.Close()
		s.Close()
	})
	if !mptcp {
		t.Fatal("the connection fell back to plain TCP: no MPTCP in this kernel?")
	}
	for name, col := range cols {
		t.Run(name, func(t *testing.T) {
			for _, op := range []string{"created", "established", "closed"} {
				natstest.WaitFor(t, 10*time.Second, "two "+op+" events", func() bool { return len(opEvents(col, op)) >= 2 })
			}
			natstest.WaitFor(t, 10*time.Second, "ip mptcp monitor's CLOSED lines", func() bool {
				return strings.Count(mon.String(), "CLOSED]") >= 2
			})
			// ip mptcp monitor's lines by event and token.
			tool := map[string]map[string]string{}
			sc := bufio.NewScanner(strings.NewReader(mon.String()))
			for sc.Scan() {
				m := mptcpLine.FindStringSubmatch(sc.Text())
				if m == nil {
					continue
				}
				kv := map[string]string{}
				for _, w := range strings.Fields(m[2]) {
					k, v, _ := strings.Cut(w, "=")
					kv[k] = v
				}
				tool[strings.ToLower(m[1])+" "+kv["token"]] = kv
			}
			compared := 0
			for _, op := range []string{"created", "established", "closed"} {
				for _, e := range opEvents(col, op) {
					f := fields(t, &e)
					token := fmt.Sprintf("%08x", uint32(f["token"].(float64))) // as ip mptcp monitor prints it
					kv, ok := tool[op+" "+token]
					if !ok {
						t.Errorf("%s token %s: ip mptcp monitor printed no such event:\n%s", op, token, mon.String())
						continue
					}
					for tk, ours := range map[string]string{"saddr4": "saddr4", "daddr4": "daddr4", "sport": "sport", "dport": "dport",
						"remid": "rem-id", "locid": "loc-id"} {
						want, has := kv[tk]
						if !has {
							continue
						}
						if got := fmt.Sprint(normalizeIPv4(f[ours])); got != want {
							t.Errorf("%s token %s: %s = %s, ip mptcp monitor says %s=%s", op, token, ours, got, tk, want)
						}
						compared++
					}
				}
			}
			if compared < 20 {
				t.Errorf("only %d fields compared with ip mptcp monitor", compared)
			}
			ev := opEvents(col, "created")[0]
			t.Logf("%d fields equal to ip mptcp monitor's; e.g. %s %s", compared, ev.Op, ev.Fields)
		})
	}
	for _, op := range []string{"created", "established", "closed"} {
		sameDecoding(t, cols, op)
	}
}
