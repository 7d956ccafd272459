package testutil

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/leftover"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

var rootfs struct {
	once sync.Once
	dir  string
	err  error
}

// Rootfs returns a read-only busybox root filesystem shared by all tests of
// the process, built on first use from Debian's busybox-static. Containers
// must not write to it; Spec mounts a tmpfs on /tmp for that.
func Rootfs(t testing.TB) string {
	t.Helper()
	rootfs.once.Do(func() {
		rootfs.dir, rootfs.err = buildRootfs()
	})
	if rootfs.err != nil {
		skipOrFail(t, rootfs.err)
	}
	return rootfs.dir
}

func removeRootfs() {
	if rootfs.dir != "" {
		_ = os.RemoveAll(rootfs.dir)
	}
}

// BuildRootfs builds a busybox rootfs in a new temporary directory; the
// caller removes it.
func BuildRootfs() (string, error) { return buildRootfs() }

func buildRootfs() (string, error) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		return "", fmt.Errorf("busybox-static not installed (run `make tools`): %w", err)
	}
	dir, err := os.MkdirTemp("", "lcd-rootfs-")
	if err != nil {
		return "", err
	}
	if err := populateRootfs(dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func populateRootfs(dir string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
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

// Spec returns an OCI spec for container id that runs args in the shared
// busybox rootfs (read-only, with a tmpfs on /tmp), in a cgroup named after
// the namespace in ctx. opts are applied last.
func Spec(t testing.TB, ctx context.Context, id string, args []string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	s, err := NewSpec(ctx, Rootfs(t), id, args, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var nonIdentifier = regexp.MustCompile(`[^A-Za-z0-9]+`)

// runSuffix tells this test process's namespaces from other runs'.
var runSuffix = func() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// ID turns t's name plus parts into a containerd identifier: safe as a path
// component, at most 76 characters, unique per test name.
func ID(t testing.TB, parts ...string) string {
	name := strings.Join(append([]string{t.Name()}, parts...), "-")
	id := strings.Trim(nonIdentifier.ReplaceAllString(name, "-"), "-")
	id = strings.ToLower(id)
	if len(id) > 60 {
		sum := sha256.Sum256([]byte(name))
		id = strings.Trim(id[:50], "-") + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return id
}

// Context returns a context in a namespace of t's own (named after t) that
// is cancelled when t ends, and the namespace. When t ends, everything left
// in the namespace on the shared daemon is removed.
func Context(t testing.TB, d *Daemon) (context.Context, string) {
	t.Helper()
	// runc keeps container state under /run/containerd/runc/<namespace>
	// for every daemon on the host: a suffix of this process's own keeps
	// concurrent or crashed test runs from colliding there.
	ns := ID(t) + "-" + runSuffix
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), ns))
	t.Cleanup(func() {
		cancel()
		d.cleanNamespace(t, ns)
	})
	return ctx, ns
}

// cleanNamespace force-deletes every task and container left in ns, then the
// namespace itself; a test that left something behind fails.
func (d *Daemon) cleanNamespace(t testing.TB, ns string) {
	t.Helper()
	d.mu.Lock()
	running := d.cmd != nil
	d.mu.Unlock()
	if !running {
		return
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	cli, err := containerd.New(d.Address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Errorf("clean namespace %s: %v", ns, err)
		return
	}
	defer cli.Close()
	ctrs, err := cli.Containers(ctx)
	if err != nil {
		t.Errorf("clean namespace %s: %v", ns, err)
		return
	}
	for _, c := range ctrs {
		if task, err := c.Task(ctx, nil); err == nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("clean namespace %s: delete container %s: %v", ns, c.ID(), err)
		}
	}
	if err := cli.NamespaceService().Delete(ctx, ns); err != nil && !errdefs.IsNotFound(err) {
		t.Logf("clean namespace %s: %v", ns, err)
	}
	// runc's state root and the namespace's parent cgroups outlive its
	// containers.
	if err := leftover.RemoveNamespace(ns); err != nil {
		t.Logf("clean namespace %s: %v", ns, err)
	}
}
