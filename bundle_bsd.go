//go:build unix && !linux

package libcontainerd

import (
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// statDir reads the facts of the directory open at fd; whether it is a
// mount point comes from the mount table.
func statDir(fd int, path string) (dirFacts, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dirFacts{}, err
	}
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return dirFacts{}, err
	}
	sec, nsec := st.Mtim.Unix()
	return dirFacts{dev: uint64(st.Dev), mtime: time.Unix(sec, nsec), mountPoint: mounted}, nil
}
