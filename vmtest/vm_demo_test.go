//go:build vmhost

package vmtest

// `make demo`: the test binary built with tag vmhost, run as
//
//	VM_DEMO=1 build/vm/vmhost.test
//
// boots one kernel (VM_DEMO_KVER, default the first of VM_KVERS) with
// vmtest_mode=demo, so that /init runs DemoScript instead of the tests, and
// prints the guest's lines as they come, without the kernel's or the
// firmware's. It exits 0 when the script did.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("VM_DEMO") == "1" {
		os.Exit(demo())
	}
	os.Exit(m.Run())
}

// kernelLineRe matches the kernel's console lines ("[   12.600000] ...").
var kernelLineRe = regexp.MustCompile(`^\s*\[\s*[0-9]+\.[0-9]+\]`)

func demo() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "make demo: "+format+"\n", args...)
		return 1
	}
	c, err := readConfig()
	if err != nil {
		return fail("%v", err)
	}
	kver := os.Getenv("VM_DEMO_KVER")
	if kver == "" {
		if k := strings.Fields(os.Getenv("VM_KVERS")); len(k) > 0 {
			kver = k[0]
		} else {
			return fail("set VM_DEMO_KVER or VM_KVERS")
		}
	}
	kdir := filepath.Join(c.dir, kver)
	vmlinuz, ko := filepath.Join(kdir, "vmlinuz"), filepath.Join(kdir, "genl_exmpl.ko")
	for _, p := range []string{vmlinuz, ko, c.bridge, c.bb} {
		if _, err := os.Stat(p); err != nil {
			return fail("%v (run make vm-kernels build)", err)
		}
	}
	initrd := filepath.Join(kdir, "demo.cpio")
	files := map[string]string{GuestKoPath: ko, GuestBridgePath: c.bridge}
	if err := writeInitramfs(initrd, c.bb, InitScript, files, map[string][]byte{GuestDemoPath: []byte(DemoScript)}); err != nil {
		return fail("%v", err)
	}
	accel := c.accel
	if accel == "auto" {
		accel = "tcg" // the probe needs a *testing.T; the demo is short anyway
	}
	fmt.Printf("==> booting Debian 12's kernel %s in qemu (%s), with genl_exmpl.ko and %s inside\n", kver, accel, relPath(c.root, c.bridge))
	logPath := filepath.Join(kdir, "demo-console.log")
	started := false
	onLine := func(line string) {
		switch {
		case strings.Contains(line, InitMarker):
			started = true
			if m := uptimeRe.FindStringSubmatch(line); m != nil {
				fmt.Printf("%s | booted, /init running (guest uptime %ss)\n", DemoPrefix, m[1])
			}
		case !started, strings.Contains(line, DoneMarker):
		case kernelLineRe.MatchString(line) && !panicRe.MatchString(line) && !strings.Contains(line, "WARNING"):
		default:
			fmt.Println(line)
		}
	}
	quiet := func(string, ...any) {}
	// loglevel=3 keeps the kernel's warnings (such as the out-of-tree
	// module's taint) off the console; errors still show.
	r, err := runQEMU(quiet, onLine, c, accel, vmlinuz, initrd, logPath, 5*time.Minute, []string{"vmtest_mode=demo", "loglevel=3"})
	if err == nil {
		switch {
		case !r.guest.InitSeen:
			err = fmt.Errorf("the guest never reached /init")
		case r.guest.Panic != "":
			err = fmt.Errorf("the guest kernel crashed: %s", r.guest.Panic)
		case !r.guest.Done:
			err = fmt.Errorf("the demo did not finish")
		case r.guest.RC != 0:
			err = fmt.Errorf("the demo script failed (exit status %d)", r.guest.RC)
		}
	}
	if err != nil {
		return fail("%v; console log %s, its last lines:\n%s", err, logPath, tail(logPath, 40))
	}
	fmt.Printf("\n==> VM powered off; %.1fs in all (boot %.1fs)\n", r.total.Seconds(), r.initAt.Seconds())
	return 0
}

func relPath(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
