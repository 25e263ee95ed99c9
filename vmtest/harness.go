// Package vmtest tests the genl_exmpl kernel module (kmod/) inside qemu,
// against the real kernels Debian 12 ships, since a container cannot load
// kernel modules.
//
// The package has three kinds of test file:
//
//   - vm_host_test.go (build tag vmhost) runs on the host: for each kernel it
//     writes an initramfs (busybox, genl_exmpl.ko built for that kernel, the
//     guest test binary and, when it exists, build/genlbridge), boots it in
//     qemu, keeps the serial console in build/vm/<kver>/console.log and fails
//     when the guest's tests failed or the guest hung. `make vm-test` runs it.
//   - vm_guest_test.go and vm_bridge_test.go (build tag vmtest) are compiled
//     into a static test binary that the initramfs's /init runs as root
//     inside the VM: the module with raw generic netlink sockets, and the
//     real bridge (/genlbridge run, its embedded NATS) with a NATS subscriber.
//   - harness_test.go (no tag) tests this file's helpers on the host.
//
// This file holds what the host side needs: an initramfs (cpio "newc")
// writer, the /init script and the parser of the guest's console output.
package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Markers that /init prints on the console. The host looks for them.
const (
	// InitMarker starts the line /init prints first, with the uptime.
	InitMarker = "VMTEST-INIT"
	// DoneMarker starts the line /init prints after the guest tests, with
	// their exit code.
	DoneMarker = "VMTEST-DONE"
	// MetricMarker starts a line of measurements printed by a guest test.
	MetricMarker = "VMTEST-METRIC"
	// PowerButtonMarker is a guest test asking the host to press the VM's
	// ACPI power button (qemu's system_powerdown, through its monitor).
	PowerButtonMarker = "VMTEST-PRESS-POWER-BUTTON"
)

// Paths inside the initramfs.
const (
	GuestTestPath = "/vmtest.test"
	GuestKoPath   = "/genl_exmpl.ko"
	// GuestBridgePath holds the bridge binary when build/genlbridge existed
	// when the initramfs was made.
	GuestBridgePath = "/genlbridge"
	// GuestDemoPath holds DemoScript.
	GuestDemoPath = "/demo.sh"
	// GuestButtonPath holds the kernel's ACPI button driver (button.ko),
	// when vm.sh fetched it.
	GuestButtonPath = "/button.ko"
	// GuestDiskModules holds the modules a virtio disk with ext4 needs,
	// and their load order (a file "order"), for the power-loss test.
	GuestDiskModules = "/mods"
	// GuestKernelSpecs holds the kernel's YNL specs (Debian's
	// linux-doc-6.12), in the 6.12 kernel's VM only: the 6.1 one has none.
	GuestKernelSpecs = "/usr/share/doc/linux-doc-6.12/Documentation/netlink/specs"
)

// InitScript is the initramfs's /init. Kernel command-line words without a
// dot reach it as environment variables: vmtest_timeout (go test -timeout),
// vmtest_run (go test -run, no spaces), vmtest_probe=1 (print the
// markers and power off at once, used to probe KVM) and vmtest_mode=demo
// (run DemoScript instead of the tests: make demo). The guest tests read
// vmtest_rcvbuf (TestBridgeBurst's receive buffer, or "default"),
// and vmtest_bridge_env (GENLBRIDGE_*=... settings for every bridge, comma-
// separated); pass them with VM_APPEND.
const InitScript = `#!/bin/sh
export PATH=/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# A tmpfs that reports room: the embedded NATS server sizes JetStream's
# file store from the free space of its directory, and rootfs reports none.
mount -t tmpfs -o size=4g,mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
ip link set lo up
hostname vmtest
echo "` + InitMarker + ` uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
if [ "$vmtest_probe" = 1 ]; then
	echo "` + DoneMarker + ` rc=0 uptime=$(cut -d' ' -f1 /proc/uptime)"
	poweroff -f
fi
cd /
if [ "$vmtest_mode" = demo ]; then
	` + GuestDemoPath + `
	echo "` + DoneMarker + ` rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
	poweroff -f
fi
export VMTEST_GUEST=1 GENL_EXMPL_KO=` + GuestKoPath + `
if [ -n "$vmtest_run" ]; then
	` + GuestTestPath + ` -test.v -test.timeout "${vmtest_timeout:-20m}" -test.run "$vmtest_run"
else
	` + GuestTestPath + ` -test.v -test.timeout "${vmtest_timeout:-20m}"
fi
rc=$?
echo "` + DoneMarker + ` rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
`

// DemoPrefix starts every line DemoScript prints.
const DemoPrefix = "demo"

// DemoScript is what `make demo` runs in the VM (GuestDemoPath): the module
// with a 1 s period, `genlbridge run` with its embedded NATS server, five
// periodic events shown by `genlbridge tail`, then `genlbridge send burst
// 10000` and how many of its events the bridge published and how many it
// reported lost. It exits non-zero if anything fails.
const DemoScript = `#!/bin/sh
N=10000
BIN=` + GuestBridgePath + `
export GENLBRIDGE_DATA_DIR=/tmp/genlbridge
step() { echo; echo "==> $*"; }
say() { echo "` + DemoPrefix + ` | $*"; }
fail() { say "FAILED: $*"; [ -f /tmp/bridge.log ] && sed 's/^/bridge | /' /tmp/bridge.log; exit 1; }
prefix() { sed "s/^/$1 | /"; }
# The bridge's log lines without their timestamp.
bridgelog() { sed -e 's/^time=[^ ]* //' -e 's/^/bridge | /'; }
now() { cut -d' ' -f1 /proc/uptime; }

step "insmod genl_exmpl.ko period_ms=1000   (Debian 12 kernel $(uname -r), in qemu)"
insmod ` + GuestKoPath + ` period_ms=1000 || fail "insmod"
say "module CONTROL_EXMPL loaded: an event every second, and on request"

step "genlbridge run &   (embedded NATS server on 127.0.0.1:4222, default settings)"
$BIN run >/tmp/bridge.log 2>&1 &
bridge=$!
i=0
until grep -q 'msg=joined' /tmp/bridge.log; do
	kill -0 $bridge 2>/dev/null || fail "genlbridge run exited"
	i=$((i + 1)); [ $i -le 300 ] || fail "the bridge did not join EXMPL_GRP within 30s"
	sleep 0.1
done
bridgelog </tmp/bridge.log

step "genlbridge tail --count 5   (the periodic events, as NATS subscribers see them)"
$BIN tail --count 5 --timeout 30s 2>&1 | prefix tail

step "genlbridge send burst $N   (the module sends $N events as fast as it can)"
$BIN tail --json >/tmp/burst.json 2>/dev/null &
rawtail=$!
$BIN tail >/tmp/burst.txt 2>/dev/null &
texttail=$!
sleep 0.5
t0=$(now)
$BIN send burst $N 2>&1 | prefix send
# Received: the burst's events; lost: what the bridge's loss records count.
i=0 got=0 lost=0
while :; do
	got=$(grep -c '"msg":"burst [0-9]* of '$N'"' /tmp/burst.json)
	lost=$(grep '"type":"loss"' /tmp/burst.json | sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
	[ $((got + lost)) -ge $N ] && break
	i=$((i + 1)); [ $i -le 600 ] || break
	sleep 0.1
done
t1=$(now)
sleep 0.3
kill $rawtail $texttail 2>/dev/null
wait $rawtail $texttail 2>/dev/null
grep 'burst [0-9]* of' /tmp/burst.txt | head -n 3 | prefix tail
echo "tail | ..."
grep 'burst [0-9]* of' /tmp/burst.txt | tail -n 2 | prefix tail
grep 'LOSS' /tmp/burst.txt | head -n 5 | prefix tail
secs=$(awk -v a=$t0 -v b=$t1 'BEGIN {printf "%.1f", b - a}')
rate=$(awk -v n=$got -v a=$t0 -v b=$t1 'BEGIN {if (b > a) printf "%.0f", n / (b - a); else print "?"}')
say "burst of $N: $got events received + $lost reported lost = $((got + lost)) of $N, in ${secs}s (about $rate events/s through the bridge and NATS in this emulated VM)"

step "kill -TERM genlbridge   (it delivers what is queued, then stops)"
kill -TERM $bridge
wait $bridge
rc=$?
grep -e 'msg=stopped' /tmp/bridge.log | bridgelog
[ $rc = 0 ] || fail "genlbridge run exited with $rc"
rmmod genl_exmpl || fail "rmmod"
if dmesg | grep -E '\bWARNING\b|\bBUG\b|\bOops\b|[Cc]all [Tt]race'; then fail "the kernel log has warnings"; fi
[ $((got + lost)) = $N ] || fail "received + lost = $((got + lost)), want $N"
step "done: module unloaded, kernel log clean"
`

// CPIO writes a cpio archive in the "newc" format that the kernel unpacks as
// its initramfs. Names are relative to the root, without a leading slash;
// parent directories are added as needed. Errors stick: the first one is
// returned by every later call and by Close.
type CPIO struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

// NewCPIO returns a CPIO that writes to w.
func NewCPIO(w io.Writer) *CPIO {
	return &CPIO{w: bufio.NewWriterSize(w, 1<<20), ino: 1, dirs: map[string]bool{".": true, "": true}}
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

func (c *CPIO) header(name string, mode uint32, size int64, rmajor, rminor uint32) {
	if c.err != nil {
		return
	}
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s: %d bytes is too large", name, size)
		return
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	fields := []uint32{c.ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmajor, rminor, uint32(len(name) + 1), 0}
	c.ino++
	var b strings.Builder
	b.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&b, "%08x", f)
	}
	b.WriteString(name)
	b.WriteByte(0)
	c.write([]byte(b.String()))
	c.pad(int64(b.Len()))
}

func (c *CPIO) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

// pad writes zeros up to the next multiple of four after n bytes.
func (c *CPIO) pad(n int64) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *CPIO) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.Dir(dir, 0o755)
}

// Dir adds a directory and its missing parents.
func (c *CPIO) Dir(name string, perm uint32) {
	name = strings.Trim(name, "/")
	if c.dirs[name] {
		return
	}
	c.parents(name)
	c.dirs[name] = true
	c.header(name, modeDir|perm&0o7777, 0, 0, 0)
}

// File adds a regular file with size bytes read from r.
func (c *CPIO) File(name string, perm uint32, size int64, r io.Reader) {
	name = strings.Trim(name, "/")
	c.parents(name)
	c.header(name, modeFile|perm&0o7777, size, 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.CopyN(c.w, r, size)
	if err != nil {
		c.err = fmt.Errorf("cpio: %s: %d of %d bytes: %w", name, n, size, err)
		return
	}
	c.pad(size)
}

// Bytes adds a regular file holding data.
func (c *CPIO) Bytes(name string, perm uint32, data []byte) {
	c.File(name, perm, int64(len(data)), bytes.NewReader(data))
}

// Symlink adds a symbolic link name pointing to target.
func (c *CPIO) Symlink(name, target string) {
	name = strings.Trim(name, "/")
	c.parents(name)
	c.header(name, modeSymlink|0o777, int64(len(target)), 0, 0)
	c.write([]byte(target))
	c.pad(int64(len(target)))
}

// CharDev adds a character device node, such as dev/console (5, 1), which
// the kernel opens for /init before /init can mount devtmpfs.
func (c *CPIO) CharDev(name string, perm, major, minor uint32) {
	name = strings.Trim(name, "/")
	c.parents(name)
	c.header(name, modeCharDev|perm&0o7777, 0, major, minor)
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (c *CPIO) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}

// GuestResult is what the guest's console output says.
type GuestResult struct {
	// InitSeen: /init started; InitUptime is the guest's uptime then, in s.
	InitSeen   bool
	InitUptime float64
	// Done: /init saw the tests end; RC is the test binary's exit code and
	// DoneUptime the guest's uptime then.
	Done       bool
	RC         int
	DoneUptime float64
	// Test names by outcome, subtests included ("TestA/sub").
	Passed, Failed, Skipped []string
	// Summary is the test binary's last "PASS" or "FAIL" line, if any.
	Summary string
	// Metrics holds the guest's MetricMarker lines, without the marker.
	Metrics []string
	// Panic holds the first kernel panic or oops line, if any.
	Panic string
}

var (
	resultRe = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(`)
	uptimeRe = regexp.MustCompile(`\buptime=([0-9.]+)`)
	rcRe     = regexp.MustCompile(`\brc=(-?[0-9]+)`)
	panicRe  = regexp.MustCompile(`Kernel panic|BUG: |Oops: |general protection fault|kernel BUG at`)
)

// ParseConsole reads the guest's serial console output.
func ParseConsole(r io.Reader) (GuestResult, error) {
	var g GuestResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		// The kernel may print in the middle of a test's line; a marker
		// can still be found anywhere in the line.
		switch {
		case strings.Contains(line, InitMarker):
			g.InitSeen = true
			if m := uptimeRe.FindStringSubmatch(line); m != nil {
				g.InitUptime, _ = strconv.ParseFloat(m[1], 64)
			}
		case strings.Contains(line, DoneMarker):
			g.Done = true
			if m := rcRe.FindStringSubmatch(line); m != nil {
				g.RC, _ = strconv.Atoi(m[1])
			}
			if m := uptimeRe.FindStringSubmatch(line); m != nil {
				g.DoneUptime, _ = strconv.ParseFloat(m[1], 64)
			}
		case strings.Contains(line, MetricMarker):
			_, after, _ := strings.Cut(line, MetricMarker)
			g.Metrics = append(g.Metrics, strings.TrimSpace(after))
		}
		if m := resultRe.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "PASS":
				g.Passed = append(g.Passed, m[2])
			case "FAIL":
				g.Failed = append(g.Failed, m[2])
			case "SKIP":
				g.Skipped = append(g.Skipped, m[2])
			}
		}
		if t := strings.TrimSpace(line); t == "PASS" || t == "FAIL" {
			g.Summary = t
		}
		if g.Panic == "" && panicRe.MatchString(line) {
			g.Panic = line
		}
	}
	return g, sc.Err()
}

// Err says why the guest run failed, or returns nil when it passed: /init ran
// the tests to their end, they exited 0, none failed, at least one passed and
// the kernel did not panic or oops.
func (g GuestResult) Err() error {
	switch {
	case !g.InitSeen:
		return fmt.Errorf("the guest never reached /init")
	case g.Panic != "":
		return fmt.Errorf("the guest kernel crashed: %s", g.Panic)
	case !g.Done:
		return fmt.Errorf("the guest tests did not finish (hung, crashed or timed out)")
	case len(g.Failed) > 0:
		return fmt.Errorf("guest tests failed: %s", strings.Join(g.Failed, ", "))
	case g.RC != 0:
		return fmt.Errorf("the guest test binary exited with %d", g.RC)
	case g.Summary != "PASS":
		return fmt.Errorf("the guest test binary did not print PASS")
	case len(g.Passed) == 0:
		return fmt.Errorf("no guest test passed")
	}
	return nil
}
