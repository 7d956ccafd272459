package libcontainerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// WithBundle creates the bundle directory bundleDir for a container with
// spec and records it in the container's DockerContainerBundlePath label.
//
// Without a user namespace the directory is owned by root with mode 0700.
// With one, every component of bundleDir that the remapped root could not
// traverse, the bundle itself included, is replaced by a sibling
// "<component>.<uid>.<gid>" owned by the uid and gid root maps to (moby's
// layout); the label then names that path.
func WithBundle(bundleDir string, ociSpec *specs.Spec) containerd.NewContainerOpts {
	return withBundle(bundleDir, ociSpec, nil)
}

// bundleRecord receives the bundle directory a withBundle option settled on
// and whether that option created it.
type bundleRecord struct {
	path    string
	created bool
}

func withBundle(bundleDir string, ociSpec *specs.Spec, rec *bundleRecord) containerd.NewContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		if ociSpec == nil {
			return fmt.Errorf("bundle %s: spec is nil: %w", bundleDir, errdefs.ErrInvalidArgument)
		}
		path, created, err := makeBundle(bundleDir, ociSpec)
		if rec != nil {
			rec.path, rec.created = path, created
		}
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = make(map[string]string)
		}
		c.Labels[DockerContainerBundlePath] = path
		return nil
	}
}

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

// remappedRoot returns the host uid and gid that the container's root maps
// to when the spec has a user namespace, else 0, 0.
func remappedRoot(ociSpec *specs.Spec) (uid, gid int) {
	if ociSpec == nil || ociSpec.Linux == nil {
		return 0, 0
	}
	for _, ns := range ociSpec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return hostID(0, ociSpec.Linux.UIDMappings), hostID(0, ociSpec.Linux.GIDMappings)
		}
	}
	return 0, 0
}

func hostID(id uint32, mappings []specs.LinuxIDMapping) int {
	for _, m := range mappings {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return 0
}

func (c *Client) bundleDir(id string) string {
	return filepath.Join(c.stateDir, id)
}

// ownsBundle reports whether bundle, the container's label, names a
// directory of the container's own, which Delete may remove: <id>, or
// <id>.<uid>.<gid>, where moby's WithBundle puts the bundle of a container
// with a user namespace. The label is not trusted beyond that.
func ownsBundle(md containers.Container, bundle string) bool {
	if !filepath.IsAbs(bundle) {
		return false
	}
	base := filepath.Base(bundle)
	if base == md.ID {
		return true
	}
	var spec specs.Spec
	if md.Spec == nil || json.Unmarshal(md.Spec.GetValue(), &spec) != nil {
		return false
	}
	uid, gid := remappedRoot(&spec)
	return (uid != 0 || gid != 0) && base == fmt.Sprintf("%s.%d.%d", md.ID, uid, gid)
}

// orphanMinAge keeps the sweep away from bundles that may belong to a
// container being created right now by another client on the same state
// directory: its bundle exists before containerd knows the container.
const orphanMinAge = time.Minute

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
	sw := sweeper{parent: dir, dev: dirStat.Dev, cutoff: time.Now().Add(-orphanMinAge)}
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

// remappedBundleOwner returns the container ID of a bundle named
// <id>.<uid>.<gid> (moby's layout with a user namespace).
func remappedBundleOwner(name string) (string, bool) {
	rest, gid, ok := cutLast(name, ".")
	if !ok || !isDigits(gid) {
		return "", false
	}
	id, uid, ok := cutLast(rest, ".")
	if !ok || !isDigits(uid) || id == "" {
		return "", false
	}
	return id, true
}

func cutLast(s, sep string) (before, after string, ok bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
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
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return fmt.Errorf("%w: %w", errNotOrphan, err)
	}
	if unix.Mkdev(stx.Dev_major, stx.Dev_minor) != s.dev {
		return fmt.Errorf("%w: on another filesystem", errNotOrphan)
	}
	var mountPoint bool
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		mountPoint = stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	} else {
		// Kernels before 5.8 do not say; ask the mount table.
		var err error
		if mountPoint, err = mountinfo.Mounted(path); err != nil {
			return fmt.Errorf("%w: %w", errNotOrphan, err)
		}
	}
	if mountPoint {
		return fmt.Errorf("%w: a mount point", errNotOrphan)
	}
	if statxTime(stx.Mtime).After(s.cutoff) {
		return fmt.Errorf("%w: changed in the last %s", errNotOrphan, orphanMinAge)
	}
	return nil
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

func statxTime(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// allContainerIDs lists the container IDs of every namespace: a state
// directory may be shared by clients of several namespaces.
func (c *Client) allContainerIDs(ctx context.Context) (map[string]struct{}, error) {
	nss, err := c.c8dClient.NamespaceService().List(ctx)
	if err != nil {
		return nil, wrapError(err)
	}
	ids := make(map[string]struct{})
	for _, ns := range nss {
		ctrs, err := c.c8dClient.ContainerService().List(namespaces.WithNamespace(ctx, ns))
		if err != nil {
			return nil, wrapError(err)
		}
		for _, ctr := range ctrs {
			ids[ctr.ID] = struct{}{}
		}
	}
	return ids, nil
}
