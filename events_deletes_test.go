//go:build linux

package libcontainerd

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestDeletesCompletedAfterOutage has the engine clean up while containerd
// is down, as dockerd does when exits reach it during an outage: the
// deletes of an exec, a task and a container fail with Unavailable, and
// the client completes them once containerd serves again, so that no shim
// or container is left behind.
func TestDeletesCompletedAfterOutage(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	ctr, task, _ := tc.run(t, id, false, []string{"sleep", "3600"})
	proc, _ := tc.exec(t, task, "exec1", false, "true")
	tc.backend.waitEvent(t, id, types.EventExit, "exec1")
	if err := task.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if len(d.Shims()) == 0 {
		t.Fatal("no shim found for the container")
	}

	whileDown(t, d, func() {
		_, err := proc.Delete(tc.ctx)
		wantUnavailable(t, "exec Delete", err)
		_, err = task.Delete(tc.ctx)
		wantUnavailable(t, "task Delete", err)
		wantUnavailable(t, "container Delete", ctr.Delete(tc.ctx))
		if m := tc.Metrics(); m.DeletesDeferred != 3 || m.DeletesCompleted != 0 {
			t.Fatalf("metrics with containerd down: %+v", m)
		}
	})
	eventually(t, "the deferred deletes", func() (bool, string) {
		m := tc.Metrics()
		return m.DeletesCompleted == 3, fmt.Sprintf("%+v", m)
	})
	if _, err := d.Client(t).LoadContainer(tc.ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("container after the outage: %v, want NotFound", err)
	}
	// The daemon is the test's own: its only shim is the container's.
	waitNoShims(t, d)
	if _, err := os.Lstat(filepath.Join(tc.stateDir, id)); !os.IsNotExist(err) {
		t.Fatalf("bundle after the outage: %v", err)
	}
	if n := len(exitsOf(tc.backend.all(), id)); n != 2 {
		t.Fatalf("%d exits delivered, want 2 (exec and task): %v", n, tc.backend.all())
	}
}

// TestDeferredDeleteOfUnclaimedTask is containerd killed while the engine
// creates a task: containerd's shim made the task, the engine's NewTask
// failed, so the engine only deletes the container, which fails too. Once
// containerd is back the client deletes that task, which nobody was
// handed, and then the container; a task it handed out is left alone.
func TestDeferredDeleteOfUnclaimedTask(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	unclaimed := tc.newContainer(t, id, []string{"sleep", "3600"})
	raw, err := d.Client(t).LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.NewTask(tc.ctx, cio.NullIO); err != nil {
		t.Fatal(err)
	}
	claimedID := testutil.ID(t, "claimed")
	claimed := tc.newContainer(t, claimedID, []string{"sleep", "3600"})
	claimedTask, err := claimed.NewTask(tc.ctx, "", false, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}

	whileDown(t, d, func() {
		for _, c := range []types.Container{unclaimed, claimed} {
			wantUnavailable(t, "container Delete", c.Delete(tc.ctx))
		}
	})
	eventually(t, "the deferred deletes", func() (bool, string) {
		m := tc.Metrics()
		return m.DeletesCompleted == 1 && tc.events.deletes.len() == 0, fmt.Sprintf("%+v, %d pending", m, tc.events.deletes.len())
	})
	if _, err := d.Client(t).LoadContainer(tc.ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("container with the unclaimed task after the outage: %v, want NotFound", err)
	}
	if st, err := claimedTask.Status(tc.ctx); err != nil || st.Status != containerd.Created {
		t.Fatalf("the task handed out: %v, %v; want it left created", st.Status, err)
	}
	if err := claimedTask.ForceDelete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := claimed.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	waitNoShims(t, d)
}

// waitNoShims waits until no shim of daemon d, a test's own, runs.
func waitNoShims(t testing.TB, d *testutil.Daemon) {
	t.Helper()
	eventually(t, "the shims to exit", func() (bool, string) {
		pids := d.Shims()
		return len(pids) == 0, fmt.Sprintf("shim pids %v", pids)
	})
}

// TestDeferredForceDeleteKills is the engine's clean-up of a task whose
// start it believes failed (containerd died during Start, after runc had
// started the process): a ForceDelete while containerd is down. Once
// containerd is back the client kills and deletes the task, as the
// ForceDelete would have, and the exit that nobody received is delivered.
func TestDeferredForceDeleteKills(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	ctr, task, _ := tc.run(t, id, false, []string{"sleep", "3600"})
	pid := task.Pid()
	whileDown(t, d, func() {
		wantUnavailable(t, "ForceDelete", task.ForceDelete(tc.ctx))
	})
	eventually(t, "the deferred ForceDelete", func() (bool, string) {
		m := tc.Metrics()
		return m.DeletesCompleted == 1, fmt.Sprintf("%+v, %d pending", m, tc.events.deletes.len())
	})
	waitGone(t, pid)
	if _, err := tc.c8dClient.TaskService().Get(tc.ctx, &tasks.GetRequest{ContainerID: id}); !errdefs.IsNotFound(wrapError(err)) {
		t.Fatalf("task after the deferred ForceDelete: %v, want NotFound", err)
	}
	if exit := tc.backend.waitExit(t, id, pid); exit.ExitCode != 137 {
		t.Fatalf("exit %+v, want 137", exit)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	waitNoShims(t, d)
	if n := len(exitsOfPid(tc.backend.all(), id, pid)); n != 1 {
		t.Fatalf("%d exits of pid %d, want 1", n, pid)
	}
}

// TestDeferredDeletesBoundToTheirRun has deletes deferred during an
// outage, and the engine, once containerd is back and before the client
// completes them, make anew what they named: a container under the same ID
// (ReplaceContainer), and a new task, already stopped, of another
// container. The deferred deletes leave the newer ones alone.
func TestDeferredDeletesBoundToTheirRun(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	tc, id := newTestClient(t, onOwnDaemon(), holdingDeferredDeletes(gate)), testutil.ID(t)
	d := tc.daemon
	replaced := tc.newContainer(t, id, []string{"true"})
	rerunID := testutil.ID(t, "rerun")
	rerun, oldTask, _ := tc.run(t, rerunID, false, []string{"true"})
	tc.backend.waitExit(t, rerunID, oldTask.Pid())

	whileDown(t, d, func() {
		wantUnavailable(t, "container Delete", replaced.Delete(tc.ctx))
		_, err := oldTask.Delete(tc.ctx)
		wantUnavailable(t, "task Delete", err)
	})

	var fresh types.Container
	if err := retry("ReplaceContainer once containerd serves", func() (err error) {
		fresh, err = ReplaceContainer(tc.ctx, tc.Client, id, tc.spec(t, id, []string{"sleep", "3600"}), runcShim, &runcoptions.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// containerd 2.4 may have removed the stopped task at its restart.
	if err := retry("the engine's own delete of the old task", func() error {
		if _, err := oldTask.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	newTask := tc.createAndStart(t, rerun, false, (&capture{}).attach)
	tc.backend.waitExit(t, rerunID, newTask.Pid())

	close(gate)
	eventually(t, "the deferred deletes to be settled", func() (bool, string) {
		return tc.events.deletes.len() == 0, fmt.Sprintf("%d pending, %+v", tc.events.deletes.len(), tc.Metrics())
	})
	if m := tc.Metrics(); m.DeletesCompleted != 0 {
		t.Fatalf("%d deferred deletes completed, want none: %+v", m.DeletesCompleted, m)
	}
	task := tc.createAndStart(t, fresh, false, (&capture{}).attach)
	if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
		t.Fatalf("task of the new container: %v, %v; want running", st.Status, err)
	}
	tc.killAndDelete(t, fresh, task)
	st, err := newTask.Delete(tc.ctx)
	if err != nil || st.ExitCode() != 0 {
		t.Fatalf("the engine's delete of the newer stopped task: %v, %v; want its status 0", st, err)
	}
	if err := rerun.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCloseAbandonsDeferredDeletes closes the client while a delete waits
// for containerd: Close does not wait for containerd, and says so in
// Metrics.
func TestCloseAbandonsDeferredDeletes(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"true"})
	if err := tc.daemon.Kill(); err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "container Delete", ctr.Delete(tc.ctx))
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if m := tc.Metrics(); m.DeletesDeferred != 1 || m.DeletesAbandoned != 1 || m.DeletesCompleted != 0 {
		t.Fatalf("metrics after Close: %+v, want one delete deferred and abandoned", m)
	}
}
