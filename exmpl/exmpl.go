// Package exmpl holds the wire contract of the CONTROL_EXMPL generic netlink
// family: its names, version, command and attribute numbers. The kernel module
// in kmod/ declares the same numbers in kmod/genl_exmpl.h; a test keeps the two
// from drifting. The package has no state and is safe for concurrent use.
package exmpl

// Names and version, unchanged from the seed listener so that old listeners and
// new modules interoperate.
const (
	FamilyName = "CONTROL_EXMPL"
	GroupName  = "EXMPL_GRP"
	Version    = 1
)

// Commands (genlmsghdr.cmd).
const (
	CmdUnspec = 0
	// CmdDo is the command number of every event the module multicasts (as in the seed).
	CmdDo = 1
	// CmdEmit asks the module to multicast one event carrying AttrMsg.
	CmdEmit = 2
	// CmdBurst asks the module to multicast AttrCount events as fast as it can.
	CmdBurst = 3
)

// Attributes.
const (
	AttrUnspec = 0
	// AttrMsg is a NUL-terminated string. In the seed's format it is the only
	// attribute, a fixed 50-byte buffer "Hello from kernel at jiffies N\0<garbage>".
	AttrMsg = 1
	// AttrJiffies is the kernel's jiffies when the event was made (u64).
	AttrJiffies = 2
	// AttrSeq is the module's event sequence number (u64), one counter for all
	// events starting at 1, so any gap a listener sees is a loss.
	AttrSeq = 3
	// AttrTimestamp is the wall-clock time of the event in ns since the epoch (u64).
	AttrTimestamp = 4
	// AttrPad pads 64-bit attributes.
	AttrPad = 5
	// AttrCount is the number of events BURST sends (u32).
	AttrCount = 6
	AttrMax   = AttrCount
)

// SeedPayloadLen is the size of the seed's fixed message buffer.
const SeedPayloadLen = 50

// MaxBurst is the largest COUNT the module accepts for CmdBurst.
const MaxBurst = 10_000_000
