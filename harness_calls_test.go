//go:build linux

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// hostileState is what a refused call must leave as it was: every file
// under the state directory, with its inode, and the containers and tasks
// containerd has in the test's namespace.
type hostileState struct {
	files, containers, tasks []string
}

// hostileState takes the hostileState of tc now.
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

// assertNewTaskRefused fails t unless NewTask of ctr fails with errdefs
// class want, without calling the stdio callback, and leaves the state
// directory and containerd as they were.
func (tc *testClient) assertNewTaskRefused(t testing.TB, ctr types.Container, want string) {
	t.Helper()
	before := tc.hostileState(t)
	var att recordingAttach
	_, err := ctr.NewTask(tc.ctx, "", true, att.attach)
	wantClass(t, "NewTask", err, want)
	if att.called {
		t.Error("stdio callback called")
	}
	tc.assertUnchanged(t, "after NewTask", before)
}

// call is one method call on a handle, for tables that call every method.
type call struct {
	name string
	fn   func(context.Context) error
}

// clientCalls are the methods of tc's Client: LoadContainer of id and
// NewContainer of fresh, with freshSpec.
func (tc *testClient) clientCalls(id, fresh string, freshSpec *specs.Spec) []call {
	return []call{
		{"Client.Version", func(ctx context.Context) error { _, err := tc.Version(ctx); return err }},
		{"Client.LoadContainer", func(ctx context.Context) error { _, err := tc.LoadContainer(ctx, id); return err }},
		{"Client.NewContainer", func(ctx context.Context) error {
			_, err := tc.NewContainer(ctx, fresh, freshSpec, runcShim, &runcoptions.Options{})
			return err
		}},
	}
}

// everyCall is containerCalls, taskCalls and processCalls of ctr, its task
// and p, a process of the task.
func everyCall(ctr types.Container, task types.Task, p types.Process, execID string, exec *specs.Process, checkpointDir string, attach types.StdioCallback) []call {
	calls := append(containerCalls(ctr, attach), taskCalls(task, execID, exec, checkpointDir, attach)...)
	return append(calls, processCalls(p)...)
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

// ptrTo returns a pointer to a copy of v.
func ptrTo[T any](v T) *T { return &v }

// errorClasses are the errdefs classes, in the order classesOf reports
// them. Canceled also holds for context.Canceled.
var errorClasses = []struct {
	name string
	is   func(error) bool
}{
	{"Canceled", errdefs.IsCanceled}, {"DeadlineExceeded", errdefs.IsDeadlineExceeded},
	{"NotFound", errdefs.IsNotFound}, {"Conflict", errdefs.IsConflict}, {"AlreadyExists", errdefs.IsAlreadyExists},
	{"InvalidArgument", errdefs.IsInvalidArgument}, {"FailedPrecondition", errdefs.IsFailedPrecondition},
	{"Unavailable", errdefs.IsUnavailable}, {"PermissionDenied", errdefs.IsPermissionDenied},
	{"ResourceExhausted", errdefs.IsResourceExhausted}, {"NotImplemented", errdefs.IsNotImplemented},
	{"Internal", errdefs.IsInternal}, {"Aborted", errdefs.IsAborted}, {"OutOfRange", errdefs.IsOutOfRange},
	{"Unauthorized", errdefs.IsUnauthorized}, {"DataLoss", errdefs.IsDataLoss}, {"Unknown", errdefs.IsUnknown},
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
