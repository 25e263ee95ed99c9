//go:build linux

// Package netnstest creates throwaway network namespaces for tests and
// benchmarks that talk to the real kernel. Each namespace is named, so that
// the ip tool can add links to it, and is deleted by its cleanup.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

var counter atomic.Uint64

// NS is a network namespace created with `ip netns add`.
type NS struct {
	Name string
	Path string // /run/netns/<Name>
	File *os.File
}

// FD is the namespace's file descriptor, for netlink.Config.NetNS.
func (n *NS) FD() int { return int(n.File.Fd()) }

// IP runs `ip -n <ns> args...`.
func (n *NS) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Close deletes the namespace.
func (n *NS) Close() error {
	n.File.Close()
	out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
	return nil
}

// New creates a namespace named after prefix, the process and a counter.
func New(prefix string) (*NS, error) {
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), counter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	path := "/run/netns/" + name
	f, err := os.Open(path)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return &NS{Name: name, Path: path, File: f}, nil
}

// Need skips t unless it runs as root with the ip tool, and returns a fresh
// namespace deleted at the end of the test.
func Need(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network namespace; run as root: sudo make test")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip tool (iproute2) to create a network namespace")
	}
	ns, err := New("genlbridge")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}
