//go:build linux

package libcontainerd

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
	tc, id := newDaemonTest(t)
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

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Delete(tc.ctx); !errdefs.IsUnavailable(err) {
		t.Fatalf("exec Delete with containerd down: %v, want Unavailable", err)
	}
	if _, err := task.Delete(tc.ctx); !errdefs.IsUnavailable(err) {
		t.Fatalf("task Delete with containerd down: %v, want Unavailable", err)
	}
	if err := ctr.Delete(tc.ctx); !errdefs.IsUnavailable(err) {
		t.Fatalf("container Delete with containerd down: %v, want Unavailable", err)
	}
	if m := tc.Metrics(); m.DeletesDeferred != 3 || m.DeletesCompleted != 0 {
		t.Fatalf("metrics with containerd down: %+v", m)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
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
	tc, id := newDaemonTest(t)
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

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []types.Container{unclaimed, claimed} {
		if err := c.Delete(tc.ctx); !errdefs.IsUnavailable(err) {
			t.Fatalf("container Delete with containerd down: %v, want Unavailable", err)
		}
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
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
