package libcontainerd

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// v29ExitFilter is dockerd v29's filter of exit events (daemon/monitor.go,
// shouldIgnoreExitEventWithLock), in a test Backend: for the exit of a
// container it believes running, it asks the task's Status and ignores
// the exit when the task is Running, or Stopped with another exit code;
// the container would then stay running for good. A Status error lets the
// exit through.
type v29ExitFilter struct {
	ctx     context.Context
	mu      sync.Mutex
	tasks   map[string]types.Task // the running containers' tasks
	ignored []string
}

func newV29ExitFilter(ctx context.Context, b *recordingBackend) *v29ExitFilter {
	f := &v29ExitFilter{ctx: ctx, tasks: make(map[string]types.Task)}
	b.fail = f.processEvent
	return f
}

// running records that the engine runs task as container id.
func (f *v29ExitFilter) running(id string, task types.Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[id] = task
}

func (f *v29ExitFilter) processEvent(id string, et types.EventType, ei types.EventInfo) error {
	if et != types.EventExit || ei.ProcessID != id {
		return nil
	}
	f.mu.Lock()
	task := f.tasks[id]
	delete(f.tasks, id) // exited: a second exit is the engine's duplicate
	f.mu.Unlock()
	if task == nil {
		return nil
	}
	st, err := task.Status(f.ctx)
	if err == nil && (st.Status == containerd.Running || st.Status == containerd.Stopped && st.ExitStatus != ei.ExitCode) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ignored = append(f.ignored, fmt.Sprintf("exit %d of %s (pid %d): task %s, exit status %d", ei.ExitCode, id, ei.Pid, st.Status, st.ExitStatus))
	}
	return nil
}

func (f *v29ExitFilter) assertNoneIgnored(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ignored) > 0 {
		t.Fatalf("dockerd v29 would ignore: %v", f.ignored)
	}
}

// TestExitsPassV29Filter runs the paths on which the client delivers an
// exit that moby's copy would not, and checks that each agrees with what
// Task.Status answers when the engine asks, so that dockerd v29 does not
// drop it: an exit while containerd is down (found by reconciliation, or
// as containerd 2.4 cleans the task up at its restart), an exit whose
// TaskExit was lost, delivered from someone else's delete, and an OOM kill
// whose TaskOOM was lost.
func TestExitsPassV29Filter(t *testing.T) {
	t.Parallel()
	var lose sync.Map // container ID -> func(taskEvent) bool
	tc := newTestClient(t, onOwnDaemon(), withLostStreamEvents(func(ev taskEvent) bool {
		f, ok := lose.Load(ev.info.ContainerID)
		return ok && f.(func(taskEvent) bool)(ev)
	}))
	base := testutil.ID(t)
	d := tc.daemon
	filter := newV29ExitFilter(tc.ctx, tc.backend)
	loseExits := func(ev taskEvent) bool { return ev.typ == types.EventExit }
	trapped := []string{"sh", "-c", `trap "exit 3" TERM; echo trapped; while :; do sleep 0.05; done`}
	start := func(id string, args []string, opts ...oci.SpecOpts) (types.Container, types.Task) {
		ctr := tc.newContainer(t, id, args, opts...)
		out := &capture{}
		task := tc.createAndStart(t, ctr, false, out.attach)
		if args[0] == "sh" && args[2] == trapped[2] {
			out.waitOutput(t, "trapped")
		}
		filter.running(id, task)
		return ctr, task
	}
	// terminate makes task exit 3 and waits until its process is gone.
	terminate := func(task types.Task) {
		t.Helper()
		if err := syscall.Kill(int(task.Pid()), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitGone(t, task.Pid())
	}

	for _, c := range []struct {
		name, suffix string
		exitsLost    bool
		end          func(task types.Task)
	}{
		{"exit while containerd is down", "-down", false, func(task types.Task) {
			whileDown(t, d, func() { terminate(task) })
		}},
		{"TaskExit lost, found at a reconnect", "-reconnect", true, func(task types.Task) {
			terminate(task)
			if err := d.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := base + c.suffix
			if c.exitsLost {
				lose.Store(id, loseExits)
			}
			ctr, task := start(id, trapped)
			c.end(task)
			tc.backend.waitExit(t, id, task.Pid())
			filter.assertNoneIgnored(t)
			tc.deleteAll(t, ctr, task)
		})
	}

	t.Run("TaskExit lost, someone else deletes", func(t *testing.T) {
		id := base + "-deleted"
		lose.Store(id, loseExits)
		ctr, task := start(id, trapped)
		if err := syscall.Kill(int(task.Pid()), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		raw := tc.c8dTask(t, id)
		exited, err := raw.Wait(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		<-exited
		if _, err := raw.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		// containerd 2.4 loses some TaskDeletes (the shim shuts down
		// before it has published): then the exit comes from the next
		// reconciliation, which finds the task gone.
		tc.events.reconcile(tc.ctx)
		exit := tc.backend.waitExit(t, id, task.Pid())
		fromDelete := exit.ExitCode == 3 && exit.Error == nil
		gone := exit.ExitCode == 255 && errdefs.IsNotFound(exit.Error)
		if !fromDelete && !gone {
			t.Fatalf("exit %+v, want 3 from the TaskDelete, or 255 NotFound from reconciliation", exit)
		}
		filter.assertNoneIgnored(t)
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("TaskOOM lost", func(t *testing.T) {
		id := base + "-oom"
		lose.Store(id, func(ev taskEvent) bool { return ev.typ == types.EventOOM })
		ctr, task := start(id, []string{"sh", "-c", allocForever}, oci.WithMemoryLimit(oomLimit))
		tc.backend.waitExit(t, id, task.Pid())
		assertOOMThenExit(t, tc.backend, id, task.Pid())
		filter.assertNoneIgnored(t)
		tc.deleteAll(t, ctr, task)
	})
}
