package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"strings"

	"github.com/genlbridge/genlbridge/ynl"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// nlctrl commands and attributes (linux/genetlink.h), spelled out so the
// controller builds on every system.
const (
	ctrlCmdNewFamily     = 1
	ctrlCmdDelFamily     = 2
	ctrlCmdNewMcastGrp   = 7
	ctrlCmdDelMcastGrp   = 8
	ctrlAttrFamilyName   = 2
	ctrlAttrMcastGroups  = 7
	ctrlAttrMcastGrpName = 1
)

// genlConn is the part of *genetlink.Conn the controller uses, so that tests
// can drive it with genltest.
type genlConn interface {
	GetFamily(name string) (genetlink.Family, error)
	Receive() ([]genetlink.Message, []netlink.Message, error)
	JoinGroup(group uint32) error
	Close() error
}

// member is a subscription socket's group membership as the controller drives it.
type member interface {
	join(group uint32) error
	leave(group uint32) error
	// mark queues a marker on the socket: events read after it belong to a
	// new registration of the family, whose sequence starts over at 1.
	mark() error
}

// Subscription states.
const (
	StateWaiting = "waiting" // family or group not registered (yet)
	StateJoined  = "joined"
	StateStopped = "stopped" // the bridge is stopping: the group was left
	// StateRefused: the kernel refused the join for permission (EPERM or
	// EACCES: the group takes a capability the process lacks). It is
	// retried at each resolution, in case the capability comes.
	StateRefused = "refused"
)

// RefusedPermission is the reason of a join the kernel refused with EPERM or
// EACCES.
const RefusedPermission = "permission"

// subControl is the control-plane state of one subscription. The controller
// goroutine alone writes it, under mu; status reads it under mu.
type subControl struct {
	Subscription
	m member
	// spec decodes the family (nil: generically), from specOrigin;
	// specChecked: its groups were compared with the kernel's once.
	spec        *ynl.Family
	specOrigin  string
	specChecked bool

	mu         sync.Mutex
	state      string
	familyID   uint16
	groupID    uint32
	joins      int // successful joins, the first one included
	waitLogged bool
	// refused counts joins the kernel refused for permission; refusedLogged:
	// the current refusal is logged (once until a join succeeds).
	refused       uint64
	refusedLogged bool
}

// SubscriptionStatus is a snapshot of one subscription's control state.
type SubscriptionStatus struct {
	Subscription
	State    string
	FamilyID uint16
	GroupID  uint32
	Joins    int
	// JoinRefused counts joins the kernel refused for permission
	// (RefusedPermission); State is StateRefused while the last one was.
	JoinRefused uint64
	// Spec is the file of the YNL spec that decodes the family ("": none,
	// generic).
	Spec string
	// Received and SocketDrops count this subscription's events read and
	// the kernel's drops on its socket.
	Received    uint64
	SocketDrops uint64
	// RawUnknown, RawBadLength and RawTooDeep count attributes the spec
	// could not decode, kept raw in their events: unknown to it, of a
	// length that does not fit their type, nested too deep. Fallback
	// counts messages of a cmd the spec has no message for, decoded
	// generically.
	RawUnknown, RawBadLength, RawTooDeep, Fallback uint64
}

func (s *subControl) status() SubscriptionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SubscriptionStatus{Subscription: s.Subscription, State: s.state, FamilyID: s.familyID, GroupID: s.groupID, Joins: s.joins,
		JoinRefused: s.refused, Spec: s.specOrigin}
}

// leaveAll leaves the subscription's group if it is joined, and marks it
// stopped. The owner calls it once the controller has returned, so that the
// kernel adds nothing more to the socket while it is drained.
func (s *subControl) leaveAll() {
	s.mu.Lock()
	joined, gid := s.state == StateJoined, s.groupID
	s.state = StateStopped
	s.mu.Unlock()
	if joined {
		_ = s.m.leave(gid)
	}
}

// notification is one nlctrl notify message reduced to what the controller needs.
type notification struct {
	cmd    uint8
	family string
	groups []string // CTRL_ATTR_MCAST_GROUPS names, for the mcast-group commands
}

// controller joins every subscription's group by name, follows nlctrl's
// notify group to re-join when a family is unregistered and registered again,
// and re-resolves every subscription periodically in case a notification was
// lost. It is owned by the Bridge: run returns when ctx ends; the owner
// closes the connections.
type controller struct {
	query  genlConn // request/response: GetFamily
	notify genlConn // joined to nlctrl/notify; read by the receive goroutine
	subs   []*subControl
	resync time.Duration
	log    *slog.Logger
	// changed is signalled (without blocking) after each change of state, for tests.
	changed chan struct{}
}

// joinNotify joins nlctrl's notify group on the notify connection.
func joinNotify(q, n genlConn) error {
	f, err := q.GetFamily("nlctrl")
	if err != nil {
		return fmt.Errorf("resolve family %q: %w", "nlctrl", err)
	}
	for _, g := range f.Groups {
		if g.Name == "notify" {
			if err := n.JoinGroup(g.ID); err != nil {
				return fmt.Errorf("join group %q: %w", "nlctrl/notify", err)
			}
			return nil
		}
	}
	return fmt.Errorf("family nlctrl has no group %q", "notify")
}

// run resolves every subscription, then reacts to notifications until ctx ends.
// The notify connection must already be joined to nlctrl/notify, so that no
// registration between the first resolution and the first notification is missed.
func (c *controller) run(ctx context.Context) error {
	notes := make(chan notification, 64)
	recvDone := make(chan error, 1)
	go func() { recvDone <- c.receive(ctx, notes) }()

	for _, s := range c.subs {
		c.resolve(s, false)
	}
	tick := time.NewTicker(c.resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// The owner closes the notify connection; receive returns then.
			<-recvDone
			return nil
		case err := <-recvDone:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive nlctrl notifications: %w", err)
		case n := <-notes:
			c.handle(n)
		case <-tick.C:
			for _, s := range c.subs {
				c.resolve(s, true)
			}
		}
	}
}

// receive reads notifications until the connection fails or is closed.
func (c *controller) receive(ctx context.Context, out chan<- notification) error {
	for {
		msgs, _, err := c.notify.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, syscall.ENOBUFS) {
				// The notify socket overran: some notifications are lost, so
				// re-resolve everything.
				c.log.Warn("nlctrl notifications overran; re-resolving every subscription")
				select {
				case out <- notification{}:
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return err
		}
		for _, m := range msgs {
			n, ok := parseNotification(m)
			if !ok {
				continue
			}
			select {
			case out <- n:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func parseNotification(m genetlink.Message) (notification, bool) {
	n := notification{cmd: m.Header.Command}
	switch n.cmd {
	case ctrlCmdNewFamily, ctrlCmdDelFamily, ctrlCmdNewMcastGrp, ctrlCmdDelMcastGrp:
	default:
		return n, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return n, false
	}
	for ad.Next() {
		switch ad.Type() {
		case ctrlAttrFamilyName:
			n.family = ad.String()
		case ctrlAttrMcastGroups:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					nad.Nested(func(gad *netlink.AttributeDecoder) error {
						for gad.Next() {
							if gad.Type() == ctrlAttrMcastGrpName {
								n.groups = append(n.groups, gad.String())
							}
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return n, ad.Err() == nil && n.family != ""
}

func (c *controller) handle(n notification) {
	if n.family == "" { // overrun: re-resolve all
		for _, s := range c.subs {
			c.resolve(s, true)
		}
		return
	}
	for _, s := range c.subs {
		if s.Family != n.family {
			continue
		}
		switch n.cmd {
		case ctrlCmdDelFamily:
			c.lost(s, "family unregistered")
		case ctrlCmdDelMcastGrp:
			for _, g := range n.groups {
				if g == s.Group {
					c.lost(s, "group unregistered")
				}
			}
		default:
			c.resolve(s, true)
		}
	}
}

// lost marks a subscription waiting: the kernel has already dropped the
// socket's membership.
func (c *controller) lost(s *subControl, why string) {
	s.mu.Lock()
	was, gid := s.state, s.groupID
	s.state, s.waitLogged = StateWaiting, true
	s.mu.Unlock()
	if was == StateJoined {
		_ = s.m.leave(gid) // normally gone already; harmless if so
		c.log.Warn("subscription lost; waiting for the family to come back", "subscription", s.String(), "reason", why)
		c.signal()
	}
}

// resolve looks the family and group up by name and (re-)joins when needed.
// later says the call is not the first resolution at startup, so that a join
// now starts a new registration of the family, whose sequence starts at 1.
func (c *controller) resolve(s *subControl, later bool) {
	f, err := c.query.GetFamily(s.Family)
	var gid uint32
	if err == nil {
		for _, g := range f.Groups {
			if g.Name == s.Group {
				gid = g.ID
			}
		}
		if gid == 0 {
			err = fmt.Errorf("family %q has no multicast group %q", s.Family, s.Group)
		}
	} else if netlink.IsNotExist(err) || errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("family %q is not registered", s.Family)
	} else {
		err = fmt.Errorf("resolve family %q: %w", s.Family, err)
	}

	// Only this goroutine changes the state, so it is read without the lock;
	// the lock is taken to change it, never across socket calls (status
	// must not wait for a marker's retries).
	if err != nil {
		if s.state == StateJoined {
			// Gone without a notification we saw.
			_ = s.m.leave(s.groupID)
			c.log.Warn("subscription lost; waiting for the family to come back", "subscription", s.String(), "err", err)
			c.signal()
		} else if !s.waitLogged {
			c.log.Info("waiting for family", "subscription", s.String(), "reason", err)
		}
		s.mu.Lock()
		s.state, s.waitLogged = StateWaiting, true
		s.mu.Unlock()
		return
	}
	if s.state == StateJoined && s.groupID == gid && s.familyID == f.ID {
		return
	}
	c.checkSpec(s, f)
	fresh := later || s.joins > 0
	if s.state == StateJoined {
		// Registered again with other IDs without a notification we saw.
		_ = s.m.leave(s.groupID)
	}
	// After a refusal no event came: the mark placed before it still holds.
	if fresh && s.state != StateRefused {
		if err := s.m.mark(); err != nil {
			c.log.Warn("cannot mark the new family registration on the socket; a sequence reset will be inferred", "subscription", s.String(), "err", err)
		}
	}
	if err := s.m.join(gid); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			s.mu.Lock()
			s.state = StateRefused
			s.refused++
			logged := s.refusedLogged
			s.refusedLogged = true
			s.mu.Unlock()
			if !logged {
				c.log.Error("join refused for permission: the group takes a capability this process lacks (mptcp_pm: CAP_NET_ADMIN, NET_DM: CAP_SYS_ADMIN); retried at each resync",
					"subscription", s.String(), "group_id", gid, "reason", RefusedPermission, "err", err)
			}
			c.signal()
			return
		}
		c.log.Error("join group", "subscription", s.String(), "group_id", gid, "err", err)
		s.mu.Lock()
		s.state = StateWaiting
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.state, s.familyID, s.groupID, s.waitLogged, s.refusedLogged = StateJoined, f.ID, gid, false, false
	s.joins++
	joins := s.joins
	s.mu.Unlock()
	c.log.Info("joined", "subscription", s.String(), "family_id", f.ID, "group_id", gid, "version", f.Version, "rejoin", joins > 1)
	c.signal()
}

// checkSpec logs, once per subscription, how the family's spec fits the
// running kernel: groups the spec names that the kernel does not have (a
// spec of a newer kernel), and a subscribed group for which the spec
// decodes nothing (its events decode generically).
func (c *controller) checkSpec(s *subControl, f genetlink.Family) {
	if s.spec == nil || s.specChecked || s.spec.Name != s.Family {
		return // none, done, or another family's (:exmpl on a test group)
	}
	s.specChecked = true
	have := map[string]bool{}
	for _, g := range f.Groups {
		have[g.Name] = true
	}
	var missing []string
	for _, g := range s.spec.Groups() {
		if !have[g] && g != ynl.GroupAny {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		c.log.Info("the family's spec names groups this kernel does not have", "subscription", s.String(), "spec", s.specOrigin,
			"groups", strings.Join(missing, ","))
	}
	decodes := false
	for _, n := range s.spec.Notifications() {
		if n.Group == s.Group || n.Group == ynl.GroupAny {
			decodes = true
			break
		}
	}
	if !decodes {
		c.log.Warn("the family's spec decodes no message of the subscribed group: its events are generic", "subscription", s.String(), "spec", s.specOrigin)
	}
}

func (c *controller) signal() {
	if c.changed == nil {
		return
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}
