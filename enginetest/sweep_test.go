//go:build enginetest && linux

package enginetest

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scenarioSweep: dockerd manages its own containerd, whose state shares
// <exec-root>/containerd with libcontainerd's bundles; a --live-restore
// dockerd restarted after the orphan sweep's grace period must find all of
// containerd's files and its container as it left them.
func scenarioSweep(t *testing.T, e *env, r *result) {
	if _, err := os.Lstat("/run/containerd/containerd.sock"); err == nil {
		t.Fatal("/run/containerd/containerd.sock exists: dockerd would use that system containerd instead of starting its own; run on a machine without one")
	}
	d := e.newDockerd(nil, "--live-restore")
	d.start()
	d.importImage()
	const name = "sweep-ctr"
	e.runWaiting(d, name, 3)
	d.waitRunning(name)
	pid := d.containerPid(name)
	stateDir := filepath.Join(d.execRoot, "containerd")
	before := listTree(t, stateDir)

	if err := d.stop(); err != nil {
		t.Fatalf("stop dockerd: %v", err)
	}
	// Older than any grace period the sweep may use, without waiting for it.
	if err := ageTree(stateDir, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	d.start()
	after := listTree(t, stateDir)

	var missing []string
	for p := range before {
		if _, ok := after[p]; !ok {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	r.same("entries under <exec-root>/containerd before the restart", "%d", len(before))
	shown := missing
	if len(shown) > 5 {
		shown = append(shown[:5:5], "...")
	}
	r.require("entries of containerd's missing after the restart", len(missing) == 0, "none missing",
		"%d%s", len(missing), bracket(strings.Join(shown, ", ")))
	_, daemonKept := after["daemon"]
	r.require("<exec-root>/containerd/daemon kept", daemonKept, "kept", "%t", daemonKept)

	out, _, _ := d.docker("inspect", "-f", "{{.State.Running}}", name)
	newPid, _, _ := d.docker("inspect", "-f", "{{.State.Pid}}", name)
	r.require("container running after the restart, same pid", out == "true" && newPid == strconv.Itoa(pid), "running, same pid",
		"running=%s samePid=%t", out, newPid == strconv.Itoa(pid))
	execOut, code, _ := d.docker("exec", name, "echo", "exec-ok")
	r.same("docker exec after the restart", "exit %d: %s", code, execOut)
	_, code, _ = d.docker("stop", "-t", "1", name)
	r.same("docker stop after the restart", "exit %d, then %s", code, d.state(name))
	e.checkExitFilter(r, d)
}

// listTree returns the paths under dir, relative, with a type letter.
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		m[rel] = d.Type().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ageTree(dir string, when time.Time) error {
	ts := []unix.Timeval{unix.NsecToTimeval(when.UnixNano()), unix.NsecToTimeval(when.UnixNano())}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Lutimes: never through a symlink out of the tree.
		if err := unix.Lutimes(path, ts); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	})
}
