package containerdtest_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/containerdtest"
	"github.com/ctrkit/libcontainerd/internal/testutil"
)

// ctrd is the daemon of the tests that neither stop nor close it.
var ctrd containerdtest.Shared

func TestMain(m *testing.M) {
	// This repository chooses its containerd with
	// LIBCONTAINERD_TEST_CONTAINERD; the kit reads LIBCONTAINERD_TEST_BIN_DIR.
	if os.Getenv(containerdtest.EnvBinDir) == "" {
		if cfg, _ := testutil.Config(testutil.Flavor()); cfg.BinDir != "" {
			os.Setenv(containerdtest.EnvBinDir, cfg.BinDir)
		}
	}
	flag.Parse()
	if err := canRun(); err != nil && !containerdtest.Required() {
		// An Example cannot skip itself: leave the examples out where the
		// tests skip.
		fmt.Fprintf(os.Stderr, "containerdtest: examples not run: %v\n", err)
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() == "" {
			_ = f.Value.Set("^Example")
		}
	}
	code := m.Run()
	if err := ctrd.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "close shared containerd: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// canRun says why the examples cannot run here.
func canRun() error {
	if err := (containerdtest.Config{}).Check(); err != nil {
		return err
	}
	_, err := os.Stat(containerdtest.DefaultBusybox)
	return err
}

func TestID(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"plain", "testid-plain"},
		{"With Spaces/and slash", "testid-with-spaces-and-slash"},
		{"trailing..", "testid-trailing"},
		{strings.Repeat("long", 30), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := containerdtest.ID(t)
			if tc.want != "" && got != tc.want {
				t.Fatalf("ID = %q, want %q", got, tc.want)
			}
			if len(got) > 63 || strings.Trim(got, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Fatalf("ID %q is not a containerd identifier", got)
			}
			if again := containerdtest.ID(t); again != got {
				t.Fatalf("ID not stable: %q then %q", got, again)
			}
			if part := containerdtest.ID(t, "exec"); part != got+"-exec" && len(got) <= 55 {
				t.Fatalf("ID(t, exec) = %q, want %q", part, got+"-exec")
			}
		})
	}
}

// TestCheck: a configuration that cannot run says why.
func TestCheck(t *testing.T) {
	fake := t.TempDir()
	for _, name := range []string{"containerd", "containerd-shim-runc-v2"} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	noExec := t.TempDir()
	for _, name := range []string{"containerd", "containerd-shim-runc-v2"} {
		if err := os.WriteFile(filepath.Join(noExec, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	platformErr := (containerdtest.Config{BinDir: fake}).Check()
	for _, tc := range []struct {
		name    string
		binDir  string
		wantErr string
	}{
		{"empty dir", t.TempDir(), "containerd not found in"},
		{"not executable", noExec, "not an executable file"},
		{"missing dir", filepath.Join(fake, "nope"), "containerd not found in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (containerdtest.Config{BinDir: tc.binDir}).Check()
			if err == nil {
				t.Fatal("Check passed")
			}
			if platformErr == nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check: %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
	if platformErr != nil && runtime.GOOS == "linux" && os.Geteuid() == 0 {
		t.Fatalf("Check of a complete binary dir: %v", platformErr)
	}
}

// recorder is a testing.TB that records Skipf and Fatalf and, like the
// real ones, ends the goroutine that calls them.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		require              string
		wantSkip, wantFailed bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	} {
		t.Run("require="+tc.require, func(t *testing.T) {
			t.Setenv(containerdtest.EnvRequireIntegration, tc.require)
			r := &recorder{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				containerdtest.SkipOrFail(r, errors.New("no runc here"))
			}()
			<-done
			if (r.skipped != "") != tc.wantSkip || (r.failed != "") != tc.wantFailed {
				t.Fatalf("skipped %q, failed %q; want skip %v, fail %v", r.skipped, r.failed, tc.wantSkip, tc.wantFailed)
			}
			if !strings.Contains(r.skipped+r.failed, "no runc here") {
				t.Fatalf("the reason is lost: skipped %q, failed %q", r.skipped, r.failed)
			}
		})
	}
}

// TestRunContainer: the shared daemon answers, and a container built from
// its rootfs and Spec runs with a read-only root, a writable /tmp and its
// output read back.
func TestRunContainer(t *testing.T) {
	d := ctrd.Daemon(t)
	ctx, ns := d.Namespace(t)
	cli := d.Client(t)

	v, err := cli.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.Version, "1.") && !strings.HasPrefix(v.Version, "2.") && !strings.HasPrefix(v.Version, "v") {
		t.Fatalf("containerd version %q", v.Version)
	}
	t.Logf("containerd %s (%s)", v.Version, v.Revision)

	id := containerdtest.ID(t)
	spec := d.Spec(t, ctx, id, []string{"sh", "-c", `echo hello > /tmp/f && cat /tmp/f && ! touch /f 2>/dev/null && echo read-only`})
	if !spec.Root.Readonly || spec.Linux.CgroupsPath != "/"+ns+"/"+id {
		t.Fatalf("spec root %+v, cgroups path %q", spec.Root, spec.Linux.CgroupsPath)
	}
	out, status := runToExit(t, ctx, cli, id, spec)
	if status != 0 || out != "hello\nread-only\n" {
		t.Fatalf("exit status %d, output %q", status, out)
	}
}

// TestStopStartRestart: Kill, Terminate and Restart stop containerd and
// bring it back on the same root and state, while the shim and the
// container keep running.
func TestStopStartRestart(t *testing.T) {
	d := containerdtest.New(t, containerdtest.Config{})
	ctx, _ := d.Namespace(t)
	task := newSleeper(t, ctx, d, d.Client(t))
	id := task.ID()
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := task.Pid()
	shims := d.Shims()
	if len(shims) != 1 {
		t.Fatalf("shims serving the daemon: %v, want one", shims)
	}
	if under := containerdtest.ShimsUnder(filepath.Dir(d.Address)); !slices.Equal(under, shims) {
		t.Fatalf("shims under the daemon's directory: %v, want %v", under, shims)
	}
	// A directory whose name is a prefix of the daemon's is another one.
	if dir := filepath.Dir(d.Address); len(filepath.Base(dir)) > 1 {
		if other := containerdtest.ShimsUnder(dir[:len(dir)-1]); len(other) != 0 {
			t.Fatalf("shims under %s: %v, want none", dir[:len(dir)-1], other)
		}
	}

	for _, tc := range []struct {
		name string
		stop func() error
	}{
		{"kill", d.Kill},
		{"terminate", func() error { return d.Terminate(ctx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.stop(); err != nil {
				t.Fatal(err)
			}
			if d.Running() {
				t.Fatal("containerd still running")
			}
			if err := d.Kill(); err == nil {
				t.Fatal("Kill of a stopped daemon succeeded")
			}
			if got := d.Shims(); len(got) != 1 || got[0] != shims[0] {
				t.Fatalf("shims %v while containerd is down, want %v", got, shims)
			}
			if err := d.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Start(ctx); err == nil {
				t.Fatal("Start of a running daemon succeeded")
			}
			assertRunning(t, ctx, d, id, pid)
		})
	}
	t.Run("restart", func(t *testing.T) {
		if err := d.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		assertRunning(t, ctx, d, id, pid)
	})
	// The namespace's clean-up kills and deletes the container.
}

// assertRunning checks, on a new connection, that the task of container id
// is running with pid.
func assertRunning(t *testing.T, ctx context.Context, d *containerdtest.Daemon, id string, pid uint32) {
	t.Helper()
	cli := d.Client(t)
	ctr, err := cli.LoadContainer(ctx, id)
	if err != nil {
		t.Fatalf("container lost: %v", err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatalf("task lost: %v", err)
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != containerd.Running || task.Pid() != pid {
		t.Fatalf("task status %+v (%v), pid %d; want running, pid %d", st, err, task.Pid(), pid)
	}
}

// TestShared: one daemon for every caller until Close.
func TestShared(t *testing.T) {
	var s containerdtest.Shared
	if err := s.Config.Check(); err != nil {
		containerdtest.SkipOrFail(t, err)
	}
	var daemons []*containerdtest.Daemon
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			daemons = append(daemons, s.Daemon(t))
		})
	}
	if len(daemons) != 2 {
		t.FailNow() // a subtest failed
	}
	if daemons[0] != daemons[1] {
		t.Fatal("two daemons")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if daemons[0].Running() {
		t.Fatal("running after Close")
	}
	if _, err := os.Stat(daemons[0].Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Close: %v", daemons[0].Dir, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSharedClosedUnused: closing a Shared that never started a daemon
// starts none later.
func TestSharedClosedUnused(t *testing.T) {
	var s containerdtest.Shared
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Daemon(r)
	}()
	<-done
	if r.failed == "" && r.skipped == "" {
		t.Fatal("Daemon after Close returned a daemon")
	}
}

// runToExit creates container id with spec, runs its task to the end and
// returns its stdout and exit status, deleting both.
func runToExit(t *testing.T, ctx context.Context, cli *containerd.Client, id string, spec *specs.Spec) (string, uint32) {
	t.Helper()
	ctr, err := cli.NewContainer(ctx, id, containerd.WithSpec(spec), containerd.WithRuntime("io.containerd.runc.v2", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Delete(ctx)
	out := &lockedBuffer{}
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, out, io.Discard), cio.WithFIFODir(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(ctx, containerd.WithProcessKill)
	exitC, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var st containerd.ExitStatus
	select {
	case st = <-exitC:
	case <-time.After(30 * time.Second):
		t.Fatal("container did not exit")
	}
	// Delete waits for the IO to be copied.
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String(), st.ExitCode()
}

// lockedBuffer is a bytes.Buffer written by cio's copy goroutine and read
// by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newSleeper creates a container running "sleep 600" in d and its task,
// not started, with no stdio.
func newSleeper(t *testing.T, ctx context.Context, d *containerdtest.Daemon, cli *containerd.Client) containerd.Task {
	t.Helper()
	id := containerdtest.ID(t)
	ctr, err := cli.NewContainer(ctx, id, containerd.WithSpec(d.Spec(t, ctx, id, []string{"sleep", "600"})),
		containerd.WithRuntime("io.containerd.runc.v2", nil))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	return task
}
