package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// makeBundle creates the bundle directory. Windows containers have no user
// namespace to remap the bundle for, and their stdio goes through named
// pipes, not files in the bundle.
func makeBundle(bundleDir string, ociSpec *specs.Spec) (path string, created bool, _ error) {
	if uid, gid := remappedRoot(ociSpec); uid != 0 || gid != 0 {
		return "", false, fmt.Errorf("bundle %s: user namespaces: %w", bundleDir, errdefs.ErrNotImplemented)
	}
	switch err := os.Mkdir(bundleDir, 0o700); {
	case err == nil:
		return bundleDir, true, nil
	case errors.Is(err, os.ErrExist):
		if fi, err := os.Lstat(bundleDir); err != nil || !fi.IsDir() {
			return bundleDir, false, fmt.Errorf("bundle %s is not a directory: %w", bundleDir, errdefs.ErrInvalidArgument)
		}
		return bundleDir, false, nil
	default:
		if err := os.MkdirAll(bundleDir, 0o700); err != nil {
			return "", false, fmt.Errorf("bundle %s: %w", bundleDir, fsError(err))
		}
		return bundleDir, true, nil
	}
}

// sweepOrphans does nothing on Windows: stdio goes through named pipes, so
// a bundle left behind holds nothing the sweep could prove is its own.
func (c *Client) sweepOrphans(context.Context) {}
