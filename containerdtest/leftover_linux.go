// Package leftover finds and removes what containers of a private containerd
// leave on the host outside the daemon's own directory: runc's state root
// of a namespace (/run/containerd/runc/<ns>), the namespace's cgroups (with
// oci.WithNamespacedCgroup, /sys/fs/cgroup/<controller>/<ns>) and shim
// processes still serving the daemon's socket.
//
// Programs that start a daemon with testutil.StartDaemon call RemoveNamespace
// for every namespace they used after Daemon.Stop, then Shims to check that
// nothing is running:
//
//	_ = d.Stop()
//	err := leftover.RemoveNamespace(ns)
//	if pids := leftover.Shims(d.Address); len(pids) > 0 { ... }
package leftover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RuncRoot is where the runc shim keeps container state, per namespace,
// for every containerd on the host.
const RuncRoot = "/run/containerd/runc"

const cgroupRoot = "/sys/fs/cgroup"

// RemoveNamespace removes runc's state root of namespace ns and ns's empty
// cgroups. Call it after the namespace's containers are deleted or the
// daemon is stopped: a cgroup that still holds processes is not removed and
// is reported in the error.
func RemoveNamespace(ns string) error {
	if ns == "" || strings.ContainsAny(ns, "/.") {
		return fmt.Errorf("invalid namespace %q", ns)
	}
	errs := []error{os.RemoveAll(filepath.Join(RuncRoot, ns))}
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", ns))
	for _, dir := range dirs {
		errs = append(errs, removeCgroup(dir))
	}
	return errors.Join(errs...)
}

// Paths returns what RemoveNamespace would remove that exists now.
func Paths(ns string) []string {
	var out []string
	if _, err := os.Stat(filepath.Join(RuncRoot, ns)); err == nil {
		out = append(out, filepath.Join(RuncRoot, ns))
	}
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", ns))
	return append(out, dirs...)
}

// removeCgroup removes a cgroup directory and its child cgroups, deepest
// first; cgroupfs removes a directory with rmdir only, its files with it.
func removeCgroup(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, removeCgroup(filepath.Join(dir, e.Name())))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
	}
	return errors.Join(errs...)
}

// Shims returns the pids of shim processes serving the containerd at
// address: their command line names its socket.
func Shims(address string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for _, a := range args {
			if a == address || a == "unix://"+address {
				var pid int
				if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid); err == nil {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}
