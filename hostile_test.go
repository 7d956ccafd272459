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

	"github.com/containerd/containerd/api/services/tasks/v1"
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

// errorClasses are the errdefs classes, in the order classesOf reports
// them. Canceled also holds for context.Canceled.
var errorClasses = []struct {
	name string
	is   func(error) bool
}{
	{"Canceled", errdefs.IsCanceled},
	{"DeadlineExceeded", errdefs.IsDeadlineExceeded},
	{"NotFound", errdefs.IsNotFound},
	{"Conflict", errdefs.IsConflict},
	{"AlreadyExists", errdefs.IsAlreadyExists},
	{"InvalidArgument", errdefs.IsInvalidArgument},
	{"FailedPrecondition", errdefs.IsFailedPrecondition},
	{"Unavailable", errdefs.IsUnavailable},
	{"PermissionDenied", errdefs.IsPermissionDenied},
	{"ResourceExhausted", errdefs.IsResourceExhausted},
	{"NotImplemented", errdefs.IsNotImplemented},
	{"Internal", errdefs.IsInternal},
	{"Aborted", errdefs.IsAborted},
	{"OutOfRange", errdefs.IsOutOfRange},
	{"Unauthorized", errdefs.IsUnauthorized},
	{"DataLoss", errdefs.IsDataLoss},
	{"Unknown", errdefs.IsUnknown},
}

// classesOf names the errdefs classes of err, "+"-separated; "" when it
// has none.
func classesOf(err error) string {
	var names []string
	for _, c := range errorClasses {
		if c.is(err) {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, "+")
}

// wantClass fails t unless err is of errdefs class want, and logs the
// classes it has, so that a run shows what each daemon gave.
func wantClass(t testing.TB, what string, err error, want string) {
	t.Helper()
	got := classesOf(err)
	t.Logf("%s: [%s] %v", what, got, err)
	if err == nil || !slices.Contains(strings.Split(got, "+"), want) {
		t.Errorf("%s: %v (classes %q), want %s", what, err, got, want)
	}
}

// hostileState is what a refused call must leave as it was: every file
// under the state directory, with its inode, and the containers and tasks
// containerd has in the test's namespace.
type hostileState struct {
	files, containers, tasks []string
}

func (tc *testClient) hostileState(t testing.TB) hostileState {
	t.Helper()
	s := hostileState{files: snapshotDir(t, tc.stateDir)}
	ctrs, err := tc.c8dClient.ContainerService().List(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs {
		s.containers = append(s.containers, c.ID)
	}
	resp, err := tc.c8dClient.TaskService().List(tc.ctx, &tasks.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Tasks {
		s.tasks = append(s.tasks, fmt.Sprintf("%s@%d", p.ID, p.Pid))
	}
	slices.Sort(s.containers)
	slices.Sort(s.tasks)
	return s
}

// assertUnchanged fails t if the state directory or containerd's
// containers and tasks differ from before.
func (tc *testClient) assertUnchanged(t testing.TB, what string, before hostileState) {
	t.Helper()
	after := tc.hostileState(t)
	if !slices.Equal(after.files, before.files) {
		t.Errorf("%s: state dir holds %v, held %v", what, after.files, before.files)
	}
	if !slices.Equal(after.containers, before.containers) {
		t.Errorf("%s: containers %v, were %v", what, after.containers, before.containers)
	}
	if !slices.Equal(after.tasks, before.tasks) {
		t.Errorf("%s: tasks %v, were %v", what, after.tasks, before.tasks)
	}
}

// assertNoProcess fails t if task ctrID has an exec execID in containerd.
func (tc *testClient) assertNoProcess(t testing.TB, ctrID, execID string) {
	t.Helper()
	_, err := tc.c8dClient.TaskService().Get(tc.ctx, &tasks.GetRequest{ContainerID: ctrID, ExecID: execID})
	if !errdefs.IsNotFound(wrapError(err)) {
		t.Errorf("exec %s of %s in containerd: %v, want NotFound", execID, ctrID, err)
	}
}

// call is one method call on a handle, for tables that call every method.
type call struct {
	name string
	fn   func(context.Context) error
}

// containerCalls are the methods of ctr; attach is the stdio callback of
// NewTask and AttachTask.
func containerCalls(ctr types.Container, attach types.StdioCallback) []call {
	return []call{
		{"Container.NewTask", func(ctx context.Context) error { _, err := ctr.NewTask(ctx, "", true, attach); return err }},
		{"Container.Task", func(ctx context.Context) error { _, err := ctr.Task(ctx); return err }},
		{"Container.AttachTask", func(ctx context.Context) error { _, err := ctr.AttachTask(ctx, attach); return err }},
		{"Container.Delete", ctr.Delete},
	}
}

// taskCalls are the methods of task; exec is the process spec of Exec,
// whose ID is execID, and checkpointDir the directory of CreateCheckpoint.
func taskCalls(task types.Task, execID string, exec *specs.Process, checkpointDir string, attach types.StdioCallback) []call {
	return []call{
		{"Task.Pid", func(context.Context) error { task.Pid(); return errNoError }},
		{"Task.Start", task.Start},
		{"Task.Kill", func(ctx context.Context) error { return task.Kill(ctx, syscall.SIGCONT) }},
		{"Task.Resize", func(ctx context.Context) error { return task.Resize(ctx, 80, 24) }},
		{"Task.Pause", task.Pause},
		{"Task.Resume", task.Resume},
		{"Task.Stats", func(ctx context.Context) error { _, err := task.Stats(ctx); return err }},
		{"Task.Pids", func(ctx context.Context) error { _, err := task.Pids(ctx); return err }},
		{"Task.Summary", func(ctx context.Context) error { _, err := task.Summary(ctx); return err }},
		{"Task.Status", func(ctx context.Context) error { _, err := task.Status(ctx); return err }},
		{"Task.Exec", func(ctx context.Context) error { _, err := task.Exec(ctx, execID, exec, true, attach); return err }},
		{"Task.UpdateResources", func(ctx context.Context) error {
			return task.UpdateResources(ctx, &types.Resources{Pids: &specs.LinuxPids{Limit: ptrTo[int64](100)}})
		}},
		{"Task.CreateCheckpoint", func(ctx context.Context) error { return task.CreateCheckpoint(ctx, checkpointDir, false) }},
		{"Task.Delete", func(ctx context.Context) error { _, err := task.Delete(ctx); return err }},
		{"Task.ForceDelete", task.ForceDelete},
	}
}

// processCalls are the methods of p.
func processCalls(p types.Process) []call {
	return []call{
		{"Process.Pid", func(context.Context) error { p.Pid(); return errNoError }},
		{"Process.Kill", func(ctx context.Context) error { return p.Kill(ctx, syscall.SIGCONT) }},
		{"Process.Resize", func(ctx context.Context) error { return p.Resize(ctx, 80, 24) }},
		{"Process.Delete", func(ctx context.Context) error { _, err := p.Delete(ctx); return err }},
	}
}

// errNoError stands for the result of a method that returns no error (a
// Pid), which is only checked not to panic.
var errNoError = errors.New("method returns no error")

// recordingAttach is a stdio callback that records that it was called and
// captures the streams.
type recordingAttach struct {
	capture
	called bool
}

func (r *recordingAttach) attach(dio *cio.DirectIO) (cio.IO, error) {
	r.called = true
	return r.capture.attach(dio)
}

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

// assertRuntimeError fails t unless err has a class, and one that does not
// mislead an engine: not Unavailable (retry) nor NotFound (the container
// is gone). containerd 1.6 and 2.4 report a shim they cannot resolve as
// Unknown.
func assertRuntimeError(t testing.TB, what string, err error) {
	t.Helper()
	cls := classesOf(err)
	t.Logf("%s: [%s] %v", what, cls, err)
	if err == nil || cls == "" || errdefs.IsUnavailable(err) || errdefs.IsNotFound(err) {
		t.Errorf("%s: %v (classes %q), want a class other than Unavailable and NotFound", what, err, cls)
	}
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
			var out capture
			_, err = ctr.NewTask(tc.ctx, "", true, out.attach)
			assertRuntimeError(t, fmt.Sprintf("NewTask with shim %q", c.shim), err)
			if left := dirEntries(t, filepath.Join(tc.stateDir, id)); len(left) != 0 {
				t.Errorf("left in the bundle: %v", left)
			}
			if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
				t.Errorf("Task after the refused NewTask: %v, want NotFound", err)
			}
			if err := ctr.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
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
			if _, err := tc.c8dClient.NewContainer(tc.ctx, id,
				containerd.WithSpec(tc.spec(t, id, []string{"true"})),
				containerd.WithRuntime(runcShim, c.opts),
				containerd.WithAdditionalContainerLabels(map[string]string{DockerContainerBundlePath: bundle}),
			); err != nil {
				t.Fatal(err)
			}
			ctr, err := tc.LoadContainer(tc.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var att recordingAttach
			_, err = ctr.NewTask(tc.ctx, "", true, att.attach)
			wantClass(t, "NewTask", err, "FailedPrecondition")
			if att.called {
				t.Error("stdio callback called")
			}
			if left := dirEntries(t, bundle); len(left) != 0 {
				t.Errorf("left in the bundle: %v", left)
			}
			if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
				t.Errorf("Task after the refused NewTask: %v, want NotFound", err)
			}
			if err := ctr.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
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
	tc := newTestClient(t)
	id := testutil.ID(t)
	_, task := tc.runSleeper(t, id)
	idle := testutil.ID(t, "idle")
	idleCtr := tc.newContainer(t, idle, []string{"true"})
	t.Cleanup(func() {
		if err := idleCtr.Delete(tc.ctx); err != nil {
			t.Error(err)
		}
	})
	running, err := tc.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
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
		ctr := tc.newContainer(t, id, []string{"cat"})
		var first engineIO
		task := tc.createAndStart(t, ctr, true, first.attach)
		// The engine restarts: its ends of the FIFOs are closed.
		first.die(t)
		loaded, err := tc.LoadContainer(tc.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before := tc.hostileState(t)
		for _, cb := range callbacks {
			_, err := loaded.AttachTask(tc.ctx, cb.attach)
			cb.check(t, "AttachTask, callback "+cb.name, err)
			tc.assertUnchanged(t, "AttachTask, callback "+cb.name, before)
		}
		// The task's stdin is still open and its FIFOs still connected.
		var out capture
		if _, err := loaded.AttachTask(tc.ctx, out.attach); err != nil {
			t.Fatal(err)
		}
		if _, err := out.stdin.Write([]byte("still attached\n")); err != nil {
			t.Fatal(err)
		}
		out.waitOutput(t, "still attached\n")
		if err := out.stdin.Close(); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, id)
		if _, err := task.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHostileDeleted calls every method of process, task and container
// handles after their Delete: each is NotFound, nothing is created.
func TestHostileDeleted(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sleep", "3600"})
	var out capture
	task := tc.createAndStart(t, ctr, false, out.attach)
	p, err := task.Exec(tc.ctx, "gone", tc.processSpec(t, id, "true"), false, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, "gone")
	if _, err := p.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
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
		if left := dirEntries(t, checkpoints); len(left) != 0 {
			t.Errorf("left in the checkpoint dir: %v", left)
		}
	}
	attach := (&capture{}).attach
	execSpec := tc.processSpec(t, id, "true")
	t.Run("process", func(t *testing.T) { check(t, processCalls(p)) })

	if err := task.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if _, err := task.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("task", func(t *testing.T) {
		check(t, taskCalls(task, "after-delete", execSpec, filepath.Join(checkpoints, "cp"), attach))
		tc.assertNoProcess(t, id, "after-delete")
	})

	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("container", func(t *testing.T) {
		check(t, append(append(containerCalls(ctr, attach),
			taskCalls(task, "after-delete", execSpec, filepath.Join(checkpoints, "cp"), attach)...),
			processCalls(p)...))
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
	p, err := task.Exec(tc.ctx, "sleeper", tc.processSpec(t, id, "sleep", "3600"), true, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Kill(tc.ctx, syscall.SIGKILL); err != nil {
			t.Error(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, "sleeper")
		if _, err := p.Delete(tc.ctx); err != nil {
			t.Error(err)
		}
	})
	idle := testutil.ID(t, "idle")
	idleCtr := tc.newContainer(t, idle, []string{"true"})
	t.Cleanup(func() {
		if err := idleCtr.Delete(tc.ctx); err != nil {
			t.Error(err)
		}
	})
	fresh := testutil.ID(t, "fresh")
	freshSpec := tc.spec(t, fresh, []string{"true"})
	checkpoints := t.TempDir()
	var att recordingAttach

	calls := []call{
		{"Client.Version", func(ctx context.Context) error { _, err := tc.Version(ctx); return err }},
		{"Client.LoadContainer", func(ctx context.Context) error { _, err := tc.LoadContainer(ctx, id); return err }},
		{"Client.NewContainer", func(ctx context.Context) error {
			_, err := tc.NewContainer(ctx, fresh, freshSpec, runcShim, &runcoptions.Options{})
			return err
		}},
		{"ReplaceContainer", func(ctx context.Context) error {
			_, err := ReplaceContainer(ctx, tc.Client, id, freshSpec, runcShim, &runcoptions.Options{})
			return err
		}},
		{"Container.NewTask (no task)", func(ctx context.Context) error { _, err := idleCtr.NewTask(ctx, "", true, att.attach); return err }},
	}
	calls = append(calls, containerCalls(ctr, att.attach)...)
	calls = append(calls, taskCalls(task, "fresh-exec", tc.processSpec(t, id, "true"), filepath.Join(checkpoints, "cp"), att.attach)...)
	calls = append(calls, processCalls(p)...)

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
	if left := dirEntries(t, checkpoints); len(left) != 0 {
		t.Errorf("left in the checkpoint dir: %v", left)
	}
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
	d := testutil.Shared(t)
	ctx, ns := testutil.Context(t, d)
	cli := d.Client(t)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
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
			c8d, err := New(ctx, cli, c.stateDir, ns, newRecordingBackend())
			if err != nil {
				t.Fatal(err)
			}
			defer c8d.Close()
			id := testutil.ID(t)
			_, err = c8d.NewContainer(ctx, id, testutil.Spec(t, ctx, id, []string{"true"}), runcShim, &runcoptions.Options{})
			wantClass(t, "NewContainer", err, c.want)
			if _, err := c8d.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
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
	if ctrs, err := cli.Containers(ctx); err != nil || len(ctrs) != 0 {
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
	precious := filepath.Join(outside, "precious")
	if err := os.WriteFile(precious, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
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
	assertFIFOs := func(t *testing.T, bundle, id string) {
		for _, s := range []string{"-stdin", "-stdout", "-stderr"} {
			assertPrivate(t, filepath.Join(bundle, id+s), os.ModeNamedPipe)
		}
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
		base := t.TempDir()
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		stateDir := filepath.Join(base, "state")
		if err := os.Mkdir(stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		symlink(t, outside, stateDir+".100000.100000")
		was, err := os.Stat(outside)
		if err != nil {
			t.Fatal(err)
		}
		spec := &specs.Spec{Linux: &specs.Linux{
			Namespaces:  []specs.LinuxNamespace{{Type: specs.UserNamespace}},
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		}}
		err = WithBundle(filepath.Join(stateDir, "userns"), spec)(tc.ctx, nil, &containers.Container{})
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
		before := tc.hostileState(t)
		var att recordingAttach
		_, err := ctr.NewTask(tc.ctx, "", true, att.attach)
		wantClass(t, "NewTask", err, "FailedPrecondition")
		if att.called {
			t.Error("stdio callback called")
		}
		tc.assertUnchanged(t, "after NewTask", before)
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
		assertFIFOs(t, bundle, id)
		if _, err := out.stdin.Write([]byte("inside\n")); err != nil {
			t.Fatal(err)
		}
		out.waitOutput(t, "inside\n")
		if err := out.stdin.Close(); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, id)
		if _, err := task.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("exec fifos", func(t *testing.T) {
		id := testutil.ID(t)
		_, task := tc.runSleeper(t, id)
		bundle := filepath.Join(tc.stateDir, id)
		plantFIFOLinks(t, bundle, "x")
		var out capture
		p, err := task.Exec(tc.ctx, "x", tc.processSpec(t, id, "cat"), true, out.attach)
		if err != nil {
			t.Fatal(err)
		}
		assertFIFOs(t, bundle, "x")
		if _, err := out.stdin.Write([]byte("inside\n")); err != nil {
			t.Fatal(err)
		}
		out.waitOutput(t, "inside\n")
		if err := out.stdin.Close(); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, "x")
		if _, err := p.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(bundle, "x-*")); len(left) != 0 {
			t.Fatalf("exec fifos left: %v", left)
		}
	})

	t.Run("fifo path taken", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			plant func(t *testing.T, p string)
		}{
			{"by a file", func(t *testing.T, p string) {
				if err := os.WriteFile(p, []byte("engine data"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
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
				before := tc.hostileState(t)
				var att recordingAttach
				_, err := ctr.NewTask(tc.ctx, "", true, att.attach)
				wantClass(t, "NewTask", err, "FailedPrecondition")
				if att.called {
					t.Error("stdio callback called")
				}
				tc.assertUnchanged(t, "after NewTask", before)
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
		fi, err := os.Stat(bundle)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("bundle owned by %d:%d, want root", st.Uid, st.Gid)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})

	if left := dirEntries(t, tc.stateDir); len(left) != 0 {
		t.Errorf("left in the state dir: %v", left)
	}
}
