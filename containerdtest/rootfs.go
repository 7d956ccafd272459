package containerdtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Rootfs returns a busybox root filesystem for the containers of t, built
// on first use from Config.Busybox under the daemon's directory and shared
// by every test of the daemon. Containers must not write to it: Spec makes
// it read-only and mounts a tmpfs on /tmp. Without busybox, Rootfs skips t
// or fails it, as New does.
func (d *Daemon) Rootfs(t testing.TB) string {
	t.Helper()
	d.rootfs.once.Do(func() {
		dir := filepath.Join(d.Dir, "rootfs")
		if err := BuildRootfs(dir, d.cfg.Busybox); err != nil {
			d.rootfs.err = err
			return
		}
		d.rootfs.dir = dir
	})
	if d.rootfs.err != nil {
		SkipOrFail(t, d.rootfs.err)
	}
	return d.rootfs.dir
}

// BuildRootfs builds a busybox root filesystem in dir, creating it: busybox
// itself with a link per applet in /bin, the directories a container's
// mounts need, and an /etc with root and nobody. busybox must be statically
// linked; empty means DefaultBusybox.
func BuildRootfs(dir, busybox string) error {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	if _, err := os.Stat(busybox); err != nil {
		return fmt.Errorf("no busybox for the test rootfs (install a static busybox, e.g. Debian's busybox-static): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := populateRootfs(dir, busybox); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	return nil
}

func populateRootfs(dir, busybox string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
