//go:build vmtest

package vmtest

// The guest side of the VM test, run as root by the initramfs's /init inside
// qemu (see harness.go). Built with
//
//	CGO_ENABLED=0 go test -c -tags vmtest -o build/vm/vmtest.test ./vmtest
//
// The tests load and unload genl_exmpl.ko themselves with busybox insmod and
// rmmod, and talk to it with github.com/mdlayher/genetlink. They run in the
// order of this file; each leaves the module unloaded.
//
// The tests of the bridge binary (genlbridge run with its embedded NATS,
// checked with a nats.go subscriber on 127.0.0.1) are in vm_bridge_test.go,
// with the same build tag; they run first (file order), and
// TestZZUnloadAndDmesg below runs last of all.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/genlbridge/genlbridge/exmpl"
)

const moduleName = "genl_exmpl"

// childEnv names the environment variable that makes the test binary act as
// the unprivileged child of TestAdminPerm instead of running the tests.
const childEnv = "VMTEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "adminperm" {
		os.Exit(adminPermChild())
	}
	if os.Getenv("VMTEST_GUEST") != "1" {
		// Loading kernel modules needs the VM: never run on a host.
		fmt.Println("vmtest: not inside the test VM (VMTEST_GUEST unset); nothing to do")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// bridgeBinary returns the bridge binary's path in the VM, or skips the test
// when the initramfs was made without it.
func bridgeBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(GuestBridgePath); err != nil {
		t.Skipf("no bridge binary in the VM (%v): build build/genlbridge first", err)
	}
	return GuestBridgePath
}

func koPath() string {
	if p := os.Getenv("GENL_EXMPL_KO"); p != "" {
		return p
	}
	return GuestKoPath
}

func loaded() bool {
	_, err := os.Stat("/sys/module/" + moduleName)
	return err == nil
}

// insmod loads the module with the given parameters and unloads it when the
// test ends, if it is still loaded then.
func insmod(t *testing.T, params ...string) {
	t.Helper()
	if loaded() {
		t.Fatalf("%s is already loaded", moduleName)
	}
	out, err := exec.Command("insmod", append([]string{koPath()}, params...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("insmod %s %v: %v\n%s", koPath(), params, err, out)
	}
	t.Cleanup(func() {
		if loaded() {
			if err := rmmod(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

func rmmod() error {
	out, err := exec.Command("rmmod", moduleName).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rmmod %s: %v\n%s", moduleName, err, out)
	}
	if loaded() {
		return fmt.Errorf("rmmod %s: module still loaded", moduleName)
	}
	return nil
}

// metric prints a line that the host collects into its summary.
func metric(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	fmt.Printf("%s %s\n", MetricMarker, line)
}

func dialGenl(t *testing.T) *genetlink.Conn {
	t.Helper()
	c, err := genetlink.Dial(&netlink.Config{Strict: true})
	if err != nil {
		t.Fatalf("dial generic netlink: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// resolve looks up CONTROL_EXMPL and returns it with EXMPL_GRP's group ID.
func resolve(t *testing.T, c *genetlink.Conn) (genetlink.Family, uint32) {
	t.Helper()
	f, err := c.GetFamily(exmpl.FamilyName)
	if err != nil {
		t.Fatalf("resolve %s: %v", exmpl.FamilyName, err)
	}
	if f.Version != exmpl.Version {
		t.Errorf("family version %d, want %d", f.Version, exmpl.Version)
	}
	for _, g := range f.Groups {
		if g.Name == exmpl.GroupName {
			return f, g.ID
		}
	}
	t.Fatalf("family %s (id %d) has no group %s: %+v", f.Name, f.ID, exmpl.GroupName, f.Groups)
	return f, 0
}

// listen dials, resolves the family and joins EXMPL_GRP.
func listen(t *testing.T) (*genetlink.Conn, genetlink.Family) {
	t.Helper()
	c := dialGenl(t)
	f, grp := resolve(t, c)
	if err := c.JoinGroup(grp); err != nil {
		t.Fatalf("join %s (%d): %v", exmpl.GroupName, grp, err)
	}
	return c, f
}

// event is one decoded CONTROL_EXMPL event.
type event struct {
	cmd, version uint8
	msg          string // up to the first NUL
	rawMsg       []byte // the whole MSG attribute
	jiffies      uint64
	seq          uint64
	timestamp    uint64
	attrs        []netlink.Attribute
}

func (e event) has(typ uint16) bool {
	for _, a := range e.attrs {
		if a.Type == typ {
			return true
		}
	}
	return false
}

func decode(m genetlink.Message) (event, error) {
	e := event{cmd: m.Header.Command, version: m.Header.Version}
	attrs, err := netlink.UnmarshalAttributes(m.Data)
	if err != nil {
		return e, err
	}
	e.attrs = attrs
	u64 := func(a netlink.Attribute) (uint64, error) {
		if len(a.Data) != 8 {
			return 0, fmt.Errorf("attribute %d: %d bytes, want 8", a.Type, len(a.Data))
		}
		return binary.NativeEndian.Uint64(a.Data), nil
	}
	for _, a := range attrs {
		switch a.Type {
		case exmpl.AttrMsg:
			e.rawMsg = a.Data
			s, _, ok := bytes.Cut(a.Data, []byte{0})
			if !ok {
				return e, errors.New("MSG is not NUL-terminated")
			}
			e.msg = string(s)
		case exmpl.AttrJiffies:
			e.jiffies, err = u64(a)
		case exmpl.AttrSeq:
			e.seq, err = u64(a)
		case exmpl.AttrTimestamp:
			e.timestamp, err = u64(a)
		}
		if err != nil {
			return e, err
		}
	}
	return e, nil
}

// receive reads events of family f until n have arrived or timeout passes.
func receive(t *testing.T, c *genetlink.Conn, f genetlink.Family, n int, timeout time.Duration) []event {
	t.Helper()
	var out []event
	deadline := time.Now().Add(timeout)
	for len(out) < n && time.Now().Before(deadline) {
		evs, _ := readOnce(t, c, f, deadline)
		out = append(out, evs...)
	}
	return out
}

// readOnce reads one batch of datagrams, waiting until at most until, and
// returns the events of family f among them. enobufs says the read found
// the socket overrun (the drop counter counts what was lost). Errors other
// than that and the deadline fail the test.
func readOnce(t *testing.T, c *genetlink.Conn, f genetlink.Family, until time.Time) (evs []event, enobufs bool) {
	t.Helper()
	if err := c.SetReadDeadline(until); err != nil {
		t.Fatal(err)
	}
	msgs, nlmsgs, err := c.Receive()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, false
	case errors.Is(err, unix.ENOBUFS):
		return nil, true
	case err != nil:
		t.Fatalf("receive (drops %d): %v", drops(t, c), err)
	}
	for i, m := range msgs {
		if nlmsgs[i].Header.Type != netlink.HeaderType(f.ID) {
			continue
		}
		e, err := decode(m)
		if err != nil {
			t.Fatalf("decode event %x: %v", m.Data, err)
		}
		evs = append(evs, e)
	}
	return evs, false
}

// command sends an EMIT or BURST request on its own socket (events can come
// before the ACK on a listening socket) and waits for the ACK.
func command(c *genetlink.Conn, f genetlink.Family, cmd uint8, attrs ...netlink.Attribute) error {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	_, err = c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: exmpl.Version},
		Data:   data,
	}, f.ID, netlink.Request|netlink.Acknowledge)
	return err
}

func msgAttr(s string) netlink.Attribute {
	return netlink.Attribute{Type: exmpl.AttrMsg, Data: append([]byte(s), 0)}
}

func countAttr(n uint32) netlink.Attribute {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, n)
	return netlink.Attribute{Type: exmpl.AttrCount, Data: b}
}

// wantOpError checks err is the errno want with an extack message containing msg.
func wantOpError(t *testing.T, what string, err error, want unix.Errno, msg string) {
	t.Helper()
	var oe *netlink.OpError
	switch {
	case err == nil:
		t.Errorf("%s: succeeded, want %v", what, want)
	case !errors.Is(err, want):
		t.Errorf("%s: %v, want %v", what, err, want)
	case !errors.As(err, &oe) || !strings.Contains(oe.Message, msg):
		t.Errorf("%s: %v: extack message %q, want it to contain %q", what, err, oe.Message, msg)
	default:
		t.Logf("%s: %v (extack %q)", what, err, oe.Message)
	}
}

// sockopt runs fn on the socket's file descriptor.
func sockopt(t *testing.T, c *genetlink.Conn, fn func(fd uintptr) error) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
}

// drops returns the socket's kernel drop counter, SO_MEMINFO's SK_MEMINFO_DROPS.
func drops(t *testing.T, c *genetlink.Conn) uint32 {
	t.Helper()
	var mem [unix.SK_MEMINFO_VARS + 8]uint32
	sockopt(t, c, func(fd uintptr) error {
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			return fmt.Errorf("getsockopt SO_MEMINFO: %v", e)
		}
		if l < (unix.SK_MEMINFO_DROPS+1)*4 {
			return fmt.Errorf("SO_MEMINFO: %d bytes", l)
		}
		return nil
	})
	return mem[unix.SK_MEMINFO_DROPS]
}

var helloRe = regexp.MustCompile(`^Hello from kernel at jiffies ([0-9]+)$`)

// TestPeriodicEvents: the delayed work's events, fully decoded.
func TestPeriodicEvents(t *testing.T) {
	insmod(t, "period_ms=200")
	c, f := listen(t)
	t.Logf("family %s id %d version %d groups %+v", f.Name, f.ID, f.Version, f.Groups)

	evs := receive(t, c, f, 4, 30*time.Second)
	if len(evs) < 3 {
		t.Fatalf("got %d periodic events in 30s, want >= 3", len(evs))
	}
	now := uint64(time.Now().UnixNano())
	for i, e := range evs {
		t.Logf("event %d: cmd %d seq %d jiffies %d ts %d %q", i, e.cmd, e.seq, e.jiffies, e.timestamp, e.msg)
		if e.cmd != exmpl.CmdDo || e.version != exmpl.Version {
			t.Errorf("event %d: cmd %d version %d, want %d %d", i, e.cmd, e.version, exmpl.CmdDo, exmpl.Version)
		}
		for _, a := range []uint16{exmpl.AttrMsg, exmpl.AttrJiffies, exmpl.AttrSeq, exmpl.AttrTimestamp} {
			if !e.has(a) {
				t.Errorf("event %d: no attribute %d", i, a)
			}
		}
		m := helloRe.FindStringSubmatch(e.msg)
		if m == nil {
			t.Errorf("event %d: text %q", i, e.msg)
		} else if j, _ := strconv.ParseUint(m[1], 10, 64); j != e.jiffies {
			t.Errorf("event %d: text says jiffies %d, JIFFIES is %d", i, j, e.jiffies)
		}
		if d := int64(now - e.timestamp); d < 0 || d > int64(time.Minute) {
			t.Errorf("event %d: TIMESTAMP %d is %v before now", i, e.timestamp, time.Duration(d))
		}
		if i > 0 {
			p := evs[i-1]
			if e.seq != p.seq+1 {
				t.Errorf("event %d: SEQ %d after %d, want +1", i, e.seq, p.seq)
			}
			if e.jiffies <= p.jiffies || e.timestamp < p.timestamp {
				t.Errorf("event %d: jiffies %d ts %d after %d %d", i, e.jiffies, e.timestamp, p.jiffies, p.timestamp)
			}
		}
	}
	if evs[0].seq < 1 {
		t.Errorf("first SEQ %d, want >= 1", evs[0].seq)
	}
}

// TestEmitAndBurst: EMIT's event, then a 100000-event BURST that must be
// accounted for in full: received + the socket's drop counter.
func TestEmitAndBurst(t *testing.T) {
	insmod(t, "period_ms=0")
	l, f := listen(t)
	ctl := dialGenl(t)

	const rcvbuf = 32 << 20
	sockopt(t, l, func(fd uintptr) error {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			return fmt.Errorf("SO_RCVBUFFORCE: %v", err)
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		t.Logf("SO_RCVBUF now %d", v)
		return err
	})

	const text = "hello from the vmtest guest"
	if err := command(ctl, f, exmpl.CmdEmit, msgAttr(text)); err != nil {
		t.Fatalf("EMIT: %v", err)
	}
	evs := receive(t, l, f, 1, 10*time.Second)
	if len(evs) != 1 || evs[0].msg != text || evs[0].cmd != exmpl.CmdDo {
		t.Fatalf("after EMIT got %+v, want one event %q", evs, text)
	}
	emitSeq := evs[0].seq
	t.Logf("EMIT event: seq %d", emitSeq)
	if d := drops(t, l); d != 0 {
		t.Fatalf("%d drops before the burst", d)
	}

	const n = 100000
	start := time.Now()
	if err := command(ctl, f, exmpl.CmdBurst, countAttr(n)); err != nil {
		t.Fatalf("BURST %d: %v", n, err)
	}
	ackAfter := time.Since(start)

	var (
		received, enobufs int
		lastSeq           = emitSeq
		lastAt            time.Duration
		dropped           uint32
		// From the events' TIMESTAMPs: how fast the kernel made them.
		firstSeq, firstTS, lastTS uint64
	)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		dropped = drops(t, l)
		if uint64(received)+uint64(dropped) >= n || time.Now().After(deadline) {
			break
		}
		evs, overrun := readOnce(t, l, f, time.Now().Add(time.Second))
		if overrun {
			enobufs++
		}
		for _, e := range evs {
			received++
			lastAt = time.Since(start)
			// SEQ numbers the burst contiguously from the one after
			// EMIT's; the i in "burst i of n" follows SEQ.
			if e.seq <= lastSeq || e.seq > emitSeq+n {
				t.Fatalf("SEQ %d after %d (burst is %d..%d)", e.seq, lastSeq, emitSeq+1, emitSeq+n)
			}
			if want := fmt.Sprintf("burst %d of %d", e.seq-emitSeq, n); e.msg != want {
				t.Fatalf("SEQ %d: text %q, want %q", e.seq, e.msg, want)
			}
			lastSeq = e.seq
			if firstTS == 0 {
				firstSeq, firstTS = e.seq, e.timestamp
			}
			lastTS = e.timestamp
		}
	}
	elapsed := time.Since(start)
	missing := n - received
	t.Logf("BURST %d: ACK after %v; received %d (last after %v), socket drops %d, ENOBUFS reads %d, %v in all",
		n, ackAfter, received, lastAt, dropped, enobufs, elapsed)
	kernelSpan := time.Duration(lastTS - firstTS)
	metric(t, "burst count=%d received=%d drops=%d enobufs=%d ack=%v last_event=%v receive_rate=%.0f/s kernel_rate=%.0f/s rcvbuf=%dMiB",
		n, received, dropped, enobufs, ackAfter.Round(time.Millisecond), lastAt.Round(time.Millisecond),
		float64(received)/lastAt.Seconds(), float64(lastSeq-firstSeq)/kernelSpan.Seconds(), rcvbuf>>20)
	if uint64(missing) != uint64(dropped) {
		t.Errorf("received %d + drops %d != %d: %d events unaccounted for", received, dropped, n, missing-int(dropped))
	}
	if ackAfter > 5*time.Second {
		t.Errorf("BURST answered after %v: the burst should run in a work item", ackAfter)
	}

	// Invalid requests: the policy and the handlers explain themselves.
	wantOpError(t, "BURST count 0", command(ctl, f, exmpl.CmdBurst, countAttr(0)), unix.ERANGE, "out of range")
	wantOpError(t, "BURST count MaxBurst+1", command(ctl, f, exmpl.CmdBurst, countAttr(exmpl.MaxBurst+1)), unix.ERANGE, "out of range")
	wantOpError(t, "BURST without COUNT", command(ctl, f, exmpl.CmdBurst), unix.EINVAL, "missing COUNT")
	wantOpError(t, "EMIT without MSG", command(ctl, f, exmpl.CmdEmit), unix.EINVAL, "missing MSG")
	long := strings.Repeat("x", 300)
	if err := command(ctl, f, exmpl.CmdEmit, msgAttr(long)); err == nil {
		t.Errorf("EMIT with a %d-byte MSG succeeded", len(long))
	} else {
		t.Logf("EMIT with a %d-byte MSG: %v", len(long), err)
	}
}

// TestSeqOrderWithConcurrentSenders: the periodic work (every 1 ms), a
// BURST and EMITs from this test send at once, on different CPUs; the
// events must still reach the socket in SEQ order, each SEQ one more than
// the last, or a listener would read a reordering as a loss and a
// restart. With no drops every SEQ from the first to the last arrives.
func TestSeqOrderWithConcurrentSenders(t *testing.T) {
	insmod(t, "period_ms=1")
	l, f := listen(t)
	ctl := dialGenl(t)
	sockopt(t, l, func(fd uintptr) error {
		return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	})

	const n, emits = 20000, 300
	if err := command(ctl, f, exmpl.CmdBurst, countAttr(n)); err != nil {
		t.Fatalf("BURST %d: %v", n, err)
	}
	emitted := make(chan error, 1)
	c := dialGenl(t)
	go func() {
		for i := range emits {
			if err := command(c, f, exmpl.CmdEmit, msgAttr(fmt.Sprintf("emit %d", i))); err != nil {
				emitted <- fmt.Errorf("EMIT %d: %w", i, err)
				return
			}
		}
		emitted <- nil
	}()

	var (
		got, bursts, emitsSeen, periodic, backwards int
		last                                        uint64
	)
	deadline := time.Now().Add(3 * time.Minute)
	emitsDone := false
	for bursts < n || emitsSeen < emits {
		select {
		case err := <-emitted:
			if err != nil {
				t.Fatal(err)
			}
			emitsDone = true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes: %d of %d burst events, %d of %d EMITs, %d drops", bursts, n, emitsSeen, emits, drops(t, l))
		}
		evs, overrun := readOnce(t, l, f, time.Now().Add(time.Second))
		if overrun {
			t.Fatalf("the socket overran (drops %d)", drops(t, l))
		}
		for _, e := range evs {
			got++
			switch {
			case strings.HasPrefix(e.msg, "burst "):
				bursts++
			case strings.HasPrefix(e.msg, "emit "):
				emitsSeen++
			default:
				periodic++
			}
			if last != 0 && e.seq != last+1 {
				backwards++
				if backwards <= 5 {
					t.Errorf("SEQ %d (%q) after %d, want %d", e.seq, e.msg, last, last+1)
				}
			}
			last = e.seq
		}
	}
	if !emitsDone {
		if err := <-emitted; err != nil {
			t.Fatal(err)
		}
	}
	d := drops(t, l)
	t.Logf("%d events in SEQ order: %d burst, %d EMIT, %d periodic; %d out of order; %d drops", got, bursts, emitsSeen, periodic, backwards, d)
	metric(t, "seq_order events=%d burst=%d emit=%d periodic=%d out_of_order=%d drops=%d", got, bursts, emitsSeen, periodic, backwards, d)
	if d != 0 {
		t.Errorf("%d drops with a 64 MiB buffer: the SEQ check above is then not about order", d)
	}
	if periodic == 0 {
		t.Errorf("no periodic event during the burst: the test did not race three senders")
	}
}

// TestBurstBusyAndUnload: a second BURST while one runs is refused, and rmmod
// stops a running burst promptly.
func TestBurstBusyAndUnload(t *testing.T) {
	insmod(t, "period_ms=0")
	ctl := dialGenl(t)
	f, _ := resolve(t, ctl)
	// Nobody listens: events only consume sequence numbers, quickly.
	if err := command(ctl, f, exmpl.CmdBurst, countAttr(exmpl.MaxBurst)); err != nil {
		t.Fatalf("BURST %d: %v", exmpl.MaxBurst, err)
	}
	wantOpError(t, "BURST while a burst runs", command(ctl, f, exmpl.CmdBurst, countAttr(1)), unix.EBUSY, "already running")
	start := time.Now()
	if err := rmmod(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("rmmod during a %d-event burst took %v", exmpl.MaxBurst, took)
	metric(t, "rmmod_during_burst=%v", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("rmmod took %v", took)
	}
}

// TestAdminPerm: EMIT and BURST need CAP_NET_ADMIN; listening does not.
func TestAdminPerm(t *testing.T) {
	insmod(t, "period_ms=100")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"=adminperm")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("unprivileged child:\n%s", out)
	if err != nil {
		t.Errorf("unprivileged child: %v", err)
	}
}

// adminPermChild runs as nobody: it must receive events but be refused EMIT
// and BURST with EPERM. It returns the exit code.
func adminPermChild() int {
	fail := func(format string, args ...any) int {
		fmt.Printf("FAILED: "+format+"\n", args...)
		return 1
	}
	c, err := genetlink.Dial(&netlink.Config{Strict: true})
	if err != nil {
		return fail("dial: %v", err)
	}
	defer c.Close()
	f, err := c.GetFamily(exmpl.FamilyName)
	if err != nil {
		return fail("resolve: %v", err)
	}
	for _, g := range f.Groups {
		if g.Name == exmpl.GroupName {
			if err := c.JoinGroup(g.ID); err != nil {
				return fail("join as uid %d: %v", os.Getuid(), err)
			}
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.Receive(); err != nil {
		return fail("receive as uid %d: %v", os.Getuid(), err)
	}
	ctl, err := genetlink.Dial(&netlink.Config{Strict: true})
	if err != nil {
		return fail("dial: %v", err)
	}
	defer ctl.Close()
	for _, req := range []struct {
		name string
		cmd  uint8
		attr netlink.Attribute
	}{{"EMIT", exmpl.CmdEmit, msgAttr("x")}, {"BURST", exmpl.CmdBurst, countAttr(1)}} {
		err := command(ctl, f, req.cmd, req.attr)
		if !errors.Is(err, unix.EPERM) {
			return fail("%s as uid %d: %v, want EPERM", req.name, os.Getuid(), err)
		}
		fmt.Printf("%s as uid %d: %v (as wanted)\n", req.name, os.Getuid(), err)
	}
	fmt.Printf("uid %d received an event and was refused EMIT and BURST\n", os.Getuid())
	return 0
}

// TestReloadDropsMembership documents kernel behaviour that the bridge must
// handle: when the module is unloaded and loaded again, a socket that had
// joined EXMPL_GRP is no longer a member, and gets nothing until it resolves
// the family again and joins the group anew. nlctrl's "notify" group tells
// listeners about it with DELFAMILY and NEWFAMILY.
func TestReloadDropsMembership(t *testing.T) {
	insmod(t, "period_ms=100")
	l, f1 := listen(t)
	_, grp1 := resolve(t, l)

	ctrl := dialGenl(t)
	nlctrl, err := ctrl.GetFamily("nlctrl")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range nlctrl.Groups {
		if g.Name == "notify" {
			if err := ctrl.JoinGroup(g.ID); err != nil {
				t.Fatal(err)
			}
		}
	}

	if evs := receive(t, l, f1, 1, 10*time.Second); len(evs) != 1 {
		t.Fatalf("no event before the reload")
	}
	if err := rmmod(); err != nil {
		t.Fatal(err)
	}
	insmod(t, "period_ms=100")

	// The old socket: no events, even if the new family reuses the IDs.
	f2, grp2 := resolve(t, dialGenl(t))
	t.Logf("before the reload: family id %d group %d; after: family id %d group %d", f1.ID, grp1, f2.ID, grp2)
	if evs := receive(t, l, f2, 1, 2*time.Second); len(evs) != 0 {
		t.Errorf("the old membership still gets events: %+v", evs[0])
	}
	if evs := receive(t, l, f1, 1, time.Second); len(evs) != 0 {
		t.Errorf("the old family ID still gets events")
	}

	// nlctrl told us.
	var notes []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_ = ctrl.SetReadDeadline(deadline)
		msgs, _, err := ctrl.Receive()
		if err != nil {
			break
		}
		for _, m := range msgs {
			attrs, err := netlink.UnmarshalAttributes(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range attrs {
				if a.Type == unix.CTRL_ATTR_FAMILY_NAME && strings.TrimRight(string(a.Data), "\x00") == exmpl.FamilyName {
					notes = append(notes, map[uint8]string{
						unix.CTRL_CMD_NEWFAMILY: "NEWFAMILY", unix.CTRL_CMD_DELFAMILY: "DELFAMILY",
						unix.CTRL_CMD_NEWMCAST_GRP: "NEWMCAST_GRP", unix.CTRL_CMD_DELMCAST_GRP: "DELMCAST_GRP",
					}[m.Header.Command])
				}
			}
		}
		if len(notes) >= 2 && notes[len(notes)-1] != "DELFAMILY" && strings.Contains(strings.Join(notes, " "), "DELFAMILY") {
			break
		}
	}
	t.Logf("nlctrl notify for %s: %v", exmpl.FamilyName, notes)
	joined := strings.Join(notes, " ")
	if !strings.Contains(joined, "DELFAMILY") || !strings.Contains(joined, "NEWFAMILY") {
		t.Errorf("nlctrl notify: %v, want DELFAMILY and NEWFAMILY", notes)
	}

	// Re-resolve and re-join on the same socket: events flow again.
	if err := l.JoinGroup(grp2); err != nil {
		t.Fatalf("re-join: %v", err)
	}
	if evs := receive(t, l, f2, 2, 10*time.Second); len(evs) < 2 {
		t.Errorf("after re-joining got %d events, want 2", len(evs))
	} else if evs[1].seq != evs[0].seq+1 || evs[0].seq > 1000 {
		t.Errorf("after the reload SEQ %d, %d: want a new counter from 1", evs[0].seq, evs[1].seq)
	}
}

// TestSeedPayload: with seed_payload=1 an event is only MSG, the seed's fixed
// 50-byte buffer, NUL-terminated text then non-zero filler.
func TestSeedPayload(t *testing.T) {
	insmod(t, "period_ms=200", "seed_payload=1")
	l, f := listen(t)
	evs := receive(t, l, f, 2, 30*time.Second)
	if len(evs) < 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	ctl := dialGenl(t)
	if err := command(ctl, f, exmpl.CmdEmit, msgAttr("emitted in the seed's format")); err != nil {
		t.Fatalf("EMIT: %v", err)
	}
	emitted := receive(t, l, f, 1, 10*time.Second)
	if len(emitted) != 1 {
		t.Fatalf("got %d events after EMIT", len(emitted))
	}
	for i, e := range append(evs, emitted...) {
		if len(e.attrs) != 1 || e.attrs[0].Type != exmpl.AttrMsg {
			t.Errorf("event %d: attributes %+v, want MSG alone", i, e.attrs)
			continue
		}
		if len(e.rawMsg) != exmpl.SeedPayloadLen {
			t.Errorf("event %d: MSG is %d bytes, want %d", i, len(e.rawMsg), exmpl.SeedPayloadLen)
		}
		want := helloRe
		if i == len(evs) {
			want = regexp.MustCompile(`^emitted in the seed's format$`)
		}
		if !want.MatchString(e.msg) {
			t.Errorf("event %d: text up to the NUL %q", i, e.msg)
		}
		after := e.rawMsg[len(e.msg)+1:]
		if len(after) == 0 || bytes.IndexByte(after, 0) >= 0 {
			t.Errorf("event %d: after the NUL %x, want non-zero filler", i, after)
		}
		t.Logf("event %d: %d bytes, text %q, %d filler bytes %x...", i, len(e.rawMsg), e.msg, len(after), after[:min(4, len(after))])
	}
}

// TestZZUnloadAndDmesg runs last: the module loads and unloads cleanly, and
// the kernel log has no warning, bug, oops or call trace from all the tests.
func TestZZUnloadAndDmesg(t *testing.T) {
	insmod(t)
	if err := rmmod(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dmesg").CombinedOutput()
	if err != nil {
		t.Fatalf("dmesg: %v\n%s", err, out)
	}
	// As the kernel prints them: "WARNING: CPU: ...", "BUG: ...", "Oops: ...",
	// "Call Trace:"; "report a bug" in boot messages is no hit.
	bad := regexp.MustCompile(`\bWARNING\b|\bBUG\b|\bOops\b|(?i:call trace)`)
	var hits []string
	for _, line := range strings.Split(string(out), "\n") {
		if bad.MatchString(line) {
			hits = append(hits, line)
		}
	}
	if len(hits) > 0 {
		t.Errorf("kernel log has %d bad lines:\n%s\nfull log:\n%s", len(hits), strings.Join(hits, "\n"), out)
	}
	if !strings.Contains(string(out), "genl_exmpl: family CONTROL_EXMPL registered") {
		t.Errorf("kernel log lacks the module's load message:\n%s", out)
	}
	loads := strings.Count(string(out), "genl_exmpl: family CONTROL_EXMPL registered")
	unloads := strings.Count(string(out), "genl_exmpl: family CONTROL_EXMPL unregistered")
	t.Logf("kernel log: %d loads, %d unloads, no warnings", loads, unloads)
	if loads != unloads {
		t.Errorf("%d loads but %d unloads", loads, unloads)
	}
}
