package containerdtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// TestCloseCleansUp: Close of a daemon with a running container and a
// mount in its directory leaves nothing: no containerd, shim or container
// process, no runc state or cgroup of the namespace, no directory.
func TestCloseCleansUp(t *testing.T) {
	d, ctx, ns, task := startOwnDaemon(t)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pids := append(d.Shims(), int(task.Pid()))
	if len(pids) != 2 {
		t.Fatalf("shims and container: %v, want one of each", pids)
	}
	if left := containerdtest.Leftovers(ns); len(left) == 0 {
		t.Fatal("a running container has no runc state or cgroup: Leftovers finds nothing")
	}
	mnt := filepath.Join(d.Dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d.Running() {
		t.Fatal("containerd running after Close")
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlives Close", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling the kernel's reaping, not ordering
		}
	}
	if left := containerdtest.Leftovers(ns); len(left) > 0 {
		t.Fatalf("left after Close: %v", left)
	}
	if _, err := os.Stat(d.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Close: %v", d.Dir, err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := d.Start(ctx); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestEnvironment: containerd and its shims run with the binary dir first
// in PATH, then the test's own PATH (where a criu or runc wrapper may come
// first), with TMPDIR in the daemon's directory, and with Config.Env.
func TestEnvironment(t *testing.T) {
	wrappers := t.TempDir()
	t.Setenv("PATH", wrappers+string(os.PathListSeparator)+os.Getenv("PATH"))
	cfg := containerdtest.Config{Env: []string{"CONTAINERDTEST_MARK=yes"}, LogLevel: "debug"}
	d := containerdtest.New(t, cfg)
	ctx, _ := d.Namespace(t)
	cli := d.Client(t)
	id := containerdtest.ID(t)
	ctr, err := cli.NewContainer(ctx, id, containerd.WithSpec(d.Spec(t, ctx, id, []string{"sleep", "600"})),
		containerd.WithRuntime("io.containerd.runc.v2", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.NewTask(ctx, cio.NullIO); err != nil {
		t.Fatal(err)
	}
	shims := d.Shims()
	if len(shims) != 1 {
		t.Fatalf("shims %v, want one", shims)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", shims[0]))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	// containerd puts its opt plugin's bin dir in front.
	index := func(dir string) int {
		for i, p := range filepath.SplitList(env["PATH"]) {
			if p == dir {
				return i
			}
		}
		return -1
	}
	binDir, wrap, sys := index(os.Getenv(containerdtest.EnvBinDir)), index(wrappers), index("/usr/sbin")
	if binDir < 0 || wrap < 0 || sys < 0 || !(binDir < wrap && wrap < sys) {
		t.Fatalf("shim PATH %q: want the binary dir, then the test's PATH (%s first), then the system's", env["PATH"], wrappers)
	}
	if env["TMPDIR"] != filepath.Join(d.Dir, "tmp") {
		t.Fatalf("shim TMPDIR %q, want %s", env["TMPDIR"], filepath.Join(d.Dir, "tmp"))
	}
	if env["CONTAINERDTEST_MARK"] != "yes" {
		t.Fatalf("Config.Env not passed on: %q", env["CONTAINERDTEST_MARK"])
	}
	log, err := os.ReadFile(d.LogPath)
	if err != nil || !bytes.Contains(log, []byte("level=debug")) {
		t.Fatalf("no debug lines in the log with LogLevel debug (%v)", err)
	}
}

// processGone reports whether pid no longer exists (or is a zombie about
// to be reaped).
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return bytes.Contains(b, []byte(") Z "))
}

// TestCloseEndsLostContainers: a container whose task record containerd
// lost (killed while creating it; containerd 2.x drops such tasks when it
// restarts) leaves a `runc init` blocked before start, which holds its
// cgroups and nothing would end. Close finds it through the namespace's
// cgroups, ends it and removes them.
func TestCloseEndsLostContainers(t *testing.T) {
	d, _, ns, task := startOwnDaemon(t)
	id := task.ID()
	initPid := int(task.Pid())
	// containerd and the shim die; the task's record goes with them.
	shims := d.Shims()
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range shims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.RemoveAll(filepath.Join(d.State, "io.containerd.runtime.v2.task", ns, id)); err != nil {
		t.Fatal(err)
	}
	if processGone(initPid) {
		t.Fatal("runc init did not outlive its shim: the test shows nothing")
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(initPid) {
		if time.Now().After(deadline) {
			t.Fatalf("runc init %d outlives Close", initPid)
		}
		time.Sleep(10 * time.Millisecond) // polling the kernel
	}
	if left := containerdtest.Leftovers(ns); len(left) != 0 {
		t.Fatalf("left after Close: %v", left)
	}
}

// startOwnDaemon starts a daemon of the test's own, which the test closes
// (Close also runs when it ends), and creates a task running "sleep 600"
// in a namespace of its own, not started.
func startOwnDaemon(t *testing.T) (*containerdtest.Daemon, context.Context, string, containerd.Task) {
	t.Helper()
	cfg := containerdtest.Config{}
	if err := cfg.Check(); err != nil {
		containerdtest.SkipOrFail(t, err)
	}
	d, err := containerdtest.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() }) // when the test fails before Close
	ctx, ns := d.Namespace(t)
	cli, err := containerd.New(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return d, ctx, ns, newSleeper(t, ctx, d, cli)
}
