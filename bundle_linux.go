package libcontainerd

import (
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// statDir reads the facts of the directory open at fd with statx, which
// also says whether it is a mount point (kernels before 5.8 do not; then
// the mount table is asked).
func statDir(fd int, path string) (dirFacts, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return dirFacts{}, err
	}
	facts := dirFacts{
		dev:   unix.Mkdev(stx.Dev_major, stx.Dev_minor),
		mtime: time.Unix(stx.Mtime.Sec, int64(stx.Mtime.Nsec)),
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		facts.mountPoint = stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		return facts, nil
	}
	var err error
	facts.mountPoint, err = mountinfo.Mounted(path)
	return facts, err
}
