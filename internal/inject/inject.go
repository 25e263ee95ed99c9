//go:build linux

// Package inject multicasts generic netlink messages from userspace into a
// group, as a root process with CAP_NET_ADMIN may. Tests and benchmarks use
// it to offer events at high rates in a private network namespace, shaped
// like the CONTROL_EXMPL module's (MSG, JIFFIES, SEQ, TIMESTAMP). A Sender
// is used by one goroutine.
package inject

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Sender multicasts into one group of one family.
type Sender struct {
	fd       int
	familyID uint16
	group    uint32
	buf      []byte
	msgs     []mmsghdr
	iovs     []unix.Iovec
	dst      unix.RawSockaddrNetlink
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// New resolves family/group in the namespace netns (0: the caller's) and
// opens a socket that sends to it. Groups above 32 cannot be addressed by
// sendto (nl_groups is a bit mask).
func New(netns int, family, group string) (*Sender, error) {
	c, err := genetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("dial generic netlink: %w", err)
	}
	f, err := c.GetFamily(family)
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("resolve family %q: %w", family, err)
	}
	var gid uint32
	for _, g := range f.Groups {
		if g.Name == group {
			gid = g.ID
		}
	}
	if gid == 0 || gid > 32 {
		return nil, fmt.Errorf("family %q group %q: id %d cannot be sent to from userspace", family, group, gid)
	}
	fd, err := socketIn(netns)
	if err != nil {
		return nil, err
	}
	s := &Sender{fd: fd, familyID: f.ID, group: gid}
	s.dst = unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (gid - 1)}
	return s, nil
}

// socketIn opens a NETLINK_GENERIC socket in netns, via a locked thread.
func socketIn(netns int) (int, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// This thread's namespace is changed and it is never given back: the
		// runtime ends it when the goroutine exits locked.
		if netns != 0 {
			lockOSThread()
			if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
				ch <- res{-1, fmt.Errorf("setns: %w", err)}
				return
			}
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
		if err != nil {
			ch <- res{-1, fmt.Errorf("socket: %w", err)}
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			ch <- res{-1, fmt.Errorf("bind: %w", err)}
			return
		}
		ch <- res{fd, nil}
	}()
	r := <-ch
	return r.fd, r.err
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// FamilyID is the resolved family id.
func (s *Sender) FamilyID() uint16 { return s.familyID }

// AppendExmpl appends one CONTROL_EXMPL event message to dst: MSG, JIFFIES,
// SEQ and TIMESTAMP (now).
func AppendExmpl(dst []byte, familyID uint16, seq uint64, msg string) []byte {
	start := len(dst)
	dst = binary.NativeEndian.AppendUint32(dst, 0) // length, below
	dst = binary.NativeEndian.AppendUint16(dst, familyID)
	dst = binary.NativeEndian.AppendUint16(dst, 0)
	dst = binary.NativeEndian.AppendUint32(dst, uint32(seq))
	dst = binary.NativeEndian.AppendUint32(dst, 0)
	dst = append(dst, exmpl.CmdDo, exmpl.Version, 0, 0)
	dst = appendAttr(dst, exmpl.AttrMsg, append([]byte(msg), 0))
	var v [8]byte
	binary.NativeEndian.PutUint64(v[:], 4294967296+seq)
	dst = appendAttr(dst, exmpl.AttrJiffies, v[:])
	binary.NativeEndian.PutUint64(v[:], seq)
	dst = appendAttr(dst, exmpl.AttrSeq, v[:])
	binary.NativeEndian.PutUint64(v[:], uint64(time.Now().UnixNano()))
	dst = appendAttr(dst, exmpl.AttrTimestamp, v[:])
	binary.NativeEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// AppendNetdevDevAdd appends one netdev NETDEV_CMD_DEV_ADD_NTF message to
// dst, as the kernel sends it for a veth: ifindex, xdp-features (basic,
// redirect, ndo-xmit), xdp-zc-max-segs, xdp-rx-metadata-features
// (timestamp, hash) and xsk-features.
func AppendNetdevDevAdd(dst []byte, familyID uint16, ifindex uint32) []byte {
	start := len(dst)
	dst = binary.NativeEndian.AppendUint32(dst, 0) // length, below
	dst = binary.NativeEndian.AppendUint16(dst, familyID)
	dst = binary.NativeEndian.AppendUint16(dst, 0)
	dst = binary.NativeEndian.AppendUint32(dst, ifindex)
	dst = binary.NativeEndian.AppendUint32(dst, 0)
	dst = append(dst, 2 /* NETDEV_CMD_DEV_ADD_NTF */, 1, 0, 0)
	var v [8]byte
	binary.NativeEndian.PutUint32(v[:4], ifindex)
	dst = appendAttr(dst, 1 /* NETDEV_A_DEV_IFINDEX */, v[:4])
	binary.NativeEndian.PutUint64(v[:], 7)
	dst = appendAttr(dst, 3 /* NETDEV_A_DEV_XDP_FEATURES */, v[:])
	binary.NativeEndian.PutUint32(v[:4], 1)
	dst = appendAttr(dst, 4 /* NETDEV_A_DEV_XDP_ZC_MAX_SEGS */, v[:4])
	binary.NativeEndian.PutUint64(v[:], 3)
	dst = appendAttr(dst, 5 /* NETDEV_A_DEV_XDP_RX_METADATA_FEATURES */, v[:])
	binary.NativeEndian.PutUint64(v[:], 0)
	dst = appendAttr(dst, 6 /* NETDEV_A_DEV_XSK_FEATURES */, v[:])
	binary.NativeEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func appendAttr(dst []byte, typ uint16, data []byte) []byte {
	dst = binary.NativeEndian.AppendUint16(dst, uint16(4+len(data)))
	dst = binary.NativeEndian.AppendUint16(dst, typ)
	dst = append(dst, data...)
	for len(dst)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

// Send multicasts one message as it is.
func (s *Sender) Send(msg []byte) error {
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: s.dst.Groups}
	if err := unix.Sendto(s.fd, msg, 0, sa); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	return nil
}

// SendExmpl multicasts events with sequence numbers first..first+n-1, with
// sendmmsg in batches of up to 256. Each message's text is "event SEQ".
func (s *Sender) SendExmpl(first uint64, n int) error {
	return s.sendMany(first, n, func(dst []byte, seq uint64) []byte {
		return AppendExmpl(dst, s.familyID, seq, "event "+strconv.FormatUint(seq, 10))
	})
}

// SendNetdevDevAdd multicasts n netdev dev-add-ntf messages
// (AppendNetdevDevAdd) for ifindexes first..first+n-1, as SendExmpl does.
func (s *Sender) SendNetdevDevAdd(first uint64, n int) error {
	return s.sendMany(first, n, func(dst []byte, seq uint64) []byte {
		return AppendNetdevDevAdd(dst, s.familyID, uint32(seq))
	})
}

// sendMany sends n messages made by appendMsg for first..first+n-1.
func (s *Sender) sendMany(first uint64, n int, appendMsg func(dst []byte, seq uint64) []byte) error {
	const batch = 256
	for n > 0 {
		k := min(n, batch)
		s.buf = s.buf[:0]
		offs := make([]int, 0, k+1)
		for i := 0; i < k; i++ {
			offs = append(offs, len(s.buf))
			s.buf = appendMsg(s.buf, first+uint64(i))
		}
		offs = append(offs, len(s.buf))
		if err := s.sendmmsg(offs); err != nil {
			return err
		}
		first += uint64(k)
		n -= k
	}
	return nil
}

func (s *Sender) sendmmsg(offs []int) error {
	k := len(offs) - 1
	if cap(s.msgs) < k {
		s.msgs = make([]mmsghdr, k)
		s.iovs = make([]unix.Iovec, k)
	}
	msgs, iovs := s.msgs[:k], s.iovs[:k]
	for i := 0; i < k; i++ {
		iovs[i].Base = &s.buf[offs[i]]
		iovs[i].SetLen(offs[i+1] - offs[i])
		msgs[i] = mmsghdr{}
		msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.dst))
		msgs[i].hdr.Namelen = unix.SizeofSockaddrNetlink
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	for sent := 0; sent < k; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(k-sent), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return os.NewSyscallError("sendmmsg", e)
		}
		sent += int(r)
	}
	return nil
}
