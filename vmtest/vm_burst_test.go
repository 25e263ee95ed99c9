//go:build vmtest

package vmtest

// A burst of the module's events, accounted for SEQ by SEQ at the subscriber.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gevent "github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/natstest"
	"github.com/genlbridge/genlbridge/internal/proctest"
)

// burstResult is what a subscriber saw of one burst.
type burstResult struct {
	n            int
	events       int
	lost         uint64
	byReason     map[string]uint64
	lossRecs     []string
	missing, dup int // SEQs in nothing; SEQs in two records
	outside      int // records outside 1..n
	noRange      int // loss records without a valid SEQ range
	seen         []uint8
	allIn        time.Duration
	peakRmem     int
	stats        map[string]any // the bridge's "stopped" log record
	first, last  *natstest.Record
	subscriberHz float64
	bridgeReadHz float64
	kernelHz     float64
}

// runBurst runs `genlbridge send burst n` against a module loaded with
// period_ms=0 (so SEQ counts the burst from 1), waits until the subscriber
// has n events and lost events, or two minutes, then stops the bridge and
// accounts for every SEQ.
func runBurst(t *testing.T, b *proctest.Bridge, c *natstest.Collector, n int) *burstResult {
	t.Helper()
	res := &burstResult{n: n, byReason: map[string]uint64{}}
	// The most any generic netlink socket (the bridge's) held, from
	// /proc/net/netlink's Rmem, polled while the burst is being delivered.
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			res.peakRmem = max(res.peakRmem, genlRmem())
			select {
			case <-stopPoll:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	out, err := exec.Command(bridgeBinary(t), "send", "burst", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		close(stopPoll)
		t.Fatalf("genlbridge send burst %d: %v\n%s", n, err, out)
	}
	t.Logf("genlbridge send burst %d: %s", n, strings.TrimSpace(string(out)))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res.events, res.lost = c.Totals()
		if uint64(res.events)+res.lost >= uint64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.allIn = time.Since(start)
	close(stopPoll)
	<-polled
	// Anything late (a repeat, an extra loss record) would show now.
	time.Sleep(500 * time.Millisecond)
	res.events, res.lost = c.Totals()
	res.stats = stopBridge(t, b)

	recs, _ := c.Since(0)
	seen := make([]uint8, n+1) // per SEQ: bit 1 an event, bit 2 a loss record
	res.seen = seen
	var instance uint64
	for i := range recs {
		r := &recs[i]
		if r.Type == "loss" {
			res.byReason[r.Reason] += r.Count
			res.lossRecs = append(res.lossRecs, fmt.Sprintf("%s count=%d seq=%d-%d", r.Reason, r.Count, r.FirstSeq, r.LastSeq))
			if r.FirstSeq == 0 || r.LastSeq < r.FirstSeq || r.LastSeq-r.FirstSeq+1 != r.Count {
				res.noRange++
				continue
			}
			for s := r.FirstSeq; s <= r.LastSeq; s++ {
				if s > uint64(n) {
					res.outside++
					continue
				}
				if seen[s] != 0 {
					res.dup++
				}
				seen[s] |= 2
			}
			continue
		}
		e := &r.Event
		if e.Seq == 0 || e.Seq > uint64(n) || e.SeqSource != gevent.SeqKernel {
			res.outside++
			continue
		}
		if want := fmt.Sprintf("burst %d of %d", e.Seq, n); e.Msg != want {
			t.Errorf("SEQ %d: msg %q, want %q", e.Seq, e.Msg, want)
		}
		if instance == 0 {
			instance = e.Instance
		} else if e.Instance != instance {
			t.Errorf("SEQ %d: instance %d, the burst's first event had %d", e.Seq, e.Instance, instance)
		}
		if seen[e.Seq] != 0 {
			res.dup++
		}
		seen[e.Seq] |= 1
		if res.first == nil {
			res.first = r
		}
		res.last = r
	}
	for s := 1; s <= n; s++ {
		if seen[s] == 0 {
			res.missing++
		}
	}
	if f, l := res.first, res.last; f != nil && l != nil && res.events > 1 {
		k := float64(res.events - 1)
		res.subscriberHz = k / l.At.Sub(f.At).Seconds()
		res.bridgeReadHz = k / time.Duration(l.RecvNS-f.RecvNS).Seconds()
		res.kernelHz = k / time.Duration(l.KernelNS-f.KernelNS).Seconds()
	}
	t.Logf("burst of %d: %d events + %d lost = %d (loss records: %v); %d SEQs missing, %d twice, %d outside 1..%d, %d loss records without a range",
		n, res.events, res.lost, uint64(res.events)+res.lost, res.lossRecs, res.missing, res.dup, res.outside, n, res.noRange)
	t.Logf("bridge: %v", res.stats)
	return res
}

// checkCount fails the test unless events and lost events add up to the burst.
func (r *burstResult) checkCount(t *testing.T) {
	t.Helper()
	if uint64(r.events)+r.lost != uint64(r.n) {
		t.Errorf("events %d + lost %d = %d, want exactly %d", r.events, r.lost, uint64(r.events)+r.lost, r.n)
	}
	if r.outside != 0 || r.noRange != 0 {
		t.Errorf("%d records outside SEQ 1..%d, %d loss records without a valid range", r.outside, r.n, r.noRange)
	}
}

// seqErr says how SEQs 1..n are not accounted for exactly once, or "".
func (r *burstResult) seqErr() string {
	if r.missing == 0 && r.dup == 0 {
		return ""
	}
	return fmt.Sprintf("SEQs 1..%d: %d neither an event nor in a loss record, %d both (or in two loss records)\n"+
		"  SEQs in no record:     %s\n  SEQs received:         %s\n  SEQs in loss records:  %s\n  loss records: %v",
		r.n, r.missing, r.dup,
		seqRanges(r.seen, func(v uint8) bool { return v == 0 }),
		seqRanges(r.seen, func(v uint8) bool { return v&1 != 0 }),
		seqRanges(r.seen, func(v uint8) bool { return v&2 != 0 }), r.lossRecs)
}

// seqRanges lists the SEQs s (from 1) for which want(seen[s]) holds, as
// ranges "a-b", the first 20 of them.
func seqRanges(seen []uint8, want func(uint8) bool) string {
	var out []string
	n := 0
	for s := 1; s < len(seen); s++ {
		if !want(seen[s]) {
			continue
		}
		e := s
		for e+1 < len(seen) && want(seen[e+1]) {
			e++
		}
		n++
		if len(out) < 20 {
			out = append(out, fmt.Sprintf("%d-%d", s, e))
		}
		s = e
	}
	if n > len(out) {
		out = append(out, fmt.Sprintf("... (%d ranges)", n))
	}
	if n == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// genlRmem returns the largest Rmem (bytes queued) of the generic netlink
// sockets in /proc/net/netlink, or 0.
func genlRmem() int {
	b, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		return 0
	}
	most := 0
	// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != strconv.Itoa(syscall.NETLINK_GENERIC) {
			continue
		}
		if v, err := strconv.Atoi(f[4]); err == nil {
			most = max(most, v)
		}
	}
	return most
}
