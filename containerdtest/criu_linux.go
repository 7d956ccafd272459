package containerdtest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// KillCRIU kills, with SIGKILL, the CRIU processes below the shim
// processes shims (the criu that runc starts to dump or restore a
// container; see CRIU) and returns their pids. A CRIU that hangs in a dump
// keeps the container's processes frozen and traced, and outlives runc
// and the shim when they are killed; killing it ends the dump with an
// error.
func KillCRIU(shims []int) []int {
	var killed []int
	for _, pid := range CRIU(shims) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// CRIU returns the pids of the CRIU processes below the shim processes
// shims. They are found as descendants of the shims, never by name across
// the host: a process counts as CRIU when an argument of its command line
// is a file named criu (the machine's criu, a wrapper that runs one
// through its own loader, or a stand-in script).
func CRIU(shims []int) []int {
	children := make(map[int][]int)
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The parent's pid is the second field after the parenthesised
		// command name.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		pid, err1 := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, err2 := strconv.Atoi(fields[1])
		if err1 == nil && err2 == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var found []int
	queue := slices.Clone(shims)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, child := range children[pid] {
			queue = append(queue, child)
			if isCRIU(child) {
				found = append(found, child)
			}
		}
	}
	return found
}

// KillCRIU kills the CRIU processes below the daemon's shims of namespace
// ns, or of every namespace when ns is "" (see the function KillCRIU).
func (d *Daemon) KillCRIU(ns string) []int { return KillCRIU(d.shimsIn(ns)) }

// CRIU returns the pids of the CRIU processes below the daemon's shims of
// namespace ns, or of every namespace when ns is "".
func (d *Daemon) CRIU(ns string) []int { return CRIU(d.shimsIn(ns)) }

// shimsIn returns the daemon's shims of namespace ns (all when ns is "").
func (d *Daemon) shimsIn(ns string) []int {
	shims := d.Shims()
	if ns == "" {
		return shims
	}
	return slices.DeleteFunc(shims, func(pid int) bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return true
		}
		args := strings.Split(string(b), "\x00")
		i := slices.Index(args, "-namespace")
		return i < 0 || i+1 >= len(args) || args[i+1] != ns
	})
}

func isCRIU(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return slices.ContainsFunc(strings.Split(string(b), "\x00"), func(arg string) bool {
		return filepath.Base(arg) == "criu"
	})
}
