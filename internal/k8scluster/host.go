//go:build linux

package k8scluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// hostState is what the cluster could change on the host and must not
// leave changed: the kubelet's sysctls, mounts under the cluster's
// directory, its cgroups, iptables rules a kubelet or a CNI plugin makes,
// and the directories its components write to by default.
type hostState struct {
	sysctls  map[string]string
	mounts   []string
	cgroups  []string
	iptables []string
	paths    []string // of defaultPaths, those that exist
}

// defaultPaths are where the components, kubectl and mount(8) write when
// not told otherwise: none may appear on the host.
var defaultPaths = []string{"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods",
	"/var/log/containers", "/run/containerd", "/run/mount", "/etc/kubernetes", "/etc/cni", "/opt/cni",
	"/var/run/kubernetes", "/root/.kube"}

func snapshotHost(cgroupRoot, dir string) hostState {
	s := hostState{sysctls: map[string]string{}}
	for _, name := range Sysctls {
		if b, err := os.ReadFile("/proc/sys/" + name); err == nil {
			s.sysctls[name] = strings.TrimSpace(string(b))
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && (strings.HasPrefix(fields[4], dir) || strings.Contains(fields[4], "containerd") || strings.Contains(fields[4], "kubelet")) {
				s.mounts = append(s.mounts, fields[4])
			}
		}
		f.Close()
	}
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, cgroupRoot)); err == nil {
			s.cgroups = append(s.cgroups, filepath.Join(h, cgroupRoot))
		}
	}
	for _, p := range defaultPaths {
		if _, err := os.Lstat(p); err == nil {
			s.paths = append(s.paths, p)
		}
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(tool).Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "KUBE") || strings.Contains(l, "CNI") {
				s.iptables = append(s.iptables, tool+": "+l)
			}
		}
	}
	return s
}

// diff says what after has that s had not, or changed.
func (s hostState) diff(after hostState) string {
	var b strings.Builder
	for name, v := range s.sysctls {
		if after.sysctls[name] != v {
			fmt.Fprintf(&b, "sysctl %s: %s, was %s\n", name, after.sysctls[name], v)
		}
	}
	for _, m := range after.mounts {
		if !slices.Contains(s.mounts, m) {
			fmt.Fprintf(&b, "mount left: %s\n", m)
		}
	}
	for _, c := range after.cgroups {
		if !slices.Contains(s.cgroups, c) {
			fmt.Fprintf(&b, "cgroup left: %s\n", c)
		}
	}
	for _, p := range after.paths {
		if !slices.Contains(s.paths, p) {
			fmt.Fprintf(&b, "made on the host: %s\n", p)
		}
	}
	for _, r := range after.iptables {
		if !slices.Contains(s.iptables, r) {
			fmt.Fprintf(&b, "iptables rule or chain left: %s\n", r)
		}
	}
	return b.String()
}
