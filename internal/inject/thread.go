//go:build linux

package inject

import "runtime"

func lockOSThread() { runtime.LockOSThread() }
