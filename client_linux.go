package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// WithBundle creates the bundle directory bundleDir for a container with
// spec and records it in the container's DockerContainerBundlePath label.
//
// Without a user namespace the directory is owned by root with mode 0700.
// With one, it is owned by the uid and gid that root maps to, and every
// component of bundleDir that the remapped root could not traverse is
// replaced by a sibling "<component>.<uid>.<gid>" owned by it (moby's
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
		var err error
		if path, err = remappedBundlePath(bundleDir, uid, gid); err != nil {
			return "", false, fmt.Errorf("bundle %s: %w", bundleDir, fsError(err))
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

// remappedBundlePath walks bundleDir's parents from the root and swaps each
// component the remapped root cannot search (missing, or without the
// other-execute bit) for "<component>.<uid>.<gid>", created 0700 and owned
// by uid:gid; one that is not a directory is InvalidArgument. It returns
// the path the bundle itself goes to.
func remappedBundlePath(bundleDir string, uid, gid int) (string, error) {
	parent := string(filepath.Separator)
	components := strings.Split(strings.Trim(filepath.Clean(bundleDir), string(filepath.Separator)), string(filepath.Separator))
	for _, name := range components[:len(components)-1] {
		p := filepath.Join(parent, name)
		fi, err := os.Stat(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if err == nil && fi.Mode().Perm()&0o001 != 0 {
			parent = p
			continue
		}
		p = fmt.Sprintf("%s.%d.%d", p, uid, gid)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
		// Neither the chown nor the bundle may follow a symlink planted
		// there out of the state directory's parent.
		if fi, err := os.Lstat(p); err != nil {
			return "", err
		} else if !fi.IsDir() {
			return "", fmt.Errorf("%s is not a directory (%s): %w", p, fi.Mode().Type(), errdefs.ErrInvalidArgument)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return "", err
		}
		parent = p
	}
	return filepath.Join(parent, components[len(components)-1]), nil
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
