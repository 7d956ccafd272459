package containerdtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

func platformCheck() error {
	if os.Geteuid() != 0 {
		return errors.New("containerd and runc need root")
	}
	return nil
}

// sysProcAttr puts containerd in a process group of its own, so that a
// Ctrl-C on the test does not reach it before Close stops it in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// deleteRuncState force-deletes, with runc, the containers of the tasks
// the daemon still has on disk, so that a test that failed halfway leaves
// no process behind, then removes the runc state and cgroups of their
// namespaces and of namespaces.
func (d *Daemon) deleteRuncState(namespaces []string) error {
	runc, err := lookPathIn("runc", d.cfg.path())
	if err != nil {
		return err
	}
	taskDirs, _ := filepath.Glob(filepath.Join(d.State, "io.containerd.runtime.v2.task", "*", "*"))
	for _, dir := range taskDirs {
		ns, id := filepath.Base(filepath.Dir(dir)), filepath.Base(dir)
		_ = exec.Command(runc, "--root", filepath.Join(RuncRoot, ns), "delete", "--force", id).Run()
		namespaces = append(namespaces, ns)
	}
	var errs []error
	seen := make(map[string]bool)
	for _, ns := range namespaces {
		if !seen[ns] {
			seen[ns] = true
			errs = append(errs, RemoveNamespace(ns))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts whatever a crashed test left mounted below
// dir, deepest first, so that the directory can be removed.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}
