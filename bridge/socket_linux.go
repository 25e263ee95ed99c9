//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// eventSocket is one generic netlink socket that joins a multicast group and
// reads it with recvmmsg. Its buffers are reused by every call: what recv
// returns is valid until the next recv. recv is called by one goroutine (the
// subscription's reader); join, leave, drops and close may be called from
// others.
type eventSocket struct {
	c     *genetlink.Conn
	rc    syscall.RawConn
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrNetlink
	buf   []byte
	slot  int
	pid   uint32 // this socket's port id
	// emptyDrops is the drop counter read at the last moment recv found the
	// socket empty, if emptySeen (see takeEmpty).
	emptyDrops uint32
	emptySeen  bool

	// The functions the reader hands the runtime's poller, made once (a
	// closure made at each call would be an allocation a read), and
	// their results.
	readFn             func(fd uintptr) bool
	recvNowFn, dropsFn func(fd uintptr) // through Control: whatever the read deadline
	n                  int
	errno              syscall.Errno
	dropsVal           uint32
}

// dgram is one datagram read by recv.
type dgram struct {
	data      []byte
	pid       uint32 // sender's port id; 0 is the kernel
	truncated bool
}

// openEventSocket opens a generic netlink socket in the network namespace
// netns (0: the caller's), with a receive buffer of rcvbuf bytes if rcvbuf > 0.
// It returns the size the kernel granted (as SO_RCVBUF reports it).
func openEventSocket(netns, rcvbuf, vlen, slot int) (*eventSocket, int, error) {
	c, err := genetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, 0, fmt.Errorf("dial generic netlink: %w", err)
	}
	s := &eventSocket{c: c, slot: slot}
	s.readFn = func(fd uintptr) bool {
		s.n, s.errno = s.recvmmsg(fd)
		return s.errno != unix.EAGAIN // empty: wait in the netpoller
	}
	s.recvNowFn = func(fd uintptr) { s.n, s.errno = s.recvmmsg(fd) }
	s.dropsFn = func(fd uintptr) { s.dropsVal, s.errno = dropsFD(fd) }
	granted, err := s.setup(rcvbuf, vlen)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return s, granted, nil
}

func (s *eventSocket) setup(rcvbuf, vlen int) (int, error) {
	rc, err := s.c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	s.rc = rc
	// Without ENOBUFS reports an overrun leaves no error state behind; losses
	// are counted from SO_MEMINFO instead.
	if err := s.c.SetOption(netlink.NoENOBUFS, true); err != nil {
		return 0, fmt.Errorf("set NETLINK_NO_ENOBUFS: %w", err)
	}
	granted := 0
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		if rcvbuf > 0 {
			// SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN; SO_RCVBUF is capped by it.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}
		}
		granted, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			if nl, ok := sa.(*unix.SockaddrNetlink); ok {
				s.pid = nl.Pid
			}
		}
	})
	if cerr != nil {
		return 0, fmt.Errorf("socket control: %w", cerr)
	}
	if serr != nil {
		return 0, fmt.Errorf("set SO_RCVBUF %d: %w", rcvbuf, serr)
	}
	s.msgs = make([]mmsghdr, vlen)
	s.iovs = make([]unix.Iovec, vlen)
	s.names = make([]unix.RawSockaddrNetlink, vlen)
	s.buf = make([]byte, vlen*s.slot)
	for i := range s.msgs {
		s.iovs[i].Base = &s.buf[i*s.slot]
		s.iovs[i].SetLen(s.slot)
		s.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.SetIovlen(1)
	}
	return granted, nil
}

// recv waits until at least one datagram is queued (or the read deadline
// passes, or the socket is closed), then reads up to vlen datagrams without
// blocking into out, which it returns. EINTR is retried.
func (s *eventSocket) recv(out []dgram) ([]dgram, error) {
	s.n, s.errno = 0, 0
	err := s.rc.Read(s.readFn)
	runtime.KeepAlive(s)
	if err != nil {
		return out[:0], err
	}
	return s.collect(out, s.n, s.errno)
}

// recvNow reads what is queued without waiting, whatever the read deadline:
// up to vlen datagrams into out, which it returns; empty says the socket had
// nothing queued (its drop counter was read at that moment, see takeEmpty).
// Used to drain a socket that has left its group.
func (s *eventSocket) recvNow(out []dgram) (_ []dgram, empty bool, err error) {
	s.n, s.errno = 0, 0
	if err := s.rc.Control(s.recvNowFn); err != nil {
		return out[:0], false, err
	}
	if s.errno == unix.EAGAIN {
		return out[:0], true, nil
	}
	out, err = s.collect(out, s.n, s.errno)
	return out, false, err
}

// recvmmsg makes one non-blocking recvmmsg call on fd, retrying EINTR. On
// EAGAIN (nothing queued) it records the drop counter of that moment.
func (s *eventSocket) recvmmsg(fd uintptr) (int, syscall.Errno) {
	for i := range s.msgs {
		s.msgs[i].hdr.Namelen = unix.SizeofSockaddrNetlink
		s.msgs[i].hdr.Flags = 0
		s.msgs[i].n = 0
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.msgs[0])),
			uintptr(len(s.msgs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(r), 0
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Empty: everything queued before now has been read.
			if d, e := dropsFD(fd); e == 0 {
				s.emptyDrops, s.emptySeen = d, true
			}
			return 0, e
		default:
			return 0, e
		}
	}
}

// collect turns the result of a recvmmsg call into datagrams appended to out[:0].
func (s *eventSocket) collect(out []dgram, n int, errno syscall.Errno) ([]dgram, error) {
	out = out[:0]
	if errno == unix.ENOBUFS {
		// Only without NETLINK_NO_ENOBUFS; the drop counter says how many.
		return out, nil
	}
	if errno != 0 {
		return out, os.NewSyscallError("recvmmsg", errno)
	}
	for i := 0; i < n; i++ {
		m := &s.msgs[i]
		l := int(m.n)
		if l > s.slot {
			l = s.slot
		}
		out = append(out, dgram{
			data:      s.buf[i*s.slot : i*s.slot+l],
			pid:       s.names[i].Pid,
			truncated: m.hdr.Flags&unix.MSG_TRUNC != 0,
		})
	}
	return out, nil
}

// drops returns the kernel's count of datagrams dropped on this socket
// (SO_MEMINFO's SK_MEMINFO_DROPS, the Drops column of /proc/net/netlink).
// It wraps at 2^32; callers subtract in uint32.
func (s *eventSocket) drops() (uint32, error) {
	if err := s.rc.Control(s.dropsFn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, os.NewSyscallError("getsockopt SO_MEMINFO", s.errno)
	}
	return s.dropsVal, nil
}

func dropsFD(fd uintptr) (uint32, syscall.Errno) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	return mem[unix.SK_MEMINFO_DROPS], errno
}

// takeEmpty returns the drop counter as it was when the last recv found the
// socket empty, once: every drop it counts happened before that moment, so a
// dropped event that no later event has shown as a gap is newer than all
// the events read until then.
func (s *eventSocket) takeEmpty() (uint32, bool) {
	d, ok := s.emptyDrops, s.emptySeen
	s.emptySeen = false
	return d, ok
}

func (s *eventSocket) join(group uint32) error  { return s.c.JoinGroup(group) }
func (s *eventSocket) leave(group uint32) error { return s.c.LeaveGroup(group) }

// setDeadline bounds the next recv's wait.
func (s *eventSocket) setDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

func (s *eventSocket) close() error { return s.c.Close() }

// isTimeout reports whether err is a passed read deadline.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// isClosed reports whether err comes from a socket closed under a reader.
func isClosed(err error) bool { return errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADF) }
