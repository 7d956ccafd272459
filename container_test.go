//go:build linux

package libcontainerd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestVersion asks the daemon's version.
func TestVersion(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	v, err := tc.Version(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{testutil.FlavorV2: "2.", testutil.FlavorDebian: "1.6"}[tc.daemon.Flavor]
	if !strings.HasPrefix(strings.TrimPrefix(v.Version, "v"), want) {
		t.Fatalf("version %q, want %s*", v.Version, want)
	}
}

// TestNewContainerConflict checks that an ID in use is a Conflict and that
// the failed call leaves the first container's bundle alone.
func TestNewContainerConflict(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"true"})
	bundle := filepath.Join(tc.stateDir, id)
	assertPrivate(t, bundle, os.ModeDir)

	_, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), runcShim, &runcoptions.Options{})
	if !errdefs.IsConflict(err) {
		t.Fatalf("second NewContainer: %v, want Conflict", err)
	}
	if _, err := os.Stat(bundle); err != nil {
		t.Fatalf("bundle of the first container: %v", err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, tc.stateDir)
}

// notAProtoOption is a runtime options value typeurl cannot marshal.
type notAProtoOption struct{ BinaryName string }

// TestNewContainerFailureLeavesNothing checks that a NewContainer refused by
// the library or by containerd leaves no bundle directory.
func TestNewContainerFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	for _, c := range []struct {
		name    string
		opts    func(id string) (*specs.Spec, any, []containerd.NewContainerOpts)
		wantErr func(error) bool
	}{
		{
			name: "unknown runtime options type",
			opts: func(id string) (*specs.Spec, any, []containerd.NewContainerOpts) {
				return tc.spec(t, id, []string{"true"}), &notAProtoOption{BinaryName: "runc"}, nil
			},
			wantErr: errdefs.IsInvalidArgument,
		},
		{
			name: "nil spec",
			opts: func(string) (*specs.Spec, any, []containerd.NewContainerOpts) {
				return nil, &runcoptions.Options{}, nil
			},
			wantErr: errdefs.IsInvalidArgument,
		},
		{
			// containerd refuses labels longer than 4 KiB.
			name: "rejected by containerd",
			opts: func(id string) (*specs.Spec, any, []containerd.NewContainerOpts) {
				return tc.spec(t, id, []string{"true"}), &runcoptions.Options{},
					[]containerd.NewContainerOpts{containerd.WithAdditionalContainerLabels(map[string]string{"big": strings.Repeat("x", 5000)})}
			},
			wantErr: errdefs.IsInvalidArgument,
		},
		{
			name: "caller option fails",
			opts: func(id string) (*specs.Spec, any, []containerd.NewContainerOpts) {
				return tc.spec(t, id, []string{"true"}), &runcoptions.Options{},
					[]containerd.NewContainerOpts{func(context.Context, *containerd.Client, *containers.Container) error {
						return errdefs.ErrUnavailable
					}}
			},
			wantErr: errdefs.IsUnavailable,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testutil.ID(t)
			spec, ro, opts := c.opts(id)
			if _, err := tc.NewContainer(tc.ctx, id, spec, runcShim, ro, opts...); err == nil || !c.wantErr(err) {
				t.Fatalf("NewContainer: %v, want an error of the right class", err)
			}
			if _, err := os.Lstat(filepath.Join(tc.stateDir, id)); !os.IsNotExist(err) {
				t.Fatalf("bundle of the failed container: %v", err)
			}
			if _, err := tc.LoadContainer(tc.ctx, id); !errdefs.IsNotFound(err) {
				t.Fatalf("LoadContainer after failure: %v, want NotFound", err)
			}
		})
	}
	assertEmptyDir(t, tc.stateDir)
}

// TestContainerNotFound checks the NotFound class of unknown containers and
// of containers without a task.
func TestContainerNotFound(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	if _, err := tc.LoadContainer(tc.ctx, "no-such-container"); !errdefs.IsNotFound(err) {
		t.Fatalf("LoadContainer: %v, want NotFound", err)
	}
	tc.newContainer(t, id, []string{"true"})
	ctr, err := tc.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("Task without a task: %v, want NotFound", err)
	}
	var att recordingAttach
	if _, err := ctr.AttachTask(tc.ctx, att.attach); !errdefs.IsNotFound(err) {
		t.Fatalf("AttachTask without a task: %v, want NotFound", err)
	}
	if att.called {
		t.Fatal("AttachTask called the stdio callback without a task")
	}

	// A task that was deleted is gone for its old handle too.
	task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
	tc.reap(t, id, id, task)
	if _, err := task.Delete(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("second task Delete: %v, want NotFound", err)
	}
	if err := task.Kill(tc.ctx, syscall.SIGKILL); !errdefs.IsNotFound(err) {
		t.Fatalf("Kill of a deleted task: %v, want NotFound", err)
	}
	if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("Task after delete: %v, want NotFound", err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("second container Delete: %v, want NotFound", err)
	}
}

// TestContainerDeleteRemovesBundle checks that the bundle with the FIFOs of
// a task is private and removed by Container.Delete.
func TestContainerDeleteRemovesBundle(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"cat"})
	bundle := filepath.Join(tc.stateDir, id)
	var out capture
	task, err := ctr.NewTask(tc.ctx, "", true, out.attach)
	if err != nil {
		t.Fatal(err)
	}
	assertPrivate(t, bundle, os.ModeDir)
	assertPrivateFIFOs(t, bundle, id)
	if got, want := dirEntries(t, bundle), []string{id + "-stderr", id + "-stdin", id + "-stdout"}; !slices.Equal(got, want) {
		t.Fatalf("bundle holds %v, want %v", got, want)
	}
	fifos := snapshotDir(t, bundle)
	// A second task is refused before its FIFOs replace the first one's.
	var second capture
	if _, err := ctr.NewTask(tc.ctx, "", true, second.attach); !errdefs.IsConflict(err) {
		t.Fatalf("second NewTask: %v, want Conflict", err)
	}
	if got := snapshotDir(t, bundle); !slices.Equal(got, fifos) || second.stdin != nil {
		t.Fatalf("second NewTask touched the bundle: %v", got)
	}
	if err := task.Start(tc.ctx); err != nil {
		t.Fatal(err)
	}
	out.closeStdin(t)
	tc.finish(t, id, ctr, task)
	if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle after Delete: %v", err)
	}
}

// TestContainerDeleteNoClean checks that LIBCONTAINERD_NOCLEAN=1 keeps the
// bundle. It cannot run in parallel: it sets the environment.
func TestContainerDeleteNoClean(t *testing.T) {
	t.Setenv(envNoClean, "1")
	tc, id := newTestClient(t), testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"true"})
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tc.stateDir, id)); err != nil {
		t.Fatalf("bundle with %s=1: %v", envNoClean, err)
	}
	if _, err := tc.LoadContainer(tc.ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("LoadContainer after Delete: %v, want NotFound", err)
	}
}

// TestReplaceContainer replaces a container whose task runs: the replaced
// task's exit reaches the Backend once, also when the stream loses the
// TaskExit and TaskDelete that would carry it (as containerd 2.x does when
// the shim shuts down right after the delete).
func TestReplaceContainer(t *testing.T) {
	t.Parallel()
	withAndWithoutLostEvents(t, testReplaceContainer)
}

func testReplaceContainer(t *testing.T, exitEventsLost bool) {
	id := testutil.ID(t)
	var lostPid atomic.Uint32 // the stream loses the exit and delete of this one
	tc := newTestClient(t, withLostStreamEvents(func(ev taskEvent) bool {
		return ev.info.ContainerID == id && ev.info.Pid == lostPid.Load() && (ev.deleted || ev.typ == types.EventExit)
	}))
	ctr, oldTask, old := tc.run(t, id, false, []string{"sleep", "3600"})
	if exitEventsLost {
		lostPid.Store(oldTask.Pid())
	}

	ctr, err := ReplaceContainer(tc.ctx, tc.Client, id, tc.spec(t, id, []string{"echo", "replaced"}), runcShim, &runcoptions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if exit := tc.backend.waitEvent(t, id, types.EventExit, id); exit.Pid != oldTask.Pid() || exit.ExitCode != 137 {
		t.Fatalf("exit of the replaced task %+v, want pid %d code 137", exit, oldTask.Pid())
	}
	old.wait(t)
	var out capture
	task := tc.createAndStart(t, ctr, false, out.attach)
	if stdout, _ := out.wait(t); stdout != "replaced\n" {
		t.Fatalf("stdout of the new container %q", stdout)
	}
	tc.backend.waitExit(t, id, task.Pid())
	tc.remove(t, ctr, task)
	if n := len(exitsOfPid(tc.backend.all(), id, oldTask.Pid())); n != 1 {
		t.Fatalf("%d exits of the replaced task, want 1", n)
	}

	// Without a stale container, ReplaceContainer just creates.
	ctr, err = ReplaceContainer(tc.ctx, tc.Client, id, tc.spec(t, id, []string{"true"}), runcShim, &runcoptions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
}
