package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// The state file (DIR/state, JSON) is what the spool remembers besides
// its records: where forwarding stopped, how far the log is known to be on
// the disk, and, for each subscription's instance, the highest sequence
// number the log covered there and the highest one forwarded. It is
// replaced whole (written to state.tmp, then renamed over it) about once
// a second while anything changes, and synced at Close; a lost or stale
// state costs only events sent twice (the hub's duplicate window drops
// them) and a weaker check for damage, never an event.
const stateFile = "state"

type state struct {
	Version     int    `json:"version"`
	Incarnation string `json:"incarnation"`
	// Cursor is the first record not wholly forwarded, CursorMsgs how many
	// of its messages were.
	Cursor     uint64 `json:"cursor"`
	CursorMsgs int    `json:"cursor_msgs,omitempty"`
	// Synced: every record up to it was on the disk (0: none known).
	Synced uint64 `json:"synced"`
	// Next: the sequence numbers below it were given to records.
	Next  uint64      `json:"next"`
	Marks []stateMark `json:"marks,omitempty"`
	// Clean says the spool was closed, not stopped by a crash or a power
	// cut; BootID is the boot it ran in and Sync its sync setting.
	Clean  bool   `json:"clean"`
	BootID string `json:"boot_id,omitempty"`
	Sync   string `json:"sync,omitempty"`
}

// stateMark is one instance's marks.
type stateMark struct {
	Host     string `json:"host"`
	BootID   string `json:"boot_id"`
	Family   string `json:"family"`
	Group    string `json:"group"`
	Instance uint64 `json:"instance"`
	// Kernel: its events are numbered by the kernel.
	Kernel bool `json:"kernel,omitempty"`
	// Written is the highest sequence number the records up to Synced
	// cover (events or loss records), Forwarded the highest the records
	// before Cursor do.
	Written   uint64 `json:"written"`
	Forwarded uint64 `json:"forwarded"`
	// Record is the last record that covered any of it: the most recent
	// instance of a subscription has the highest.
	Record uint64 `json:"record"`
}

const stateVersion = 1

// readState reads dir's state; ok is false when there is none or it does
// not parse (err says why, for the log).
func readState(dir string) (st state, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateVersion {
		return state{}, false, fmt.Errorf("the spool's state file does not parse (version %d): %v", st.Version, err)
	}
	return st, true, nil
}

// writeState replaces dir's state with st; with sync it is on the disk
// when writeState returns.
func writeState(dir string, st *state, sync bool) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil && sync {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("write the spool's state: %w", err)
	}
	return nil
}

// maxMarks bounds the marks kept; the least recent instances go first
// once their records are all forwarded.
const maxMarks = 4096

// markState is what the spool keeps of an instance.
type markState struct {
	kernel    bool
	written   uint64 // highest covered in the records written
	synced    uint64 // written, as of the last sync
	forwarded uint64 // highest covered in the records forwarded
	record    uint64 // the last record that covered any of it
}

// pruneMarks drops, past maxMarks, the marks of instances that nothing
// waits for (all forwarded) and that are not their subscription's most
// recent, least recent first.
func pruneMarks(m map[markKey]*markState) {
	if len(m) <= maxMarks {
		return
	}
	type sub struct{ host, family, group string }
	latest := map[sub]uint64{}
	for k, v := range m {
		s := sub{k.Host, k.Family, k.Group}
		latest[s] = max(latest[s], v.record)
	}
	var idle []markKey
	for k, v := range m {
		if v.forwarded >= v.written && latest[sub{k.Host, k.Family, k.Group}] != v.record {
			idle = append(idle, k)
		}
	}
	slices.SortFunc(idle, func(a, b markKey) int { return int64Cmp(m[a].record, m[b].record) })
	for _, k := range idle[:min(len(idle), len(m)-maxMarks)] {
		delete(m, k)
	}
}

func int64Cmp(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
