//go:build !linux

package spool

import "os"

// freeBytes does not know off Linux: room is found out by writing.
func freeBytes(string) (uint64, bool) { return 0, false }

// fdatasync is f.Sync off Linux.
func fdatasync(f *os.File) error { return f.Sync() }

// isNoSpace does not tell off Linux.
func isNoSpace(error) bool { return false }

// lockDir does not lock off Linux.
func lockDir(dir string, exclusive bool) (*os.File, error) {
	return os.OpenFile(dir+"/lock", os.O_RDWR|os.O_CREATE, 0o600)
}
