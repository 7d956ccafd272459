//go:build linux

package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// lineEcho answers every line of its stdin and exits 4 at EOF.
var lineEcho = []string{"sh", "-c", "while read l; do echo got:$l; done; exit 4"}

// TestAttachTaskAfterRestart is the engine restart: a second client on the
// same state directory and namespace attaches to a task the first one
// created and keeps its stdin and stdout going.
func TestAttachTaskAfterRestart(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	_, task, first := tc.run(t, id, true, lineEcho)
	first.send(t, "one\n")
	first.waitOutput(t, "got:one\n")

	// The engine goes away: its file descriptors close, the FIFOs stay.
	first.die(t)
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}

	tc2 := tc.restart(t)
	ctr2 := tc2.load(t, id)
	loaded, err := ctr2.Task(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := loaded.Status(tc.ctx); err != nil || st.Status != containerd.Running || loaded.Pid() != task.Pid() {
		t.Fatalf("loaded task: pid %d (want %d), status %v, %v", loaded.Pid(), task.Pid(), st.Status, err)
	}
	task2, second := tc2.attach(t, ctr2, task.Pid())
	second.send(t, "two\n")
	second.waitOutput(t, "got:two\n")
	second.closeStdin(t)
	if stdout, _ := second.wait(t); stdout != "got:two\n" {
		t.Fatalf("stdout after attach %q", stdout)
	}
	if exit, st := tc2.finish(t, id, ctr2, task2); exit.ExitCode != 4 || exit.Pid != task.Pid() || st.ExitCode() != 4 {
		t.Fatalf("exit event %+v, Delete's exit status %d; want code 4 pid %d", exit, st.ExitCode(), task.Pid())
	}
	assertEmptyDir(t, tc.stateDir)
}

// TestAttachMobyContainer loads and attaches a container made the way moby's
// libcontainerd makes them: the bundle label, FIFOs at
// <bundle>/<id>-stdin|-stdout|-stderr opened with cio.NewDirectIO, by an
// engine that then went away.
func TestAttachMobyContainer(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	bundle := filepath.Join(tc.stateDir, id)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	ctr := tc.newMobyContainer(t, id, bundle, tc.spec(t, id, lineEcho), &runcoptions.Options{})
	fifos := cio.NewFIFOSet(cio.Config{
		Stdin:  filepath.Join(bundle, id+"-stdin"),
		Stdout: filepath.Join(bundle, id+"-stdout"),
		Stderr: filepath.Join(bundle, id+"-stderr"),
	}, func() error { return nil })
	var moby engineIO
	mobyTask, err := ctr.NewTask(tc.ctx, func(string) (cio.IO, error) {
		dio, err := cio.NewDirectIO(context.Background(), fifos)
		if err != nil {
			return nil, err
		}
		return moby.attach(dio)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mobyTask.Start(tc.ctx); err != nil {
		t.Fatal(err)
	}
	moby.send(t, "moby\n")
	moby.waitOutput(t, "got:moby\n")
	moby.die(t)

	lctr := tc.load(t, id)
	task, out := tc.attach(t, lctr, mobyTask.Pid())
	out.send(t, "libcontainerd\n")
	out.waitOutput(t, "got:libcontainerd\n")

	// An exec gets moby's FIFO names in the same bundle.
	p, execOut := tc.exec(t, task, "exec", false, "echo", "exec")
	assertPrivate(t, filepath.Join(bundle, "exec-stdout"), os.ModeNamedPipe)
	if stdout, _ := execOut.wait(t); stdout != "exec\n" {
		t.Fatalf("exec stdout %q", stdout)
	}
	tc.reap(t, id, "exec", p)

	out.closeStdin(t)
	if stdout, _ := out.wait(t); stdout != "got:libcontainerd\n" {
		t.Fatalf("stdout after attach %q", stdout)
	}
	if exit, st := tc.finish(t, id, lctr, task); exit.ExitCode != 4 || exit.Pid != task.Pid() || st.ExitCode() != 4 {
		t.Fatalf("exit event %+v, Delete's exit status %d; want code 4 pid %d", exit, st.ExitCode(), task.Pid())
	}
	if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
		t.Fatalf("moby bundle after Delete: %v", err)
	}
}

// TestDeleteMobyBundles checks that Container.Delete removes the bundles
// moby's WithBundle makes, including <id>.<uid>.<gid> for a container with
// a user namespace, and nothing a label names outside them.
func TestDeleteMobyBundles(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	userns := oci.WithUserNamespace(remappedIDs, remappedIDs)
	for _, c := range []struct {
		name    string
		bundle  func(id string) string
		opts    []oci.SpecOpts
		removed bool
	}{
		{"plain", func(id string) string { return filepath.Join(tc.stateDir, id) }, nil, true},
		{"user namespace", func(id string) string { return filepath.Join(tc.stateDir, id+".100000.100000") }, []oci.SpecOpts{userns}, true},
		{"other remapping", func(id string) string { return filepath.Join(tc.stateDir, id+".1.1") }, []oci.SpecOpts{userns}, false},
		{"not its own", func(string) string { return filepath.Join(tc.stateDir, "elsewhere") }, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testutil.ID(t)
			bundle := c.bundle(id)
			if err := os.Mkdir(bundle, 0o700); err != nil {
				t.Fatal(err)
			}
			tc.newMobyContainer(t, id, bundle, tc.spec(t, id, []string{"true"}, c.opts...), nil)
			if err := tc.load(t, id).Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(bundle)
			if removed := os.IsNotExist(err); removed != c.removed {
				t.Fatalf("bundle %s removed: %v, want %v (%v)", bundle, removed, c.removed, err)
			}
			_ = os.Remove(bundle)
		})
	}
}

// TestRestoreDeleteConsumesExit is dockerd's live restore: containers
// exit while the engine is down; the restarted engine finds their tasks
// stopped, deletes them and handles the exit from the status Delete
// returns. moby's client sends no exit event for those, so neither may
// this one (dockerd would run its exit handler twice): not from the
// Delete, the TaskDelete, a late TaskExit, nor reconciliation. An exit
// that the engine does not consume with a Delete is still delivered, once.
func TestRestoreDeleteConsumesExit(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	consumed := testutil.ID(t, "consumed")
	unconsumed := testutil.ID(t, "unconsumed")
	pids := map[string]uint32{}
	for _, id := range []string{consumed, unconsumed} {
		_, task, _ := tc.run(t, id, false, []string{"sleep", "3600"})
		pids[id] = task.Pid()
	}
	// The engine goes away; both containers exit while it is down. Their
	// TaskExits are published before it comes back (a shim publishes
	// after Wait has returned: on a loaded machine the restarted engine
	// would get them, as from moby's client).
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	published := recordPublishedOOMs(t, tc)
	for _, id := range []string{consumed, unconsumed} {
		raw := tc.c8dTask(t, id)
		exited, err := raw.Wait(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Kill(tc.ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
	}
	for _, id := range []string{consumed, unconsumed} {
		eventually(t, "the TaskExit of "+id+" to be published", func() (bool, string) {
			seen := published.published(id)
			return slices.Contains(seen, oomKilledExit(pids[id])), fmt.Sprint(seen)
		})
	}

	restarted := tc.restart(t)
	// Restore the way dockerd does: attach, ask the status, delete.
	restore := func(id string) (types.Container, types.Task) {
		ctr := restarted.load(t, id)
		task, err := ctr.AttachTask(tc.ctx, (&capture{}).attach)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Stopped {
			t.Fatalf("restored task of %s: status %v, %v; want stopped", id, st.Status, err)
		}
		return ctr, task
	}
	ctr, task := restore(consumed)
	// Reconciliation can run between the engine's load and its Delete
	// (the first subscription's, late on a loaded machine): it must leave
	// an exit from before the load to the engine's Delete.
	restarted.events.reconcile(tc.ctx)
	st, err := task.Delete(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 137 {
		t.Fatalf("Delete returned exit %d, want 137", st.ExitCode())
	}
	restarted.assertNoExitBefore(t, ctr, pids[consumed])

	// Someone else deletes the other task: that exit reaches the engine.
	ctr2, _ := restore(unconsumed)
	t.Cleanup(func() {
		if t.Failed() {
			s := restarted.events.store
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Logf("record of %s: %+v; metrics %+v", unconsumed, s.lookup(procKey{unconsumed, unconsumed}), restarted.Metrics())
		}
	})
	restarted.events.reconcile(tc.ctx)
	if _, err := tc.c8dTask(t, unconsumed).Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	// containerd 2.4 loses the TaskDelete of some deletes (measured: 6 of
	// 60, 0 of 60 on 1.6): the shim shuts down before it has published
	// it. Then the exit comes from the next reconciliation, as gone.
	restarted.events.reconcile(tc.ctx)
	b := restarted.backend
	exit := b.waitEvent(t, unconsumed, types.EventExit, unconsumed)
	fromDelete := exit.ExitCode == 137 && exit.Error == nil
	gone := exit.ExitCode == 255 && errdefs.IsNotFound(exit.Error)
	if exit.Pid != pids[unconsumed] || !fromDelete && !gone {
		t.Fatalf("exit of the unconsumed task %+v, want pid %d, code 137 (TaskDelete) or 255 NotFound (reconciled)", exit, pids[unconsumed])
	}
	// Run one more incarnation so that any second copy would be there.
	restarted.assertNoExitBefore(t, ctr2, 0)
	n := 0
	for _, e := range exitsOf(b.of(unconsumed), unconsumed) {
		if e.Info.Pid == pids[unconsumed] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("exit of the unconsumed task delivered %d times: %v", n, b.of(unconsumed))
	}
	for _, c := range []types.Container{ctr, ctr2} {
		if err := c.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	}
}
