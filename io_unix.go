//go:build unix

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// fifoPaths returns the FIFO paths of process processID in bundleDir, in
// moby's layout: <bundle>/<processID>-stdin|-stdout|-stderr. There is no
// stdin FIFO without withStdin and no stderr FIFO with a terminal (the
// terminal carries both streams).
func fifoPaths(bundleDir, processID string, withStdin, withTerminal bool) cio.Config {
	cfg := cio.Config{
		Terminal: withTerminal,
		Stdout:   filepath.Join(bundleDir, processID+"-stdout"),
	}
	if withStdin {
		cfg.Stdin = filepath.Join(bundleDir, processID+"-stdin")
	}
	if !withTerminal {
		cfg.Stderr = filepath.Join(bundleDir, processID+"-stderr")
	}
	return cfg
}

// newFIFOSet makes the FIFOs of a new process and returns them as a set whose
// Close removes them. Callers hold the client's reservation for the
// process ID. When something is in the way at a FIFO path, inUse asks
// containerd whether the process exists (then its error is returned:
// those FIFOs are the live process's); if not, a FIFO or symlink there is
// a leftover of an earlier process (a crash, an engine restart) and is
// replaced. A regular file or directory there, or a bundle directory that
// is a symlink, is an error. On error the FIFOs made so far are removed and
// what was in the way is left alone.
func newFIFOSet(owner fifoOwner, cfg cio.Config, inUse func() error) (_ *cio.FIFOSet, retErr error) {
	var paths []string
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	remove := func(fifos []string) error {
		var errs []error
		for _, p := range fifos {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			owner.log().WithError(err).Warn("failed to remove fifos")
			return err
		}
		return nil
	}
	if len(paths) > 0 {
		if fi, err := os.Lstat(filepath.Dir(paths[0])); err != nil {
			return nil, fmt.Errorf("bundle of fifos: %w", fsError(err))
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("bundle %s is not a directory: %w", filepath.Dir(paths[0]), errdefs.ErrFailedPrecondition)
		}
	}
	var made []string
	defer func() {
		if retErr != nil {
			_ = remove(made)
		}
	}()
	checked := false
	for _, p := range paths {
		err := mkfifo(p)
		if errors.Is(err, os.ErrExist) {
			if !checked {
				checked = true
				if err := inUse(); err != nil {
					return nil, err
				}
			}
			err = replaceStale(p)
		}
		if err != nil {
			return nil, err
		}
		made = append(made, p)
	}
	return cio.NewFIFOSet(cfg, func() error { return remove(paths) }), nil
}

// mkfifo creates a FIFO at p readable and writable by root only. It fails
// with an error matching os.ErrExist when anything is at p.
func mkfifo(p string) error {
	if err := unix.Mkfifo(p, 0o600); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("fifo %s: %w", p, os.ErrExist)
		}
		return fmt.Errorf("create fifo %s: %w", p, fsError(err))
	}
	if umaskKeepsOwnerBits() {
		return nil
	}
	// Mkfifo applied a umask that masks owner bits; make the mode exact.
	if err := os.Chmod(p, 0o600); err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("chmod fifo %s: %w", p, fsError(err))
	}
	return nil
}

// umaskKeepsOwnerBits reports whether the process's umask, as read once
// from /proc, leaves the owner's read and write bits alone, so that mkfifo
// makes mode 0600 exactly and needs no chmod after it. Unknown (no /proc):
// false. A umask changed later can only take bits away, which keeps the
// FIFOs root only.
var umaskKeepsOwnerBits = sync.OnceValue(readUmaskKeepsOwnerBits)

func readUmaskKeepsOwnerBits() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err == nil && mask&0o600 == 0
		}
	}
	return false
}

// replaceStale replaces a leftover FIFO or symlink at p with a new FIFO; a
// regular file or directory is refused.
func replaceStale(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("fifo %s: %w", p, fsError(err))
	}
	switch fi.Mode().Type() {
	case os.ModeNamedPipe, os.ModeSymlink:
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove stale fifo %s: %w", p, err)
		}
	default:
		return fmt.Errorf("fifo path %s is taken by a %s: %w", p, describeMode(fi.Mode()), errdefs.ErrFailedPrecondition)
	}
	if err := mkfifo(p); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("fifo %s created concurrently: %w", p, errdefs.ErrConflict)
		}
		return err
	}
	return nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	default:
		return m.Type().String()
	}
}

// newDirectIO opens the FIFOs of fifos. They outlive the request: opening
// the stdin FIFO completes only when the shim opens its end, after the
// call that creates the process has returned.
func newDirectIO(ctx context.Context, fifos *cio.FIFOSet) (*cio.DirectIO, error) {
	dio, err := cio.NewDirectIO(context.WithoutCancel(ctx), fifos)
	if err != nil {
		return nil, fmt.Errorf("open fifos: %w", err)
	}
	return dio, nil
}
