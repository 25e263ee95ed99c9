//go:build vmhost

package vmtest

// The host side of the VM test: `make vm-test` runs
//
//	go test -tags vmhost -run TestVM -v -timeout 30m ./vmtest
//
// after `make vm-kernels` and the guest test binary's build. Settings come
// from the environment (mk/vm.mk sets them):
//
//	VM_DIR         build dir, default <repo>/build/vm
//	VM_KVERS       kernel releases to test, default every VM_DIR/*/vmlinuz
//	VM_GUEST_TEST  guest test binary, default VM_DIR/vmtest.test
//	VM_BRIDGE_BIN  bridge binary put in the VM if it exists, default <repo>/build/genlbridge
//	VM_BUSYBOX     static busybox, default /bin/busybox
//	VM_QEMU        default qemu-system-x86_64
//	VM_ACCEL       tcg (default), kvm, or auto (kvm if a short probe boots)
//	VM_TIMEOUT     per VM, default 15m
//	VM_SMP, VM_MEM default 2 and 2048 (MiB): the guest test keeps every
//	               record of a 100,000-event burst and validates each
//	VM_RUN         go test -run pattern for the guest (no spaces)
//	VM_APPEND      more kernel command-line words (see InitScript)
//
// With VM_DEMO=1 the test binary runs the demo instead (vm_demo_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

type vmConfig struct {
	root, dir              string
	guestTest, bridge, bb  string
	qemu, accel            string
	timeout                time.Duration
	smp, mem, run, appendx string
}

func loadConfig(t *testing.T) vmConfig {
	t.Helper()
	c, err := readConfig()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readConfig reads the settings from the environment.
func readConfig() (vmConfig, error) {
	root, err := repoRoot()
	if err != nil {
		return vmConfig{}, err
	}
	dir := env("VM_DIR", filepath.Join(root, "build", "vm"))
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	c := vmConfig{
		root:      root,
		dir:       dir,
		guestTest: env("VM_GUEST_TEST", filepath.Join(dir, "vmtest.test")),
		bridge:    env("VM_BRIDGE_BIN", filepath.Join(root, "build", "genlbridge")),
		bb:        env("VM_BUSYBOX", "/bin/busybox"),
		qemu:      env("VM_QEMU", "qemu-system-x86_64"),
		accel:     env("VM_ACCEL", "tcg"),
		smp:       env("VM_SMP", "2"),
		mem:       env("VM_MEM", "2048"),
		run:       os.Getenv("VM_RUN"),
		appendx:   os.Getenv("VM_APPEND"),
	}
	for _, p := range []*string{&c.guestTest, &c.bridge} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(root, *p)
		}
	}
	if c.timeout, err = time.ParseDuration(env("VM_TIMEOUT", "15m")); err != nil {
		return c, fmt.Errorf("VM_TIMEOUT: %v", err)
	}
	return c, nil
}

func kernels(t *testing.T, dir string) []string {
	if v := strings.Fields(os.Getenv("VM_KVERS")); len(v) > 0 {
		return v
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*", "vmlinuz"))
	var out []string
	for _, p := range m {
		out = append(out, filepath.Base(filepath.Dir(p)))
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("no kernel in %s/*/vmlinuz: run make vm-kernels", dir)
	}
	return out
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestVM(t *testing.T) {
	c := loadConfig(t)
	for _, p := range []string{c.guestTest, c.bb} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (run make vm-deps vm-guest, or make vm-test)", err)
		}
	}
	if _, err := exec.LookPath(c.qemu); err != nil {
		t.Fatalf("%v (run make vm-deps)", err)
	}
	bridge := ""
	if _, err := os.Stat(c.bridge); err == nil {
		bridge = c.bridge
	}
	t.Logf("guest tests %s, bridge %q, accel %s, timeout %v per VM", c.guestTest, bridge, c.accel, c.timeout)

	// One VM at a time: the machine has two cores.
	for _, kver := range kernels(t, c.dir) {
		t.Run(kver, func(t *testing.T) {
			kdir := filepath.Join(c.dir, kver)
			vmlinuz, ko := filepath.Join(kdir, "vmlinuz"), filepath.Join(kdir, "genl_exmpl.ko")
			for _, p := range []string{vmlinuz, ko} {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("%v (run make vm-kernels)", err)
				}
			}
			accel := c.accel
			if accel == "auto" {
				accel = probeKVM(t, c, kdir, vmlinuz)
			}
			initrd := filepath.Join(kdir, "initramfs.cpio")
			files := map[string]string{GuestTestPath: c.guestTest, GuestKoPath: ko}
			if bridge != "" {
				files[GuestBridgePath] = bridge
			}
			if button := filepath.Join(kdir, "button.ko"); exists(button) {
				files[GuestButtonPath[1:]] = button
			}
			// The kernel's own specs in the 6.12 VM (the 6.1 one has none).
			if strings.HasPrefix(kver, "6.12") {
				specs, _ := filepath.Glob(GuestKernelSpecs + "/*.yaml.gz")
				for _, f := range specs {
					files[GuestKernelSpecs[1:]+"/"+filepath.Base(f)] = f
				}
				t.Logf("%d kernel specs from %s in the VM", len(specs), GuestKernelSpecs)
			}
			if err := writeInitramfs(initrd, c.bb, InitScript, files, nil); err != nil {
				t.Fatal(err)
			}
			// The guest's go test times out first, so that its panic
			// (with every goroutine's stack) reaches the console log.
			words := []string{"vmtest_timeout=" + max(c.timeout-30*time.Second, c.timeout/2).String()}
			if c.run != "" {
				words = append(words, "vmtest_run="+c.run)
			}
			if c.appendx != "" {
				words = append(words, c.appendx)
			}
			logPath := filepath.Join(kdir, "console.log")
			r, err := runQEMU(t.Logf, nil, c, accel, vmlinuz, initrd, logPath, c.timeout, words)
			summary := fmt.Sprintf("kernel %s accel %s: boot to /init %.2fs (guest uptime %.2fs), tests %.1fs, VM total %.1fs; %d passed, %d failed, %d skipped",
				kver, accel, r.initAt.Seconds(), r.guest.InitUptime, r.guest.DoneUptime-r.guest.InitUptime,
				r.total.Seconds(), len(r.guest.Passed), len(r.guest.Failed), len(r.guest.Skipped))
			for _, m := range r.guest.Metrics {
				summary += "\n  metric: " + m
			}
			t.Log(summary)
			_ = os.WriteFile(filepath.Join(kdir, "result.txt"), []byte(summary+"\n"), 0o644)
			if err == nil {
				err = r.guest.Err()
			}
			if err != nil {
				t.Errorf("%s: %v\nconsole log %s, last lines:\n%s", kver, err, logPath, tail(logPath, 80))
			}
		})
	}
}

// writeInitramfs writes the initramfs: busybox and its applet links in /bin,
// /init, /dev/console, the files given by their path in the VM (host path)
// and the executable files given by their path in the VM (contents).
func writeInitramfs(out, busybox, init string, files map[string]string, scripts map[string][]byte) error {
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %v", busybox, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	c := NewCPIO(f)
	for _, d := range []string{"bin", "dev", "proc", "sys", "root", "etc"} {
		c.Dir(d, 0o755)
	}
	c.Dir("tmp", 0o1777)
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	if err := addFile(c, "bin/busybox", busybox); err != nil {
		return err
	}
	for _, name := range strings.Fields(string(list)) {
		// A link named busybox would replace the binary: /init then
		// fails with ELOOP (error -40).
		if name != "busybox" && !strings.Contains(name, "/") {
			c.Symlink("bin/"+name, "busybox")
		}
	}
	c.Bytes("init", 0o755, []byte(init))
	for _, name := range sortedKeys(scripts) {
		c.Bytes(name, 0o755, scripts[name])
	}
	for _, name := range sortedKeys(files) {
		if err := addFile(c, name, files[name]); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func addFile(c *CPIO, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c.File(name, uint32(st.Mode().Perm()|0o444), st.Size(), f)
	return nil
}

type vmRun struct {
	guest  GuestResult
	initAt time.Duration // host time from qemu's start to the InitMarker line
	total  time.Duration
}

// runQEMU boots the kernel with the initramfs, copies the serial console to
// logPath and parses it. It fails when qemu cannot run or the timeout passes.
// Each console line goes to onLine if it is not nil; logf gets the qemu
// command line and the lines that matter (markers, test results).
func runQEMU(logf func(string, ...any), onLine func(string), c vmConfig, accel, vmlinuz, initrd, logPath string, timeout time.Duration, words []string) (vmRun, error) {
	return runQEMUWith(logf, onLine, c, accel, vmlinuz, initrd, logPath, timeout, words, nil, nil)
}

// runQEMUWith is runQEMU with more qemu arguments (a disk), and a channel
// that, once closed, kills qemu as a power cut would: the guest's page
// cache is lost, what it wrote to its disk stays. A VM killed so is no
// failure.
func runQEMUWith(logf func(string, ...any), onLine func(string), c vmConfig, accel, vmlinuz, initrd, logPath string, timeout time.Duration,
	words, extra []string, kill <-chan struct{}) (vmRun, error) {
	var r vmRun
	// The monitor, for the power button a guest test may ask for.
	monSock := filepath.Join(filepath.Dir(logPath), "monitor.sock")
	_ = os.Remove(monSock)
	args := []string{
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 " + strings.Join(words, " "),
		"-nographic", "-no-reboot", "-m", c.mem, "-smp", c.smp, "-nic", "none",
		"-monitor", "unix:" + monSock + ",server=on,wait=off",
	}
	args = append(args, extra...)
	switch accel {
	case "kvm":
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		args = append(args, "-accel", "tcg")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.qemu, args...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	cmd.Stderr = cmd.Stdout
	logFile, err := os.Create(logPath)
	if err != nil {
		return r, err
	}
	defer logFile.Close()
	logf("%s %s", c.qemu, strings.Join(args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	var (
		wg      sync.WaitGroup
		console bytes.Buffer
		killed  atomicBool
	)
	if kill != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-kill:
				killed.set()
				_ = cmd.Process.Kill()
			case <-stop:
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := ansiRe.ReplaceAllString(strings.TrimRight(sc.Text(), "\r"), "")
			fmt.Fprintln(logFile, line)
			console.WriteString(line + "\n")
			if onLine != nil {
				onLine(line)
			}
			switch {
			case strings.Contains(line, PowerButtonMarker):
				logf("guest: %s: pressing the power button (system_powerdown): %v", line, pressPowerButton(monSock))
			case strings.Contains(line, InitMarker):
				r.initAt = time.Since(start)
				logf("guest: %s (host %.2fs)", line, r.initAt.Seconds())
			case strings.HasPrefix(strings.TrimSpace(line), "--- "), strings.Contains(line, DoneMarker), strings.Contains(line, MetricMarker):
				logf("guest: %s", line)
			}
		}
	}()
	wg.Wait()
	werr := cmd.Wait()
	r.total = time.Since(start)
	g, perr := ParseConsole(&console)
	r.guest = g
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return r, fmt.Errorf("qemu killed after the %v timeout", timeout)
	case killed.get():
		return r, nil
	case werr != nil:
		return r, fmt.Errorf("qemu: %v", werr)
	}
	return r, perr
}

// atomicBool is set once, by the goroutine that kills qemu.
type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) set() { b.mu.Lock(); b.v = true; b.mu.Unlock() }
func (b *atomicBool) get() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

// pressPowerButton sends system_powerdown to qemu's monitor: an ACPI power
// button press, which the guest's button driver reports as an acpi_event.
func pressPowerButton(sock string) error {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("system_powerdown\n")); err != nil {
		return err
	}
	// Read the monitor's banner and echo, so that the command is taken
	// before the connection closes.
	buf := make([]byte, 4096)
	got := ""
	for !strings.Contains(got, "system_powerdown") {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("after %q: %w", got, err)
		}
		got += string(buf[:n])
	}
	return nil
}

// probeKVM boots the kernel under KVM with an initramfs that only prints the
// markers, and returns "kvm" if that works within 30 s, else "tcg". (On the
// development machine, nested KVM hangs the 6.1 kernel in early boot and stops
// the 6.12 kernel with an emulation failure, so TCG is the default.)
func probeKVM(t *testing.T, c vmConfig, kdir, vmlinuz string) string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Logf("KVM probe: %v; using TCG", err)
		return "tcg"
	}
	f.Close()
	initrd := filepath.Join(kdir, "kvm-probe.cpio")
	if err := writeInitramfs(initrd, c.bb, InitScript, nil, nil); err != nil {
		t.Fatal(err)
	}
	r, err := runQEMU(t.Logf, nil, c, "kvm", vmlinuz, initrd, filepath.Join(kdir, "kvm-probe.log"), 30*time.Second, []string{"vmtest_probe=1"})
	if err == nil && r.guest.InitSeen && r.guest.Done {
		t.Logf("KVM probe: booted to /init in %.2fs; using KVM", r.initAt.Seconds())
		return "kvm"
	}
	t.Logf("KVM probe failed (%v, init seen %v); using TCG", err, r.guest.InitSeen)
	return "tcg"
}

// ansiRe matches the terminal escapes that the firmware prints on the console.
var ansiRe = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestVMPowerLoss cuts the power of a VM while its bridge spools onto an
// ext4 file system on a virtio disk (qemu killed: the guest's page cache
// is lost, what it had written to the disk stays), then boots again on
// the same disk with a hub: every event the bridge counted delivered
// before the cut must reach the hub, with GENLBRIDGE_SPOOL_SYNC=always.
// The newest kernel only (two boots under TCG). VM_POWERLOSS_SYNC=1s runs
// it with that interval instead, to see what a cut then loses (the recover
// boot reports it; the test then wants nothing else wrong).
func TestVMPowerLoss(t *testing.T) {
	c := loadConfig(t)
	ks := kernels(t, c.dir)
	kver := ks[len(ks)-1]
	kdir := filepath.Join(c.dir, kver)
	vmlinuz, ko := filepath.Join(kdir, "vmlinuz"), filepath.Join(kdir, "genl_exmpl.ko")
	order, err := os.ReadFile(filepath.Join(kdir, "disk", "order"))
	if err != nil {
		t.Fatalf("%v (run make vm-kernels)", err)
	}
	if !exists(c.bridge) {
		t.Fatalf("no bridge binary %s (make build)", c.bridge)
	}
	files := map[string]string{GuestTestPath: c.guestTest, GuestKoPath: ko, GuestBridgePath: c.bridge,
		GuestDiskModules[1:] + "/order": filepath.Join(kdir, "disk", "order")}
	for _, name := range strings.Fields(string(order)) {
		files[GuestDiskModules[1:]+"/"+name+".ko"] = filepath.Join(kdir, "disk", name+".ko")
	}
	tmp := t.TempDir()
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := writeInitramfs(initrd, c.bb, InitScript, files, nil); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s (make vm-deps installs e2fsprogs)", err, out)
	}
	drive := []string{"-drive", "file=" + img + ",if=virtio,format=raw,cache=writeback"}
	words := []string{"vmtest_timeout=" + (c.timeout - 30*time.Second).String()}
	interval := os.Getenv("VM_POWERLOSS_SYNC")
	if interval != "" {
		words = append(words, "vmtest_spool_sync="+interval, "vmtest_powerloss_report=1")
	}

	// The first boot: spool until the bridge has counted enough delivered,
	// then cut the power right after one of its reports.
	var acked uint64
	reports := 0
	kill := make(chan struct{})
	onLine := func(line string) {
		_, after, ok := strings.Cut(line, MetricMarker+" powerloss published=")
		if !ok {
			return
		}
		n, err := strconv.ParseUint(strings.Fields(after)[0], 10, 64)
		if err != nil || n == 0 || n < acked {
			return
		}
		acked = n
		if reports++; reports == 12 {
			close(kill)
		}
	}
	logPath := filepath.Join(kdir, "powerloss-write.log")
	r, err := runQEMUWith(t.Logf, onLine, c, c.accel, vmlinuz, initrd, logPath, c.timeout,
		append(words, "vmtest_run=TestPowerLossWrite", "vmtest_powerloss=write"), drive, kill)
	if err != nil || reports < 12 {
		t.Fatalf("the writing boot: %v, %d reports (console %s):\n%s", err, reports, logPath, tail(logPath, 60))
	}
	t.Logf("power cut after %.1fs, with %d events counted delivered into the spool", r.total.Seconds(), acked)

	// The second boot, on the same disk, with a hub.
	logPath = filepath.Join(kdir, "powerloss-recover.log")
	r, err = runQEMUWith(t.Logf, nil, c, c.accel, vmlinuz, initrd, logPath, c.timeout,
		append(words, "vmtest_run=TestPowerLossRecover", "vmtest_powerloss=recover", fmt.Sprintf("vmtest_powerloss_acked=%d", acked)), drive, nil)
	if err == nil {
		err = r.guest.Err()
	}
	if err != nil || len(r.guest.Passed) != 1 {
		t.Fatalf("the recovering boot: %v, passed %v (console %s):\n%s", err, r.guest.Passed, logPath, tail(logPath, 80))
	}
	for _, m := range r.guest.Metrics {
		t.Log("metric: " + m)
	}
}
