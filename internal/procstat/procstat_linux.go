// Package procstat reads a process's CPU time and memory from /proc, for
// the tests and benchmarks that report what a genlbridge process costs.
package procstat

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU returns a process's user+system CPU time (/proc/<pid>/stat fields
// 14 and 15, in clock ticks of 100 Hz: a resolution of 10 ms).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces; fields start after its ')'.
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// RSS returns a process's resident set now (VmRSS) and its peak (VmHWM),
// in bytes.
func RSS(pid int) (now, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var found int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for name, dst := range map[string]*int64{"VmRSS:": &now, "VmHWM:": &peak} {
			if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("bad %s in /proc/%d/status: %w", name, pid, err)
				}
				*dst = kb << 10
				found++
			}
		}
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("no VmRSS and VmHWM in /proc/%d/status", pid)
	}
	return now, peak, sc.Err()
}

// Switches returns the context switches of all of a process's threads
// (/proc/<pid>/task/*/status): voluntary ones are its wake-ups from
// sleep, involuntary ones preemptions.
func Switches(pid int) (voluntary, involuntary uint64, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread has exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			name, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
			if err != nil {
				continue
			}
			switch name {
			case "voluntary_ctxt_switches":
				voluntary += n
			case "nonvoluntary_ctxt_switches":
				involuntary += n
			}
		}
	}
	return voluntary, involuntary, nil
}
