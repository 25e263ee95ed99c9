package ynl

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// kernelSpecDir is where Debian's linux-doc-6.12 puts the kernel's specs.
const kernelSpecDir = "/usr/share/doc/linux-doc-6.12/Documentation/netlink/specs"

// uapiDir holds the kernel's UAPI headers of the same version.
const uapiDir = "/usr/src/linux-headers-6.12.117+deb12-common/include/uapi/linux"

func readSpecFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := ReadSpecFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kernelSpecs(t testing.TB) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(kernelSpecDir, "*.yaml*"))
	if len(files) == 0 {
		t.Skipf("no kernel specs in %s (install linux-doc-6.12)", kernelSpecDir)
	}
	return files
}

// kernelFamily parses and compiles one of the kernel's specs.
func kernelFamily(t testing.TB, name string, ov *Override) *Family {
	t.Helper()
	path := filepath.Join(kernelSpecDir, name+".yaml.gz")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no kernel spec %s", path)
	}
	s, err := ParseSpec(path, readSpecFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(s, ov)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKernelSpecsCompile(t *testing.T) {
	for _, path := range kernelSpecs(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s, err := ParseSpec(path, readSpecFile(t, path))
			if err != nil {
				t.Fatal(err)
			}
			f, err := Compile(s, nil)
			if s.Protocol == ProtocolNetlinkRaw {
				if !errors.Is(err, ErrUnsupportedProtocol) {
					t.Fatalf("netlink-raw spec compiled: %v", err)
				}
				t.Skip("netlink-raw")
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Name != s.Name || f.Name == "" {
				t.Fatalf("family %q", f.Name)
			}
			t.Logf("%s: %d groups %v, %d notifications", f.Name, len(f.Groups()), f.Groups(), len(f.Notifications()))
		})
	}
}

// uapiEnum reads the values of the enum in header that contains first
// (counting as C does) into name -> value.
func uapiEnum(t *testing.T, header, first string) map[string]int64 {
	t.Helper()
	f, err := os.Open(filepath.Join(uapiDir, header))
	if err != nil {
		t.Skipf("no UAPI header: %v", err)
	}
	defer f.Close()
	entry := regexp.MustCompile(`^\s*([A-Z0-9_]+)\s*(?:=\s*([0-9A-Za-z_x]+))?\s*,?`)
	out := map[string]int64{}
	in := false
	next := int64(0)
	sc := bufio.NewScanner(f)
	cont := false // in a preprocessor line continued with a backslash
	for sc.Scan() {
		line := sc.Text()
		if cont || strings.HasPrefix(strings.TrimSpace(line), "#") {
			cont = strings.HasSuffix(strings.TrimSpace(line), "\\")
			continue
		}
		if !in {
			if strings.Contains(line, first) && !strings.HasPrefix(strings.TrimSpace(line), "*") {
				in = true
			} else {
				continue
			}
		}
		if strings.Contains(line, "}") {
			break
		}
		m := entry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] != "" {
			v, err := strconv.ParseInt(m[2], 0, 64)
			if err != nil {
				if pv, ok := out[m[2]]; ok {
					v = pv
				} else {
					continue // an expression: a *_MAX
				}
			}
			next = v
		}
		out[m[1]] = next
		next++
	}
	if len(out) == 0 {
		t.Fatalf("no enum with %s in %s", first, header)
	}
	return out
}

// cName is the UAPI name of a spec name.
func cName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_").Replace(name))
}

func TestKernelNumbering(t *testing.T) {
	t.Run("netdev", func(t *testing.T) {
		f := kernelFamily(t, "netdev", nil)
		cmds := uapiEnum(t, "netdev.h", "NETDEV_CMD_DEV_GET")
		attrs := uapiEnum(t, "netdev.h", "NETDEV_A_DEV_IFINDEX")
		if cmds["NETDEV_CMD_DEV_ADD_NTF"] != 2 || attrs["NETDEV_A_DEV_IFINDEX"] != 1 {
			t.Fatalf("header parse: %v %v", cmds, attrs)
		}
		for _, n := range f.Notifications() {
			if want := cmds[cName("NETDEV_CMD_", n.Op)]; int64(n.Cmd) != want {
				t.Errorf("%s/%s: cmd %d, header %d", n.Group, n.Op, n.Cmd, want)
			}
		}
		if m := f.Lookup("mgmt", 2); m == nil || m.Name != "dev-add-ntf" {
			t.Fatalf("mgmt/2 = %v", m)
		}
		if m := f.Lookup("page-pool", 2); m != nil {
			t.Fatalf("page-pool/2 = %s", m.Name)
		}
		checkAttrs(t, f, "dev", attrs, "NETDEV_A_DEV_")
	})
	t.Run("ethtool", func(t *testing.T) {
		f := kernelFamily(t, "ethtool", nil)
		ids := uapiEnum(t, "ethtool_netlink.h", "ETHTOOL_MSG_KERNEL_NONE")
		n := 0
		for _, nt := range f.Notifications() {
			want, ok := ids[cName("ETHTOOL_MSG_", nt.Op)]
			if !ok {
				t.Errorf("%s not in the header", nt.Op)
				continue
			}
			if int64(nt.Cmd) != want {
				t.Errorf("%s: cmd %d, header %d", nt.Op, nt.Cmd, want)
			}
			n++
		}
		if n < 15 {
			t.Fatalf("only %d notifications", n)
		}
		for _, c := range []struct {
			op  string
			cmd uint8
		}{{"features-ntf", 13}, {"channels-ntf", 19}, {"linkinfo-ntf", 3}, {"linkmodes-ntf", 5}} {
			if int64(c.cmd) != ids[cName("ETHTOOL_MSG_", c.op)] {
				t.Fatalf("%s: header says %d", c.op, ids[cName("ETHTOOL_MSG_", c.op)])
			}
			// No mcgrp in 6.12: found on any group, "monitor" included.
			if m := f.Lookup("monitor", c.cmd); m == nil || m.Name != c.op {
				t.Errorf("monitor/%d = %v, want %s", c.cmd, m, c.op)
			}
		}
		// Replies are not notifications: 1 is strset-get's reply.
		if m := f.Lookup("monitor", 1); m != nil {
			t.Errorf("monitor/1 = %s", m.Name)
		}
		// The request ids count apart (ETHTOOL_MSG_*_SET in the user-to-kernel enum).
		req := uapiEnum(t, "ethtool_netlink.h", "ETHTOOL_MSG_USER_NONE")
		s, _ := ParseSpec("ethtool", readSpecFile(t, filepath.Join(kernelSpecDir, "ethtool.yaml.gz")))
		for _, op := range s.Operations.List {
			name := cName("ETHTOOL_MSG_", op.Name)
			if op.ReqValue >= 0 && req[name] != op.ReqValue {
				t.Errorf("%s: request id %d, header %d", op.Name, op.ReqValue, req[name])
			}
			if op.HasReply {
				if want := ids[name+"_REPLY"]; op.RspValue != want {
					t.Errorf("%s: reply id %d, header %d", op.Name, op.RspValue, want)
				}
			}
		}
		checkAttrs(t, f, "channels", uapiEnum(t, "ethtool_netlink.h", "ETHTOOL_A_CHANNELS_UNSPEC"), "ETHTOOL_A_CHANNELS_")
	})
	t.Run("mptcp_pm", func(t *testing.T) {
		f := kernelFamily(t, "mptcp_pm", nil)
		s, _ := ParseSpec("mptcp_pm", readSpecFile(t, filepath.Join(kernelSpecDir, "mptcp_pm.yaml.gz")))
		cmds := uapiEnum(t, "mptcp_pm.h", "MPTCP_PM_CMD_UNSPEC")
		for _, op := range s.Operations.List {
			if want := cmds[cName("MPTCP_PM_CMD_", op.Name)]; op.RspValue != want {
				t.Errorf("%s: id %d, header %d", op.Name, op.RspValue, want)
			}
		}
		events := uapiEnum(t, "mptcp_pm.h", "MPTCP_EVENT_UNSPEC")
		for _, d := range s.Definitions {
			if d.Name != "event-type" {
				continue
			}
			for _, e := range d.Entries {
				if want := events[cName("MPTCP_EVENT_", e.Name)]; e.Value != want {
					t.Errorf("event %s: %d, header %d", e.Name, e.Value, want)
				}
			}
		}
		checkAttrs(t, f, "event-attr", uapiEnum(t, "mptcp_pm.h", "MPTCP_ATTR_UNSPEC"), "MPTCP_ATTR_")
	})
	t.Run("devlink", func(t *testing.T) {
		s, _ := ParseSpec("devlink", readSpecFile(t, filepath.Join(kernelSpecDir, "devlink.yaml.gz")))
		cmds := uapiEnum(t, "devlink.h", "DEVLINK_CMD_UNSPEC")
		// Directional, but devlink's ids are one enum: each op's request
		// and reply ids are DEVLINK_CMD_<op> (get) and the NEW reply.
		for _, op := range s.Operations.List {
			if want, ok := cmds[cName("DEVLINK_CMD_", op.Name)]; ok && op.ReqValue != want {
				t.Errorf("%s: request id %d, header %d", op.Name, op.ReqValue, want)
			}
		}
	})
	t.Run("nlctrl", func(t *testing.T) {
		s, _ := ParseSpec("nlctrl", readSpecFile(t, filepath.Join(kernelSpecDir, "nlctrl.yaml.gz")))
		for _, op := range s.Operations.List {
			if op.Name == "getfamily" && (op.ReqValue != 3 || op.RspValue != 1) {
				t.Errorf("getfamily: %d/%d, want 3/1 (CTRL_CMD_GETFAMILY/NEWFAMILY)", op.ReqValue, op.RspValue)
			}
		}
	})
}

// checkAttrs compares a set's attribute numbers with the header's.
func checkAttrs(t *testing.T, f *Family, set string, hdr map[string]int64, prefix string) {
	t.Helper()
	cs := f.sets[set]
	if cs == nil {
		t.Fatalf("no message with set %s", set)
	}
	n := 0
	for num, a := range cs.attrs {
		if a == nil {
			continue
		}
		want, ok := hdr[cName(prefix, a.name)]
		if !ok {
			t.Errorf("%s%s not in the header", prefix, a.name)
			continue
		}
		if int64(num) != want {
			t.Errorf("%s: %d, header %d", a.name, num, want)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("set %s: nothing compared", set)
	}
}
