package bridge

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// registry is a fake kernel family table served over genltest.
type registry struct {
	mu       sync.Mutex
	families map[string]genetlink.Family
	notes    chan []genetlink.Message
}

func newRegistry() *registry {
	return &registry{families: map[string]genetlink.Family{}, notes: make(chan []genetlink.Message, 16)}
}

func (r *registry) set(f genetlink.Family) {
	r.mu.Lock()
	r.families[f.Name] = f
	r.mu.Unlock()
}

func (r *registry) del(name string) {
	r.mu.Lock()
	delete(r.families, name)
	r.mu.Unlock()
}

// queryConn answers CTRL_CMD_GETFAMILY from the table, ENOENT when absent.
func (r *registry) queryConn() *genetlink.Conn {
	return genltest.Dial(func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		if greq.Header.Command != unix.CTRL_CMD_GETFAMILY {
			return nil, genltest.Error(int(unix.EOPNOTSUPP))
		}
		ad, err := netlink.NewAttributeDecoder(greq.Data)
		if err != nil {
			return nil, err
		}
		var name string
		for ad.Next() {
			if ad.Type() == unix.CTRL_ATTR_FAMILY_NAME {
				name = ad.String()
			}
		}
		r.mu.Lock()
		f, ok := r.families[name]
		r.mu.Unlock()
		if !ok {
			return nil, genltest.Error(int(unix.ENOENT))
		}
		return []genetlink.Message{familyMessage(unix.CTRL_CMD_NEWFAMILY, f)}, nil
	})
}

// notifyConn delivers what is put on r.notes, blocking in between.
func (r *registry) notifyConn(ctx context.Context) *genetlink.Conn {
	return genltest.Dial(func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		if greq.Header.Command != 0 {
			return nil, nil // JoinGroup and such
		}
		select {
		case m := <-r.notes:
			return m, nil
		case <-ctx.Done():
			return nil, io.ErrClosedPipe
		}
	})
}

func familyMessage(cmd uint8, f genetlink.Family) genetlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, f.ID)
	ae.String(unix.CTRL_ATTR_FAMILY_NAME, f.Name)
	ae.Uint32(unix.CTRL_ATTR_VERSION, uint32(f.Version))
	ae.Nested(unix.CTRL_ATTR_MCAST_GROUPS, func(nae *netlink.AttributeEncoder) error {
		for i, g := range f.Groups {
			nae.Nested(uint16(i+1), func(gae *netlink.AttributeEncoder) error {
				gae.String(unix.CTRL_ATTR_MCAST_GRP_NAME, g.Name)
				gae.Uint32(unix.CTRL_ATTR_MCAST_GRP_ID, g.ID)
				return nil
			})
		}
		return nil
	})
	b, _ := ae.Encode()
	return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: 2}, Data: b}
}

// joinRecorder stands in for group membership, which genltest lacks.
type joinRecorder struct {
	*genetlink.Conn
	joined []uint32
}

func (j *joinRecorder) JoinGroup(g uint32) error {
	j.joined = append(j.joined, g)
	return nil
}

// fakeMember records what the controller does to a socket.
type fakeMember struct {
	mu      sync.Mutex
	ops     []string
	joinErr error // returned by join (after recording it), when set
}

func (m *fakeMember) record(op string, g uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if op == "mark" {
		m.ops = append(m.ops, op)
	} else {
		m.ops = append(m.ops, op+":"+itoa(g))
	}
	return nil
}
func (m *fakeMember) join(g uint32) error {
	m.record("join", g)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.joinErr
}
func (m *fakeMember) leave(g uint32) error { return m.record("leave", g) }
func (m *fakeMember) mark() error          { return m.record("mark", 0) }
func (m *fakeMember) get() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ops...)
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

var exmplFamily = genetlink.Family{ID: 30, Name: "CONTROL_EXMPL", Version: 1, Groups: []genetlink.MulticastGroup{{ID: 11, Name: "EXMPL_GRP"}}}

type ctrlHarness struct {
	reg    *registry
	member *fakeMember
	sub    *subControl
	ctrl   *controller
	cancel context.CancelFunc
	done   chan error
	log    *slog.Logger // the controller's; set before run
}

func startController(t *testing.T, resync time.Duration) *ctrlHarness {
	t.Helper()
	h := &ctrlHarness{reg: newRegistry(), member: &fakeMember{}, done: make(chan error, 1),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.reg.set(genetlink.Family{ID: unix.GENL_ID_CTRL, Name: "nlctrl", Version: 2, Groups: []genetlink.MulticastGroup{{ID: 16, Name: "notify"}}})
	return h
}

func (h *ctrlHarness) run(t *testing.T, resync time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	q, n := h.reg.queryConn(), &joinRecorder{Conn: h.reg.notifyConn(ctx)}
	if err := joinNotify(q, n); err != nil {
		t.Fatal(err)
	}
	if len(n.joined) != 1 || n.joined[0] != 16 {
		t.Fatalf("notify connection joined %v, want nlctrl/notify (16)", n.joined)
	}
	h.sub = &subControl{Subscription: Subscription{Family: "CONTROL_EXMPL", Group: "EXMPL_GRP"}, m: h.member, state: StateWaiting}
	h.ctrl = &controller{query: q, notify: n, subs: []*subControl{h.sub}, resync: resync,
		log: h.log, changed: make(chan struct{}, 1)}
	go func() { h.done <- h.ctrl.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
}

// waitOps waits until the member saw exactly want.
func (h *ctrlHarness) waitOps(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.member.get()
		if equalStrings(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member ops = %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (h *ctrlHarness) waitState(t *testing.T, state string) SubscriptionStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := h.sub.status()
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("state = %s, want %s", st.State, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControllerJoinsRegisteredFamily(t *testing.T) {
	h := startController(t, time.Hour)
	h.reg.set(exmplFamily)
	h.run(t, time.Hour)
	h.waitOps(t, "join:11")
	st := h.waitState(t, StateJoined)
	if st.FamilyID != 30 || st.GroupID != 11 || st.Joins != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestControllerWaitsForFamily(t *testing.T) {
	h := startController(t, time.Hour)
	h.run(t, time.Hour)
	h.waitState(t, StateWaiting)
	time.Sleep(20 * time.Millisecond)
	if ops := h.member.get(); len(ops) != 0 {
		t.Fatalf("joined without a family: %v", ops)
	}
	// The module is loaded: the registration notification makes it join,
	// marking the socket first because this registration's sequence starts at 1.
	h.reg.set(exmplFamily)
	h.reg.notes <- []genetlink.Message{familyMessage(unix.CTRL_CMD_NEWFAMILY, exmplFamily)}
	h.waitOps(t, "mark", "join:11")
	h.waitState(t, StateJoined)
}

func TestControllerRejoinsAfterReload(t *testing.T) {
	h := startController(t, time.Hour)
	h.reg.set(exmplFamily)
	h.run(t, time.Hour)
	h.waitOps(t, "join:11")

	// rmmod: DELFAMILY. The kernel has dropped the membership already.
	h.reg.del(exmplFamily.Name)
	h.reg.notes <- []genetlink.Message{familyMessage(unix.CTRL_CMD_DELFAMILY, exmplFamily)}
	h.waitState(t, StateWaiting)
	h.waitOps(t, "join:11", "leave:11")

	// insmod: registered again, with another group id.
	again := exmplFamily
	again.ID, again.Groups = 31, []genetlink.MulticastGroup{{ID: 12, Name: "EXMPL_GRP"}}
	h.reg.set(again)
	h.reg.notes <- []genetlink.Message{familyMessage(unix.CTRL_CMD_NEWFAMILY, again), familyMessage(unix.CTRL_CMD_NEWMCAST_GRP, again)}
	h.waitOps(t, "join:11", "leave:11", "mark", "join:12")
	st := h.waitState(t, StateJoined)
	if st.GroupID != 12 || st.FamilyID != 31 || st.Joins != 2 {
		t.Fatalf("status %+v", st)
	}
	// Notifications of other families change nothing.
	h.reg.notes <- []genetlink.Message{familyMessage(unix.CTRL_CMD_DELFAMILY, genetlink.Family{ID: 40, Name: "other"})}
	time.Sleep(20 * time.Millisecond)
	h.waitOps(t, "join:11", "leave:11", "mark", "join:12")
}

func TestControllerResyncCatchesMissedNotifications(t *testing.T) {
	h := startController(t, 20*time.Millisecond)
	h.reg.set(exmplFamily)
	h.run(t, 20*time.Millisecond)
	h.waitOps(t, "join:11")
	// Re-registered with a new group id, and the notifications were lost.
	again := exmplFamily
	again.Groups = []genetlink.MulticastGroup{{ID: 14, Name: "EXMPL_GRP"}}
	h.reg.set(again)
	h.waitOps(t, "join:11", "leave:11", "mark", "join:14")
	// Gone without a notification: the resync notices too.
	h.reg.del(exmplFamily.Name)
	h.waitState(t, StateWaiting)
	h.waitOps(t, "join:11", "leave:11", "mark", "join:14", "leave:14")
}

func TestControllerMissingGroupWaits(t *testing.T) {
	h := startController(t, 20*time.Millisecond)
	f := exmplFamily
	f.Groups = nil
	h.reg.set(f)
	h.run(t, 20*time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	if st := h.sub.status(); st.State != StateWaiting || len(h.member.get()) != 0 {
		t.Fatalf("status %+v ops %v", st, h.member.get())
	}
	h.reg.set(exmplFamily)
	h.waitOps(t, "mark", "join:11")
}

// A join the kernel refuses with EPERM is no wait for the family: the state
// says refused, each refusal is counted, it is retried at each resync
// (without a new mark), and a join that then succeeds clears it.
func TestControllerJoinRefusedForPermission(t *testing.T) {
	h := startController(t, 20*time.Millisecond)
	h.reg.set(exmplFamily)
	h.member.joinErr = &os.SyscallError{Syscall: "setsockopt", Err: syscall.EPERM}
	var logs syncBuffer
	h.log = slog.New(slog.NewJSONHandler(&logs, nil))
	h.run(t, 20*time.Millisecond)
	st := h.waitState(t, StateRefused)
	if st.JoinRefused < 1 || st.Joins != 0 {
		t.Fatalf("status %+v", st)
	}
	// Retried at the resyncs, each counted; never marked.
	deadline := time.Now().Add(5 * time.Second)
	for h.sub.status().JoinRefused < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("refusals %d, want 3 retries", h.sub.status().JoinRefused)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, op := range h.member.get() {
		if op != "join:11" {
			t.Fatalf("ops %v: want joins only", h.member.get())
		}
	}
	// Logged once, as an error naming the permission.
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 1 || !strings.Contains(logs.String(), `"reason":"permission"`) ||
		!strings.Contains(logs.String(), "CONTROL_EXMPL/EXMPL_GRP") {
		t.Fatalf("%d error lines, want 1 naming the subscription and the permission:\n%s", n, logs.String())
	}
	// The capability came: joined.
	h.member.mu.Lock()
	h.member.joinErr = nil
	h.member.mu.Unlock()
	st = h.waitState(t, StateJoined)
	if st.Joins != 1 {
		t.Fatalf("status %+v", st)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
