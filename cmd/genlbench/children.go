//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"
)

// childReport is what a child pipeline prints on stdout when told to stop.
type childReport struct {
	Received  uint64    `json:"received"`
	Drops     uint64    `json:"drops"`
	Mallocs   uint64    `json:"mallocs"` // since ready
	Latencies []float64 `json:"latencies_us,omitempty"`
}

// joinIn opens a genetlink socket in the namespace at path and joins family/group.
func joinIn(nsPath, family, group string, rcvbuf int) (*genetlink.Conn, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	c, err := genetlink.Dial(&netlink.Config{NetNS: int(ns.Fd())})
	if err != nil {
		return nil, err
	}
	f, err := c.GetFamily(family)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, g := range f.Groups {
		if g.Name == group {
			if err := c.JoinGroup(g.ID); err != nil {
				c.Close()
				return nil, err
			}
			rc, _ := c.SyscallConn()
			rc.Control(func(fd uintptr) {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
				}
			})
			return c, nil
		}
	}
	c.Close()
	return nil, fmt.Errorf("no group %s/%s", family, group)
}

func socketDrops(c *genetlink.Conn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO, uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	})
	return uint64(mem[unix.SK_MEMINFO_DROPS])
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// kernelNS finds the TIMESTAMP attribute in a CONTROL_EXMPL message body.
func kernelNS(attrs []byte) int64 {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		if l < 4 || l > len(attrs) {
			return 0
		}
		if binary.NativeEndian.Uint16(attrs[2:4])&0x3fff == exmpl.AttrTimestamp && l == 12 {
			return int64(binary.NativeEndian.Uint64(attrs[4:12]))
		}
		attrs = attrs[min((l+3)&^3, len(attrs)):]
	}
	return 0
}

// childMain runs a child pipeline: "raw" (recvmmsg, count only: the
// ceiling) or "naive" (netlink.Conn.Receive and one nats.Publish per event,
// no batching: what a first attempt looks like).
func childMain(kind string, args []string) {
	nsPath, natsURL := args[0], ""
	if len(args) > 1 {
		natsURL = args[1]
	}
	c, err := joinIn(nsPath, "netdev", "mgmt", 32<<20)
	if err != nil {
		fmt.Fprintln(os.Stderr, kind+":", err)
		os.Exit(1)
	}
	var nc *nats.Conn
	if kind == "naive" {
		if nc, err = nats.Connect(natsURL); err != nil {
			fmt.Fprintln(os.Stderr, kind+":", err)
			os.Exit(1)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	rep := childReport{}
	base := mallocs()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if kind == "raw" {
			rawLoop(c, &rep, stop)
		} else {
			naiveLoop(c, nc, &rep, stop)
		}
	}()
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "READY")
	w.Flush()
	<-done
	if nc != nil {
		nc.Flush()
	}
	rep.Mallocs = mallocs() - base
	rep.Drops = socketDrops(c)
	json.NewEncoder(os.Stdout).Encode(rep)
}

// sampleEvery keeps one latency in this many, enough for p99.9.
const sampleEvery = 4

func rawLoop(c *genetlink.Conn, rep *childReport, stop <-chan os.Signal) {
	rc, _ := c.SyscallConn()
	const vlen, slot = 64, 2048
	type mmsghdr struct {
		hdr unix.Msghdr
		n   uint32
		_   [4]byte
	}
	msgs := make([]mmsghdr, vlen)
	iovs := make([]unix.Iovec, vlen)
	buf := make([]byte, vlen*slot)
	for i := range msgs {
		iovs[i].Base = &buf[i*slot]
		iovs[i].SetLen(slot)
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	lat := make([]float64, 0, 1<<20)
	for {
		select {
		case <-stop:
			rep.Latencies = lat
			return
		default:
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var n int
		err := rc.Read(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), vlen, unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			if e == 0 {
				n = int(r)
			}
			return true
		})
		if err != nil {
			continue
		}
		now := time.Now().UnixNano()
		for i := 0; i < n; i++ {
			rep.Received++
			if rep.Received%sampleEvery == 0 && len(lat) < cap(lat) {
				m := buf[i*slot : i*slot+int(msgs[i].n)]
				if len(m) > 20 {
					if k := kernelNS(m[20:]); k != 0 {
						lat = append(lat, float64(now-k)/1e3)
					}
				}
			}
		}
	}
}

func naiveLoop(c *genetlink.Conn, nc *nats.Conn, rep *childReport, stop <-chan os.Signal) {
	host, _ := os.Hostname()
	subject := "genl.netdev.mgmt." + host
	for {
		select {
		case <-stop:
			return
		default:
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		msgs, _, err := c.Receive()
		if err != nil {
			continue
		}
		for _, m := range msgs {
			ad, err := netlink.NewAttributeDecoder(m.Data)
			if err != nil {
				continue
			}
			ev := map[string]any{"v": event.Version, "host": host, "family": "netdev", "group": "mgmt", "cmd": m.Header.Command}
			for ad.Next() {
				switch ad.Type() {
				case exmpl.AttrMsg:
					ev["msg"] = ad.String()
				case exmpl.AttrSeq:
					ev["seq"] = ad.Uint64()
				case exmpl.AttrJiffies:
					ev["jiffies"] = ad.Uint64()
				case exmpl.AttrTimestamp:
					ev["kernel_time"] = json.RawMessage(event.AppendTime(nil, int64(ad.Uint64())))
				}
			}
			ev["recv_time"] = json.RawMessage(event.AppendTime(nil, time.Now().UnixNano()))
			b, _ := json.Marshal(ev)
			nc.Publish(subject, b)
			rep.Received++
		}
	}
}
