//go:build linux

package libcontainerd

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// writeFile writes data to a new private file name in dir and returns its
// path.
func writeFile(t testing.TB, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dirEntries lists what is under dir, for leftover checks.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertEmptyDir fails t if anything is under dir.
func assertEmptyDir(t testing.TB, dir string) {
	t.Helper()
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Errorf("left in %s: %v", dir, left)
	}
}

// snapshotDir lists every path under dir, relative to it and with its
// inode number, sorted: for "nothing was created or replaced" checks.
func snapshotDir(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s@%d", rel, fi.Sys().(*syscall.Stat_t).Ino))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// assertPrivate fails t unless path exists and is not accessible to
// group and others.
func assertPrivate(t testing.TB, path string, wantType os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != wantType {
		t.Errorf("%s is a %v, want %v", path, fi.Mode().Type(), wantType)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("%s has mode %v, accessible to group or others", path, perm)
	}
}

// assertPrivateFIFOs fails t unless the stdin, stdout and stderr FIFOs of
// process id are in bundle and private.
func assertPrivateFIFOs(t testing.TB, bundle, id string) {
	t.Helper()
	for _, s := range []string{"-stdin", "-stdout", "-stderr"} {
		assertPrivate(t, filepath.Join(bundle, id+s), os.ModeNamedPipe)
	}
}

// searchableStateDir makes base/state, a state directory under a new base
// whose parents a remapped root can search, as a bundle with a user
// namespace needs; a component it cannot search is swapped for one of its
// own.
func searchableStateDir(t testing.TB) (base, stateDir string) {
	t.Helper()
	base = t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	stateDir = filepath.Join(base, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return base, stateDir
}

// owner returns the uid and gid that own path.
func owner(t testing.TB, path string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// exited reports whether process pid has exited: it is gone or a zombie
// its parent (the shim) has not reaped yet.
func exited(pid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) == 0 || fields[0] == "Z" || fields[0] == "X"
}

// waitGone waits until process pid has exited.
func waitGone(t testing.TB, pid uint32) {
	t.Helper()
	eventually(t, fmt.Sprintf("pid %d to exit", pid), func() (bool, string) { return exited(pid), "still alive" })
}
