package spool

import "golang.org/x/sys/unix"

// freeBytes is what the file system of dir has free for this user.
func freeBytes(dir string) (uint64, bool) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, false
	}
	return fs.Bavail * uint64(fs.Bsize), true
}
