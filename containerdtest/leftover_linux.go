package containerdtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RuncRoot is where the runc shim keeps container state, per namespace,
// for every containerd on the host.
const RuncRoot = "/run/containerd/runc"

const cgroupRoot = "/sys/fs/cgroup"

// RemoveNamespace removes what the containers of namespace ns leave on the
// host outside the daemon's directory: runc's state root of the namespace
// (RuncRoot/<ns>) and the namespace's cgroups, which Spec creates under
// /<ns> (/sys/fs/cgroup/<controller>/<ns> on cgroup v1,
// /sys/fs/cgroup/<ns> on v2). Daemon.Close calls it for the namespaces the
// daemon gave out; programs that use other namespaces call it after their
// containers are deleted or the daemon is closed. Processes still in the
// namespace's cgroups (a container containerd lost track of) are killed
// first; one that outlives SIGKILL is reported in the error.
func RemoveNamespace(ns string) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	// A container whose task record containerd lost (killed while
	// creating it, or a 2.x restart that dropped it) keeps its processes:
	// a `runc init` blocked before start holds its cgroups forever. The
	// namespace's cgroups are the test's own, so whatever runs in them is
	// ended before they are removed.
	dirs := cgroupDirs(ns)
	errs := []error{killCgroupProcs(dirs), os.RemoveAll(filepath.Join(RuncRoot, ns))}
	for _, dir := range dirs {
		errs = append(errs, removeCgroup(dir))
	}
	return errors.Join(errs...)
}

// killCgroupProcs SIGKILLs every process in the cgroups below dirs and
// waits, a bounded time, until they are gone.
func killCgroupProcs(dirs []string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := cgroupProcs(dirs)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes outlive SIGKILL in the namespace's cgroups: %v", pids)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // the kernel ends them asynchronously
	}
}

// cgroupProcs lists the pids in the cgroups below dirs.
func cgroupProcs(dirs []string) []int {
	seen := make(map[int]bool)
	var pids []int
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// Leftovers returns what RemoveNamespace would remove that exists now: a
// program checks that it is empty after cleaning up.
func Leftovers(ns string) []string {
	if checkNamespace(ns) != nil {
		return nil
	}
	var out []string
	if _, err := os.Stat(filepath.Join(RuncRoot, ns)); err == nil {
		out = append(out, filepath.Join(RuncRoot, ns))
	}
	return append(out, cgroupDirs(ns)...)
}

// checkNamespace refuses names that would reach outside the namespace's
// own directories.
func checkNamespace(ns string) error {
	if ns == "" || strings.ContainsAny(ns, "/.") {
		return fmt.Errorf("invalid namespace %q", ns)
	}
	return nil
}

// cgroupDirs returns the existing cgroup directories of namespace ns: one
// per v1 controller (and the hybrid layout's unified tree), or, on a pure
// cgroup v2 host, the one below the root.
func cgroupDirs(ns string) []string {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", ns))
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		if fi, err := os.Stat(filepath.Join(cgroupRoot, ns)); err == nil && fi.IsDir() {
			dirs = append(dirs, filepath.Join(cgroupRoot, ns))
		}
	}
	return dirs
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
	return shimsWith(func(arg string) bool { return arg == address || arg == "unix://"+address })
}

// ShimsUnder returns the pids of shim processes serving a containerd whose
// socket is somewhere under dir, such as the containerd an engine under
// test started by itself.
func ShimsUnder(dir string) []int {
	prefix := filepath.Clean(dir) + "/"
	return shimsWith(func(arg string) bool {
		return strings.HasPrefix(strings.TrimPrefix(arg, "unix://"), prefix)
	})
}

// shimsWith returns the pids of shim processes with an argument that
// matches.
func shimsWith(match func(arg string) bool) []int {
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
		if slices.ContainsFunc(args[1:], match) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
