//go:build linux

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestHostileSpecs checks that specs without what a container needs are
// refused as InvalidArgument before anything is created.
func TestHostileSpecs(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	for _, c := range []struct {
		name string
		spec func(id string) *specs.Spec
	}{
		{"nil", func(string) *specs.Spec { return nil }},
		{"empty", func(string) *specs.Spec { return &specs.Spec{} }},
		{"no root", func(id string) *specs.Spec { s := tc.spec(t, id, []string{"true"}); s.Root = nil; return s }},
		{"no process", func(id string) *specs.Spec { s := tc.spec(t, id, []string{"true"}); s.Process = nil; return s }},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testutil.ID(t)
			before := tc.hostileState(t)
			_, err := tc.NewContainer(tc.ctx, id, c.spec(id), runcShim, &runcoptions.Options{})
			wantClass(t, "NewContainer", err, "InvalidArgument")
			_, err = ReplaceContainer(tc.ctx, tc.Client, id, c.spec(id), runcShim, &runcoptions.Options{})
			wantClass(t, "ReplaceContainer", err, "InvalidArgument")
			tc.assertUnchanged(t, "after a refused spec", before)
		})
	}
	t.Run("WithBundle nil spec", func(t *testing.T) {
		bundle := filepath.Join(tc.stateDir, testutil.ID(t))
		err := WithBundle(bundle, nil)(tc.ctx, nil, &containers.Container{})
		wantClass(t, "WithBundle", err, "InvalidArgument")
		if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
			t.Fatalf("bundle: %v", err)
		}
	})
}

// TestHostileShim checks shims that do not exist: containerd takes the
// container and refuses its task, which leaves no FIFOs and no task.
func TestHostileShim(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	for _, c := range []struct{ name, shim string }{
		{"unknown name", "io.containerd.nope.v1"},
		{"not a shim name", "nope"},
		{"missing binary", "/no/such/containerd-shim-nope-v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testutil.ID(t)
			before := tc.hostileState(t)
			ctr, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), c.shim, nil)
			if err != nil {
				assertRuntimeError(t, fmt.Sprintf("NewContainer with shim %q", c.shim), err)
				tc.assertUnchanged(t, "after a refused shim", before)
				return
			}
			_, err = ctr.NewTask(tc.ctx, "", true, (&capture{}).attach)
			assertRuntimeError(t, fmt.Sprintf("NewTask with shim %q", c.shim), err)
			tc.deleteWithoutTask(t, id, ctr)
			tc.assertUnchanged(t, "after Delete", before)
		})
	}
}

// TestHostileRuntimeOptions checks runtime options that marshal but are not
// runc's: refused by NewContainer, and by NewTask for a container another
// client created with them, before any FIFO is made.
func TestHostileRuntimeOptions(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	for _, c := range []struct {
		name string
		opts any
	}{
		{"checkpoint options", &runcoptions.CheckpointOptions{Exit: true}},
		{"process details", &runcoptions.ProcessDetails{ExecID: "x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testutil.ID(t)
			before := tc.hostileState(t)
			_, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), runcShim, c.opts)
			wantClass(t, "NewContainer", err, "InvalidArgument")
			tc.assertUnchanged(t, "after refused options", before)

			// Another client made the container with these options.
			bundle := filepath.Join(tc.stateDir, id)
			if err := os.Mkdir(bundle, 0o700); err != nil {
				t.Fatal(err)
			}
			tc.newMobyContainer(t, id, bundle, tc.spec(t, id, []string{"true"}), c.opts)
			ctr := tc.load(t, id)
			tc.assertNewTaskRefused(t, ctr, "FailedPrecondition")
			tc.deleteWithoutTask(t, id, ctr)
			tc.assertUnchanged(t, "after Delete", before)
		})
	}
}

// TestHostileNilStdio checks that a nil stdio callback is InvalidArgument
// for NewTask, AttachTask and Exec, and that nothing is created or
// changed: no FIFO, no task, no process, and a running task keeps its
// FIFOs.
func TestHostileNilStdio(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	idleCtr := tc.idleContainer(t)
	running := tc.load(t, id)
	before := tc.hostileState(t)
	for _, c := range []call{
		{"NewTask", func(ctx context.Context) error { _, err := idleCtr.NewTask(ctx, "", true, nil); return err }},
		{"AttachTask", func(ctx context.Context) error { _, err := running.AttachTask(ctx, nil); return err }},
		{"Exec", func(ctx context.Context) error {
			_, err := task.Exec(ctx, "nil-stdio", tc.processSpec(t, id, "true"), true, nil)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantClass(t, c.name, c.fn(tc.ctx), "InvalidArgument")
			tc.assertUnchanged(t, "after "+c.name, before)
		})
	}
	tc.assertNoProcess(t, id, "nil-stdio")
	if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
		t.Fatalf("status of the running task: %v %v", st, err)
	}
}

// TestHostileStdioCallback checks stdio callbacks that fail, panic or
// return no IO, for NewTask, Exec and AttachTask: the engine's error is
// returned (its class kept), a panic is Internal, no IO InvalidArgument;
// nothing is left, and a failed AttachTask leaves the running task's FIFOs
// for the next one.
func TestHostileStdioCallback(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	errEngine := errors.New("engine cannot attach")
	errBusy := fmt.Errorf("engine too busy: %w", errdefs.ErrResourceExhausted)
	callbacks := []struct {
		name   string
		attach types.StdioCallback
		check  func(t *testing.T, what string, err error)
	}{
		{"error", func(*cio.DirectIO) (cio.IO, error) { return nil, errEngine }, func(t *testing.T, what string, err error) {
			if !errors.Is(err, errEngine) {
				t.Errorf("%s: %v, want the engine's error", what, err)
			}
		}},
		{"classified error", func(*cio.DirectIO) (cio.IO, error) { return nil, errBusy }, func(t *testing.T, what string, err error) {
			wantClass(t, what, err, "ResourceExhausted")
			if !errors.Is(err, errBusy) {
				t.Errorf("%s: %v, want the engine's error", what, err)
			}
		}},
		{"panic", func(*cio.DirectIO) (cio.IO, error) { panic("engine bug") }, func(t *testing.T, what string, err error) {
			wantClass(t, what, err, "Internal")
		}},
		{"no io", func(*cio.DirectIO) (cio.IO, error) { return nil, nil }, func(t *testing.T, what string, err error) {
			wantClass(t, what, err, "InvalidArgument")
		}},
	}

	t.Run("NewTask", func(t *testing.T) {
		id := testutil.ID(t)
		ctr := tc.newContainer(t, id, []string{"true"})
		before := tc.hostileState(t)
		for _, cb := range callbacks {
			_, err := ctr.NewTask(tc.ctx, "", true, cb.attach)
			cb.check(t, "NewTask, callback "+cb.name, err)
			tc.assertUnchanged(t, "NewTask, callback "+cb.name, before)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Exec", func(t *testing.T) {
		id := testutil.ID(t)
		_, task := tc.runSleeper(t, id)
		before := tc.hostileState(t)
		for _, cb := range callbacks {
			_, err := task.Exec(tc.ctx, "failing", tc.processSpec(t, id, "true"), true, cb.attach)
			cb.check(t, "Exec, callback "+cb.name, err)
			tc.assertUnchanged(t, "Exec, callback "+cb.name, before)
			tc.assertNoProcess(t, id, "failing")
		}
	})

	t.Run("AttachTask", func(t *testing.T) {
		id := testutil.ID(t)
		ctr, task, first := tc.run(t, id, true, []string{"cat"})
		// The engine restarts: its ends of the FIFOs are closed.
		first.die(t)
		loaded := tc.load(t, id)
		before := tc.hostileState(t)
		for _, cb := range callbacks {
			_, err := loaded.AttachTask(tc.ctx, cb.attach)
			cb.check(t, "AttachTask, callback "+cb.name, err)
			tc.assertUnchanged(t, "AttachTask, callback "+cb.name, before)
		}
		// The task's stdin is still open and its FIFOs still connected.
		_, out := tc.attach(t, loaded, task.Pid())
		out.send(t, "still attached\n")
		out.waitOutput(t, "still attached\n")
		out.closeStdin(t)
		tc.finish(t, id, ctr, task)
	})
}

// TestHostileDeleted calls every method of process, task and container
// handles after their Delete: each is NotFound, nothing is created.
func TestHostileDeleted(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr, task, _ := tc.run(t, id, false, []string{"sleep", "3600"})
	p, _ := tc.exec(t, task, "gone", false, "true")
	tc.reap(t, id, "gone", p)
	checkpoints := t.TempDir()
	check := func(t *testing.T, calls []call) {
		before := tc.hostileState(t)
		for _, c := range calls {
			err := c.fn(tc.ctx)
			if errors.Is(err, errNoError) {
				continue
			}
			wantClass(t, c.name, err, "NotFound")
		}
		tc.assertUnchanged(t, "after the calls", before)
		assertEmptyDir(t, checkpoints)
	}
	attach := (&capture{}).attach
	execSpec := tc.processSpec(t, id, "true")
	t.Run("process", func(t *testing.T) { check(t, processCalls(p)) })

	if err := task.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.reap(t, id, id, task)
	t.Run("task", func(t *testing.T) {
		check(t, taskCalls(task, "after-delete", execSpec, filepath.Join(checkpoints, "cp"), attach))
		tc.assertNoProcess(t, id, "after-delete")
	})

	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("container", func(t *testing.T) {
		check(t, everyCall(ctr, task, p, "after-delete", execSpec, filepath.Join(checkpoints, "cp"), attach))
	})
}

// TestHostileCancelledContext calls every method with a cancelled
// context: each returns at once with an error that is context.Canceled,
// and nothing is created or changed.
func TestHostileCancelledContext(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	ctr, task := tc.runSleeper(t, id)
	p, _ := tc.exec(t, task, "sleeper", true, "sleep", "3600")
	t.Cleanup(func() {
		if err := p.Kill(tc.ctx, syscall.SIGKILL); err != nil {
			t.Error(err)
		}
		tc.reap(t, id, "sleeper", p)
	})
	idleCtr := tc.idleContainer(t)
	fresh := testutil.ID(t, "fresh")
	freshSpec := tc.spec(t, fresh, []string{"true"})
	checkpoints := t.TempDir()
	var att recordingAttach

	calls := append(tc.clientCalls(id, fresh, freshSpec),
		call{"ReplaceContainer", func(ctx context.Context) error {
			_, err := ReplaceContainer(ctx, tc.Client, id, freshSpec, runcShim, &runcoptions.Options{})
			return err
		}},
		call{"Container.NewTask (no task)", func(ctx context.Context) error { _, err := idleCtr.NewTask(ctx, "", true, att.attach); return err }},
	)
	calls = append(calls, everyCall(ctr, task, p, "fresh-exec", tc.processSpec(t, id, "true"), filepath.Join(checkpoints, "cp"), att.attach)...)

	ctx, cancel := context.WithCancel(tc.ctx)
	cancel()
	before := tc.hostileState(t)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.fn(ctx)
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
			if errors.Is(err, errNoError) {
				return
			}
			wantClass(t, c.name, err, "Canceled")
			if !errors.Is(err, context.Canceled) && !errdefs.IsCanceled(err) {
				t.Errorf("%v is not context.Canceled", err)
			}
		})
	}
	tc.assertUnchanged(t, "after the cancelled calls", before)
	if att.called {
		t.Error("a stdio callback was called")
	}
	tc.assertNoProcess(t, id, "fresh-exec")
	assertEmptyDir(t, checkpoints)
	if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
		t.Fatalf("status of the task: %v %v", st, err)
	}
	if st, err := p.(*process).c8dProc.Status(tc.ctx); err != nil || st.Status != containerd.Running {
		t.Fatalf("status of the exec: %v %v", st, err)
	}
}

// TestHostileStateDir checks state directories the library cannot create
// bundles in: NewContainer fails with a class that says why, and neither
// the filesystem nor containerd is changed.
func TestHostileStateDir(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, testutil.Shared(t))
	base := t.TempDir()
	file := writeFile(t, base, "file", "not a directory")
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "size=64k"); err != nil {
		t.Fatalf("mount a read-only tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(ro, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	before := snapshotDir(t, base)

	for _, c := range []struct {
		name, stateDir, want string
	}{
		{"parent is a file", filepath.Join(file, "state"), "InvalidArgument"},
		{"state dir is a file", file, "InvalidArgument"},
		{"read-only parent", filepath.Join(ro, "state"), "PermissionDenied"},
		{"read-only state dir", ro, "PermissionDenied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc := env.client(t, c.stateDir, newRecordingBackend())
			id := testutil.ID(t)
			_, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), runcShim, &runcoptions.Options{})
			wantClass(t, "NewContainer", err, c.want)
			if _, err := tc.LoadContainer(tc.ctx, id); !errdefs.IsNotFound(err) {
				t.Errorf("LoadContainer: %v, want NotFound", err)
			}
		})
	}
	if after := snapshotDir(t, base); !slices.Equal(after, before) {
		t.Errorf("files changed: %v, were %v", after, before)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "not a directory" {
		t.Errorf("the file: %q %v", b, err)
	}
	if ctrs, err := env.cli.Containers(env.ctx); err != nil || len(ctrs) != 0 {
		t.Errorf("containers: %v %v", ctrs, err)
	}
}

// TestHostileSymlinks plants symlinks where a bundle directory or a FIFO
// will go, and other files in the way: nothing outside the state directory
// is followed, created, opened or replaced.
func TestHostileSymlinks(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	outside := t.TempDir()
	precious := writeFile(t, outside, "precious", "keep me")
	outsideFIFO := filepath.Join(outside, "fifo")
	if err := unix.Mkfifo(outsideFIFO, 0o600); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(outside, "absent")
	outsideBefore := snapshotDir(t, outside)
	t.Cleanup(func() {
		if after := snapshotDir(t, outside); !slices.Equal(after, outsideBefore) {
			t.Errorf("outside dir changed: %v, was %v", after, outsideBefore)
		}
		if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
			t.Errorf("outside file: %q %v", b, err)
		}
	})
	symlink := func(t *testing.T, target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	// plantFIFOLinks puts symlinks to outside files where the FIFOs of
	// process id go in bundle.
	plantFIFOLinks := func(t *testing.T, bundle, id string) {
		symlink(t, precious, filepath.Join(bundle, id+"-stdin"))
		symlink(t, outsideFIFO, filepath.Join(bundle, id+"-stdout"))
		symlink(t, absent, filepath.Join(bundle, id+"-stderr"))
	}
	// roundTrip checks that process id of the container of bundle got
	// FIFOs of its own and that its stdin and stdout go through them.
	roundTrip := func(t *testing.T, bundle, id string, out *capture) {
		t.Helper()
		assertPrivateFIFOs(t, bundle, id)
		out.send(t, "inside\n")
		out.waitOutput(t, "inside\n")
		out.closeStdin(t)
	}

	t.Run("bundle", func(t *testing.T) {
		for _, c := range []struct{ name, target string }{
			{"to a directory", outside},
			{"to a file", precious},
			{"dangling", absent},
		} {
			t.Run(c.name, func(t *testing.T) {
				id := testutil.ID(t)
				link := filepath.Join(tc.stateDir, id)
				symlink(t, c.target, link)
				before := tc.hostileState(t)
				_, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), runcShim, &runcoptions.Options{})
				wantClass(t, "NewContainer", err, "InvalidArgument")
				tc.assertUnchanged(t, "after NewContainer", before)
				if err := os.Remove(link); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("user namespace bundle parent", func(t *testing.T) {
		// With a user namespace, a parent the remapped root cannot search
		// is swapped for "<parent>.<uid>.<gid>", next to it.
		_, stateDir := searchableStateDir(t)
		symlink(t, outside, stateDir+".100000.100000")
		was, err := os.Stat(outside)
		if err != nil {
			t.Fatal(err)
		}
		err = WithBundle(filepath.Join(stateDir, "userns"), remappedSpec())(tc.ctx, nil, &containers.Container{})
		wantClass(t, "WithBundle", err, "InvalidArgument")
		fi, err := os.Stat(outside)
		if err != nil {
			t.Fatal(err)
		}
		st, wasSt := fi.Sys().(*syscall.Stat_t), was.Sys().(*syscall.Stat_t)
		if fi.Mode() != was.Mode() || st.Uid != wasSt.Uid || st.Gid != wasSt.Gid {
			t.Errorf("outside dir now %v owned by %d:%d, was %v owned by %d:%d", fi.Mode(), st.Uid, st.Gid, was.Mode(), wasSt.Uid, wasSt.Gid)
		}
	})

	t.Run("bundle swapped before NewTask", func(t *testing.T) {
		id := testutil.ID(t)
		ctr := tc.newContainer(t, id, []string{"true"})
		bundle := filepath.Join(tc.stateDir, id)
		if err := os.Remove(bundle); err != nil {
			t.Fatal(err)
		}
		symlink(t, outside, bundle)
		tc.assertNewTaskRefused(t, ctr, "FailedPrecondition")
		// Delete does not follow the link either.
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(bundle); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fifos", func(t *testing.T) {
		id := testutil.ID(t)
		ctr := tc.newContainer(t, id, []string{"cat"})
		bundle := filepath.Join(tc.stateDir, id)
		plantFIFOLinks(t, bundle, id)
		var out capture
		task := tc.createAndStart(t, ctr, true, out.attach)
		roundTrip(t, bundle, id, &out)
		tc.finish(t, id, ctr, task)
	})

	t.Run("exec fifos", func(t *testing.T) {
		id := testutil.ID(t)
		_, task := tc.runSleeper(t, id)
		bundle := filepath.Join(tc.stateDir, id)
		plantFIFOLinks(t, bundle, "x")
		p, out := tc.exec(t, task, "x", true, "cat")
		roundTrip(t, bundle, "x", out)
		tc.reap(t, id, "x", p)
		tc.assertNoFIFOs(t, id, "x")
	})

	t.Run("fifo path taken", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			plant func(t *testing.T, p string)
		}{
			{"by a file", func(t *testing.T, p string) { writeFile(t, filepath.Dir(p), filepath.Base(p), "engine data") }},
			{"by a directory", func(t *testing.T, p string) {
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				id := testutil.ID(t)
				ctr := tc.newContainer(t, id, []string{"true"})
				c.plant(t, filepath.Join(tc.stateDir, id, id+"-stdout"))
				tc.assertNewTaskRefused(t, ctr, "FailedPrecondition")
				if err := ctr.Delete(tc.ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	t.Run("loose bundle dir", func(t *testing.T) {
		// A directory left where the bundle goes, by moby (0755) or
		// anyone, is reused only once it is private.
		id := testutil.ID(t)
		bundle := filepath.Join(tc.stateDir, id)
		if err := os.Mkdir(bundle, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bundle, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(bundle, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		ctr := tc.newContainer(t, id, []string{"true"})
		assertPrivate(t, bundle, os.ModeDir)
		if uid, gid := owner(t, bundle); uid != 0 || gid != 0 {
			t.Errorf("bundle owned by %d:%d, want root", uid, gid)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})

	assertEmptyDir(t, tc.stateDir)
}

// hostileIDs are container and exec IDs that are not containerd
// identifiers; moby's copy used some of them as paths.
var hostileIDs = map[string]string{
	"parent":    "../x",
	"dotdot":    "..",
	"slash":     "a/b",
	"absolute":  "/x",
	"empty":     "",
	"too long":  strings.Repeat("x", 77),
	"nul":       "a\x00b",
	"deep up":   "../../x",
	"newline":   "a\nb",
	"dot start": ".x",
}

// TestHostileContainerIDs checks that NewContainer and LoadContainer refuse
// IDs that are not identifiers before touching the filesystem or
// containerd.
func TestHostileContainerIDs(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	spec := tc.spec(t, "hostile", []string{"true"})
	parent := filepath.Dir(tc.stateDir)
	before := snapshotDir(t, parent)
	for name, id := range hostileIDs {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.NewContainer(tc.ctx, id, spec, runcShim, &runcoptions.Options{}); !errdefs.IsInvalidArgument(err) {
				t.Errorf("NewContainer(%q): %v, want InvalidArgument", id, err)
			}
			if _, err := tc.LoadContainer(tc.ctx, id); !errdefs.IsInvalidArgument(err) {
				t.Errorf("LoadContainer(%q): %v, want InvalidArgument", id, err)
			}
			if _, err := ReplaceContainer(tc.ctx, tc.Client, id, spec, runcShim, &runcoptions.Options{}); !errdefs.IsInvalidArgument(err) {
				t.Errorf("ReplaceContainer(%q): %v, want InvalidArgument", id, err)
			}
		})
	}
	if after := snapshotDir(t, parent); !slices.Equal(after, before) {
		t.Fatalf("files under %s changed: %v, were %v", parent, after, before)
	}
	ctrs, err := tc.c8dClient.Containers(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != 0 {
		t.Fatalf("%d containers created", len(ctrs))
	}
}

// TestExecHostileIDs checks that exec IDs that are not identifiers are
// refused before any FIFO is made.
func TestExecHostileIDs(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	_, task := tc.runSleeper(t, id)

	before := snapshotDir(t, filepath.Dir(tc.stateDir))
	for name, execID := range hostileIDs {
		t.Run(name, func(t *testing.T) {
			called := false
			_, err := task.Exec(tc.ctx, execID, tc.processSpec(t, id, "true"), true, func(dio *cio.DirectIO) (cio.IO, error) {
				called = true
				return dio, nil
			})
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Exec(%q): %v, want InvalidArgument", execID, err)
			}
			if called {
				t.Fatal("stdio callback called")
			}
		})
	}
	if after := snapshotDir(t, filepath.Dir(tc.stateDir)); !slices.Equal(after, before) {
		t.Fatalf("files changed: %v, were %v", after, before)
	}
	if n := countEvents(tc.backend.all(), id, types.EventExecAdded); n != 0 {
		t.Fatalf("%d exec-added events", n)
	}
}
