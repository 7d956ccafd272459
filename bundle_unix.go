//go:build unix

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// makeBundle creates the bundle directory and returns its path and whether
// it was created here (an existing directory is reused, for a container
// whose previous incarnation left it behind, once it is made private). A
// symlink where the bundle goes is refused: FIFOs must not be created
// outside the state directory. Filesystem errors are classified: a state
// directory that is not one is InvalidArgument, a read-only one
// PermissionDenied.
func makeBundle(bundleDir string, ociSpec *specs.Spec) (path string, created bool, _ error) {
	uid, gid := remappedRoot(ociSpec)
	path = bundleDir
	if uid != 0 || gid != 0 {
		var (
			searchable bool
			err        error
		)
		if path, searchable, err = remappedBundlePath(bundleDir, uid, gid); err != nil {
			return "", false, fmt.Errorf("bundle %s: %w", bundleDir, fsError(err))
		}
		if searchable {
			// moby uses an existing bundle the remapped root can search as
			// it is; so does this, but never through a symlink.
			if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
				return path, false, fmt.Errorf("bundle %s is not a directory: %w", path, errdefs.ErrInvalidArgument)
			}
			return path, false, nil
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return "", false, fmt.Errorf("bundle %s: %w", bundleDir, fsError(err))
	}
	switch err := os.Mkdir(path, 0o700); {
	case err == nil:
		created = true
	case !errors.Is(err, os.ErrExist):
		return "", false, fmt.Errorf("bundle %s: %w", path, fsError(err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return path, created, fmt.Errorf("bundle %s: %w", path, fsError(err))
	}
	if !fi.IsDir() {
		return path, created, fmt.Errorf("bundle %s is not a directory (%s): %w", path, fi.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	// A directory left behind may be anyone's, with any mode (moby makes
	// bundles 0755): the FIFOs go in it only once it is private.
	if err := os.Lchown(path, uid, gid); err != nil {
		return path, created, fmt.Errorf("bundle %s: %w", path, fsError(err))
	}
	if !created {
		if err := os.Chmod(path, 0o700); err != nil {
			return path, created, fmt.Errorf("bundle %s: %w", path, fsError(err))
		}
	}
	return path, created, nil
}

// remappedBundlePath walks bundleDir's components from the root, as moby's
// WithBundle does, and swaps each one the remapped root cannot search
// (missing, or without the other-execute bit) for "<component>.<uid>.<gid>":
// a parent is created 0700 and owned by uid:gid here, the bundle itself by
// makeBundle. So a new bundle is <parent>.<uid>.<gid>/<id>.<uid>.<gid>
// when the state directory is private. A parent that is not a directory
// is InvalidArgument. It returns the path the bundle goes to, and whether
// that is an existing directory the remapped root can search, which moby
// uses as it is.
func remappedBundlePath(bundleDir string, uid, gid int) (path string, searchable bool, _ error) {
	parent := string(filepath.Separator)
	components := strings.Split(strings.Trim(filepath.Clean(bundleDir), string(filepath.Separator)), string(filepath.Separator))
	for i, name := range components {
		p := filepath.Join(parent, name)
		fi, err := os.Stat(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", false, err
		}
		if err == nil && fi.Mode().Perm()&0o001 != 0 {
			if i == len(components)-1 {
				return p, fi.IsDir(), nil
			}
			parent = p
			continue
		}
		p = fmt.Sprintf("%s.%d.%d", p, uid, gid)
		if i == len(components)-1 {
			return p, false, nil
		}
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return "", false, err
		}
		// Neither the chown nor the bundle may follow a symlink planted
		// there out of the state directory's parent.
		if fi, err := os.Lstat(p); err != nil {
			return "", false, err
		} else if !fi.IsDir() {
			return "", false, fmt.Errorf("%s is not a directory (%s): %w", p, fi.Mode().Type(), errdefs.ErrInvalidArgument)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return "", false, err
		}
		parent = p
	}
	return parent, false, nil
}

// sweepOrphans removes the bundles under the state directory that it can
// prove are orphans: left by this library or moby's copy for a container
// that no namespace of containerd has any more (an engine that crashed
// between creating a bundle and deleting it). The state directory is
// shared: in dockerd's default setup it is also the managed containerd's
// (its sockets, pid file, config and its own state dir "daemon"), and the
// plugin executor keeps plugin sockets in its own. So an entry is removed
// only when it is a real directory (no symlink, no mount point, on the
// state directory's filesystem) named like a container ID, that holds
// nothing but FIFOs named <process>-stdin|-stdout|-stderr (or nothing),
// and that, with everything in it, is older than orphanMinAge. Removal is
// file by file and ends with rmdir, never recursive: whatever appears
// meanwhile, or is mounted, stays. When containerd cannot be asked,
// nothing is removed.
func (c *Client) sweepOrphans(ctx context.Context) {
	dir, err := os.Open(c.stateDir)
	if err != nil {
		return
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil || len(names) == 0 {
		return
	}
	var dirStat unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &dirStat); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	live, err := c.allContainerIDs(ctx)
	if err != nil {
		c.logger.WithError(err).Warn("not sweeping orphan bundles: cannot list containers")
		return
	}
	sw := sweeper{parent: dir, dev: uint64(dirStat.Dev), cutoff: time.Now().Add(-orphanMinAge)}
	for _, name := range names {
		if _, ok := live[name]; ok {
			continue
		}
		if id, ok := remappedBundleOwner(name); ok {
			if _, ok := live[id]; ok {
				continue
			}
		}
		if err := sw.remove(name); err != nil {
			c.logger.WithError(err).WithField("entry", filepath.Join(c.stateDir, name)).Debug("state dir entry kept")
			continue
		}
		c.logger.WithField("bundle", filepath.Join(c.stateDir, name)).Info("removed orphan bundle")
	}
}

// sweeper removes orphan bundles from one state directory, through file
// descriptors so that no path it checked can be swapped for a symlink
// before it acts.
type sweeper struct {
	parent *os.File
	dev    uint64
	cutoff time.Time
}

var errNotOrphan = errors.New("not an orphan bundle")

// remove removes entry name when it is an orphan bundle, else returns why
// not (wrapping errNotOrphan).
func (s sweeper) remove(name string) error {
	if err := validateID("container", name); err != nil {
		return fmt.Errorf("%w: %w", errNotOrphan, err)
	}
	parentFd := int(s.parent.Fd())
	fd, err := unix.Openat(parentFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: not a directory: %w", errNotOrphan, err)
	}
	d := os.NewFile(uintptr(fd), filepath.Join(s.parent.Name(), name))
	defer d.Close()
	if err := s.checkDir(fd, d.Name()); err != nil {
		return err
	}
	entries, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotOrphan, err)
	}
	for _, e := range entries {
		if err := s.checkFIFO(fd, e); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := unix.Unlinkat(fd, e, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", e, err)
		}
	}
	// rmdir, not a recursive removal: it fails on anything that appeared
	// meanwhile and on a mount point.
	if err := unix.Unlinkat(parentFd, name, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	return nil
}

// checkDir refuses a directory on another filesystem, a mount point, and
// one changed recently.
func (s sweeper) checkDir(fd int, path string) error {
	facts, err := statDir(fd, path)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotOrphan, err)
	}
	switch {
	case facts.dev != s.dev:
		return fmt.Errorf("%w: on another filesystem", errNotOrphan)
	case facts.mountPoint:
		return fmt.Errorf("%w: a mount point", errNotOrphan)
	case facts.mtime.After(s.cutoff):
		return fmt.Errorf("%w: changed in the last %s", errNotOrphan, orphanMinAge)
	}
	return nil
}

// dirFacts is what the sweep needs to know of a directory it opened.
type dirFacts struct {
	dev        uint64
	mtime      time.Time
	mountPoint bool
}

// checkFIFO refuses anything in a bundle but an old FIFO named for a
// process's stdio.
func (s sweeper) checkFIFO(dirFd int, name string) error {
	proc, stream, ok := cutLast(name, "-")
	if !ok || (stream != "stdin" && stream != "stdout" && stream != "stderr") || validateID("process", proc) != nil {
		return fmt.Errorf("%w: holds %q", errNotOrphan, name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%w: %w", errNotOrphan, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("%w: %s is not a fifo", errNotOrphan, name)
	}
	if time.Unix(st.Mtim.Unix()).After(s.cutoff) {
		return fmt.Errorf("%w: %s used in the last %s", errNotOrphan, name, orphanMinAge)
	}
	return nil
}
