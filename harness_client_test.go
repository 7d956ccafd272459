//go:build linux

package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

const runcShim = "io.containerd.runc.v2"

// testClient is a Client with its own namespace and state directory,
// closed when the test ends.
type testClient struct {
	*Client
	ctx      context.Context
	ns       string
	stateDir string
	backend  *recordingBackend
	daemon   *testutil.Daemon
}

// testEnv is where a test's clients run: a daemon, a namespace of the
// test's own with its context, and a containerd client connected to the
// daemon.
type testEnv struct {
	daemon *testutil.Daemon
	ctx    context.Context
	ns     string
	cli    *containerd.Client
}

// newTestEnv makes t's namespace on d and connects to d: the connection's
// goroutines are there before a client starts any.
func newTestEnv(t testing.TB, d *testutil.Daemon) testEnv {
	t.Helper()
	ctx, ns := testutil.Context(t, d)
	cli := d.Client(t)
	if _, err := cli.Version(ctx); err != nil {
		t.Fatal(err)
	}
	return testEnv{daemon: d, ctx: ctx, ns: ns, cli: cli}
}

// client makes a Client in the environment on stateDir with b as its
// Backend (set b.fail before: events may flow at once); it is closed when
// t ends.
func (e testEnv) client(t testing.TB, stateDir string, b *recordingBackend, opts ...Option) *testClient {
	t.Helper()
	c, err := New(e.ctx, e.cli, stateDir, e.ns, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.CloseContext(context.Background()); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return &testClient{Client: c, ctx: e.ctx, ns: e.ns, stateDir: stateDir, backend: b, daemon: e.daemon}
}

// withLostStreamEvents makes the client's event stream lose the events
// lose returns true for, as containerd loses some.
func withLostStreamEvents(lose func(taskEvent) bool) testOption {
	return withClientOptions(func(o *clientOptions) { o.loseStreamEvent = lose })
}

// holdingDeferredDeletes makes the client's deferred deletes wait until
// release is closed.
func holdingDeferredDeletes(release <-chan struct{}) testOption {
	return withClientOptions(func(o *clientOptions) {
		o.beforeDeferredDeletes = func(ctx context.Context) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	})
}

// withAndWithoutLostEvents runs test twice, as parallel subtests: with
// lost false, and with lost true, where it makes its client lose events
// (withLostStreamEvents).
func withAndWithoutLostEvents(t *testing.T, test func(t *testing.T, lost bool)) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("events-lost=%v", lost), func(t *testing.T) {
			t.Parallel()
			test(t, lost)
		})
	}
}

// testSetup is what newTestClient makes a client with; testOptions change
// it.
type testSetup struct {
	daemon  *testutil.Daemon // default: the shared daemon
	backend *recordingBackend
	opts    []Option
	conn    []containerd.Opt // of the containerd client the engine hands New
}

type testOption func(t *testing.T, s *testSetup)

// onOwnDaemon puts the client on a daemon of the test's own (tc.daemon),
// for tests that kill or restart it.
func onOwnDaemon() testOption {
	return func(t *testing.T, s *testSetup) { s.daemon = testutil.NewDaemon(t) }
}

// onDaemon puts the client on d.
func onDaemon(d *testutil.Daemon) testOption {
	return func(_ *testing.T, s *testSetup) { s.daemon = d }
}

// withBackend makes b the client's Backend, for tests that set b.fail.
func withBackend(b *recordingBackend) testOption {
	return func(_ *testing.T, s *testSetup) { s.backend = b }
}

// viaConnection makes the containerd client handed to New with opts.
func viaConnection(opts ...containerd.Opt) testOption {
	return func(_ *testing.T, s *testSetup) { s.conn = append(s.conn, opts...) }
}

// withClientOptions hands opts to New.
func withClientOptions(opts ...Option) testOption {
	return func(_ *testing.T, s *testSetup) { s.opts = append(s.opts, opts...) }
}

// newTestClient is the tests' one way to make a client: with its own
// namespace and state directory, on the shared daemon unless told
// otherwise, closed when t ends.
func newTestClient(t *testing.T, opts ...testOption) *testClient {
	t.Helper()
	s := testSetup{backend: newRecordingBackend()}
	for _, o := range opts {
		o(t, &s)
	}
	if s.daemon == nil {
		s.daemon = testutil.Shared(t)
	}
	env := newTestEnv(t, s.daemon)
	if len(s.conn) > 0 {
		env.cli = s.daemon.Client(t, s.conn...)
	}
	return env.client(t, t.TempDir(), s.backend, s.opts...)
}

// restart is the engine starting again: a client on tc's state directory
// and namespace, with a connection and a Backend of its own.
func (tc *testClient) restart(t testing.TB) *testClient {
	t.Helper()
	env := testEnv{daemon: tc.daemon, ctx: tc.ctx, ns: tc.ns, cli: tc.daemon.Client(t)}
	return env.client(t, tc.stateDir, newRecordingBackend())
}

// newSleeperTest is the setup of a test against one running task: t's own
// client and a container named after t whose task sleeps; the task is
// killed and everything deleted when t ends.
func newSleeperTest(t *testing.T) (tc *testClient, id string, task types.Task) {
	t.Helper()
	tc, id = newTestClient(t), testutil.ID(t)
	_, task = tc.runSleeper(t, id)
	return tc, id, task
}

// spec returns a busybox spec running args for container id.
func (tc *testClient) spec(t testing.TB, id string, args []string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	return testutil.Spec(t, tc.ctx, id, args, opts...)
}

// processSpec returns the process of a busybox spec running args, for Exec.
func (tc *testClient) processSpec(t testing.TB, id string, args ...string) *specs.Process {
	t.Helper()
	return tc.spec(t, id, args).Process
}

// newContainer creates container id running args with the runc shim.
func (tc *testClient) newContainer(t testing.TB, id string, args []string, opts ...oci.SpecOpts) types.Container {
	t.Helper()
	ctr, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, args, opts...), runcShim, &runcoptions.Options{})
	if err != nil {
		t.Fatalf("NewContainer(%s): %v", id, err)
	}
	return ctr
}

// load loads container id through the client.
func (tc *testClient) load(t testing.TB, id string) types.Container {
	t.Helper()
	ctr, err := tc.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatalf("LoadContainer(%s): %v", id, err)
	}
	return ctr
}

// newMobyContainer makes container id the way moby's libcontainerd does,
// through containerd alone, running spec with runtime options opts and
// labelled with bundle (which the caller makes) as its bundle. It returns
// containerd's handle: load it for the client's.
func (tc *testClient) newMobyContainer(t testing.TB, id, bundle string, spec *specs.Spec, opts any) containerd.Container {
	t.Helper()
	ctr, err := tc.c8dClient.NewContainer(tc.ctx, id,
		containerd.WithSpec(spec),
		containerd.WithRuntime(runcShim, opts),
		containerd.WithAdditionalContainerLabels(map[string]string{DockerContainerBundlePath: bundle}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return ctr
}

// c8dTask returns containerd's own handle of the task of container id,
// without the client, for what another program does to it.
func (tc *testClient) c8dTask(t testing.TB, id string) containerd.Task {
	t.Helper()
	ctr, err := tc.c8dClient.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(tc.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// remappedSpec is a spec with a user namespace whose root is 100000.
func remappedSpec() *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{
		Namespaces:  []specs.LinuxNamespace{{Type: specs.UserNamespace}},
		UIDMappings: remappedIDs,
		GIDMappings: remappedIDs,
	}}
}

// remappedIDs maps a user namespace's root to 100000, for 65536 ids.
var remappedIDs = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

// idleContainer creates a container named after t that never gets a task;
// it is deleted when t ends.
func (tc *testClient) idleContainer(t testing.TB) types.Container {
	t.Helper()
	ctr := tc.newContainer(t, testutil.ID(t, "idle"), []string{"true"})
	t.Cleanup(func() {
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Error(err)
		}
	})
	return ctr
}

// createAndStart creates the task of ctr with attach as its stdio callback,
// starts it and returns it.
func (tc *testClient) createAndStart(t testing.TB, ctr types.Container, withStdin bool, attach types.StdioCallback) types.Task {
	t.Helper()
	task, err := ctr.NewTask(tc.ctx, "", withStdin, attach)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if err := task.Start(tc.ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return task
}

// run creates container id running args (with opts) and starts its task,
// with a stdin if withStdin; it returns the container, the task and the
// task's stdio.
func (tc *testClient) run(t testing.TB, id string, withStdin bool, args []string, opts ...oci.SpecOpts) (types.Container, types.Task, *engineIO) {
	t.Helper()
	ctr := tc.newContainer(t, id, args, opts...)
	out := &engineIO{}
	return ctr, tc.createAndStart(t, ctr, withStdin, out.attach), out
}

// attach attaches to the running task of ctr, as an engine that restarted
// does, checks that it is process pid and returns it with its stdio.
func (tc *testClient) attach(t testing.TB, ctr types.Container, pid uint32) (types.Task, *capture) {
	t.Helper()
	out := &capture{}
	task, err := ctr.AttachTask(tc.ctx, out.attach)
	if err != nil {
		t.Fatalf("AttachTask: %v", err)
	}
	if task.Pid() != pid {
		t.Fatalf("attached to pid %d, want %d", task.Pid(), pid)
	}
	return task, out
}

// runSleeper creates container id running "sleep 3600" and starts its task;
// the task is killed and everything deleted when t ends.
func (tc *testClient) runSleeper(t *testing.T, id string) (types.Container, types.Task) {
	t.Helper()
	ctr, task, _ := tc.run(t, id, false, []string{"sleep", "3600"})
	t.Cleanup(func() { tc.killAndDelete(t, ctr, task) })
	return ctr, task
}

// killAndDelete kills task tk of ctr if it still runs, waits for its exit
// event, deletes it and then ctr. What is gone already is fine.
func (tc *testClient) killAndDelete(t testing.TB, ctr types.Container, tk types.Task) {
	t.Helper()
	id := tk.(*task).c8dTask.ID()
	if err := tk.Kill(tc.ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("kill %s: %v", id, err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if _, err := tk.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("delete task %s: %v", id, err)
	}
	if err := ctr.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("delete container %s: %v", id, err)
	}
}

// exec starts process execID in tk running args, with a stdin if
// withStdin, and returns it with its captured output.
func (tc *testClient) exec(t testing.TB, tk types.Task, execID string, withStdin bool, args ...string) (types.Process, *capture) {
	t.Helper()
	out := &capture{}
	p, err := tk.Exec(tc.ctx, execID, tc.processSpec(t, execID, args...), withStdin, out.attach)
	if err != nil {
		t.Fatalf("Exec(%s): %v", execID, err)
	}
	return p, out
}

// reap waits for the exit event of process processID of container ctrID,
// deletes p, that process (a Task or an exec), and returns the event and
// the status Delete returned.
func (tc *testClient) reap(t testing.TB, ctrID, processID string, p types.Process) (types.EventInfo, *containerd.ExitStatus) {
	t.Helper()
	exit := tc.backend.waitEvent(t, ctrID, types.EventExit, processID)
	st, err := p.Delete(tc.ctx)
	if err != nil {
		t.Fatalf("delete %s/%s: %v", ctrID, processID, err)
	}
	return exit, st
}

// exitCase is a process that ends in a way of its own, and the exit code
// containerd reports for it: a signal's death is 128+signal.
type exitCase struct {
	name string // also the exec ID
	args []string
	kill syscall.Signal // sent once the process runs; 0 for none
	want uint32
}

// exitCases are the ways a process ends that its exit code tells apart.
var exitCases = []exitCase{
	{"exit-7", []string{"sh", "-c", "exit 7"}, 0, 7},
	{"exit-0", []string{"true"}, 0, 0},
	{"sigkill", []string{"sleep", "3600"}, syscall.SIGKILL, 137},
}

// end sends the case's signal to p, if it has one.
func (c exitCase) end(t testing.TB, tc *testClient, p types.Process) {
	t.Helper()
	if c.kill != 0 {
		if err := p.Kill(tc.ctx, c.kill); err != nil {
			t.Fatal(err)
		}
	}
}

// check fails t unless the exit event of process pid and the status its
// Delete returned both have the case's exit code, and the status a time.
func (c exitCase) check(t testing.TB, exit types.EventInfo, st *containerd.ExitStatus, pid uint32) {
	t.Helper()
	if exit.ExitCode != c.want || exit.Pid != pid || st.ExitCode() != c.want || st.ExitTime().IsZero() {
		t.Fatalf("exit event %+v, Delete's exit status %d at %v; want code %d pid %d", exit, st.ExitCode(), st.ExitTime(), c.want, pid)
	}
}

// remove deletes ctr's stopped task tk, then ctr, and returns the status
// the task's Delete returned.
func (tc *testClient) remove(t testing.TB, ctr types.Container, tk types.Task) *containerd.ExitStatus {
	t.Helper()
	st, err := tk.Delete(tc.ctx)
	if err != nil {
		t.Fatalf("delete task: %v", err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatalf("delete container: %v", err)
	}
	return st
}

// finish waits for the exit event of task tk of container id, ctr, removes
// both and returns the event and the status the task's Delete returned.
func (tc *testClient) finish(t testing.TB, id string, ctr types.Container, tk types.Task) (types.EventInfo, *containerd.ExitStatus) {
	t.Helper()
	exit := tc.backend.waitEvent(t, id, types.EventExit, id)
	return exit, tc.remove(t, ctr, tk)
}

// deleteWithoutTask checks that container id, ctr, has no task and nothing
// in its bundle, as a refused NewTask must leave it, and deletes it.
func (tc *testClient) deleteWithoutTask(t testing.TB, id string, ctr types.Container) {
	t.Helper()
	assertEmptyDir(t, filepath.Join(tc.stateDir, id))
	if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
		t.Errorf("Task after the refused NewTask: %v, want NotFound", err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
}

// assertNoFIFOs fails t if FIFOs of processes whose IDs match pattern are
// left in the bundle of container id.
func (tc *testClient) assertNoFIFOs(t testing.TB, id, pattern string) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(tc.stateDir, id, pattern+"-*")); len(left) != 0 {
		t.Errorf("fifos left: %v", left)
	}
}

// assertNoExitBefore proves that no exit event of incarnation pid of ctr's
// init process reaches the Backend: it runs one more incarnation of the
// container and waits for that one's exit, which containerd publishes
// after every event of the earlier one (a late copy of an earlier exit is
// dropped by pid), then checks that no exit of pid came before it.
func (tc *testClient) assertNoExitBefore(t testing.TB, ctr types.Container, pid uint32) {
	t.Helper()
	id := ctr.(*container).c8dCtr.ID()
	// Deleting an attached task removes its emptied bundle, as with moby,
	// whose engine makes a new container (and bundle) for every start.
	if err := os.MkdirAll(filepath.Join(tc.stateDir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	var out capture
	next := tc.createAndStart(t, ctr, false, out.attach)
	if err := next.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitExit(t, id, next.Pid())
	if _, err := next.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range tc.backend.of(id) {
		if e.Type == types.EventExit && e.Info.Pid == pid && e.Info.ProcessID == id {
			t.Fatalf("exit of pid %d delivered although its delete returned it: %v", pid, tc.backend.of(id))
		}
	}
}

// whileDown runs f while daemon d, a test's own, is killed, and starts d
// again after it.
func whileDown(t testing.TB, d *testutil.Daemon, f func()) {
	t.Helper()
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	f()
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
}

// wantUnavailable fails t unless err, of what was tried with containerd
// down, is classed Unavailable.
func wantUnavailable(t testing.TB, what string, err error) {
	t.Helper()
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("%s with containerd down: %v, want Unavailable", what, err)
	}
}
