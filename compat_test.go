package libcontainerd

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

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
	tc := newTestClient(t)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, lineEcho)
	var first engineIO
	task := tc.createAndStart(t, ctr, true, first.attach)
	if _, err := first.stdin.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	first.waitOutput(t, "got:one\n")

	// The engine goes away: its file descriptors close, the FIFOs stay.
	first.die(t)
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := newRecordingBackend()
	c2, err := New(tc.ctx, tc.daemon.Client(t), tc.stateDir, tc.ns, b2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close() })
	ctr2, err := c2.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := ctr2.Task(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := loaded.Status(tc.ctx); err != nil || st.Status != containerd.Running || loaded.Pid() != task.Pid() {
		t.Fatalf("loaded task: pid %d (want %d), status %v, %v", loaded.Pid(), task.Pid(), st.Status, err)
	}
	var second capture
	task2, err := ctr2.AttachTask(tc.ctx, second.attach)
	if err != nil {
		t.Fatal(err)
	}
	if task2.Pid() != task.Pid() {
		t.Fatalf("attached to pid %d, want %d", task2.Pid(), task.Pid())
	}
	if _, err := second.stdin.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	second.waitOutput(t, "got:two\n")
	if err := second.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if exit := b2.waitEvent(t, id, types.EventExit, id); exit.ExitCode != 4 || exit.Pid != task.Pid() {
		t.Fatalf("exit event %+v, want code 4 pid %d", exit, task.Pid())
	}
	if stdout, _ := second.wait(t); stdout != "got:two\n" {
		t.Fatalf("stdout after attach %q", stdout)
	}
	st, err := task2.Delete(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 4 {
		t.Fatalf("exit status %d, want 4", st.ExitCode())
	}
	if err := ctr2.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if left := dirEntries(t, tc.stateDir); len(left) != 0 {
		t.Fatalf("left in state dir: %v", left)
	}
}

// TestAttachMobyContainer loads and attaches a container made the way moby's
// libcontainerd makes them: the bundle label, FIFOs at
// <bundle>/<id>-stdin|-stdout|-stderr opened with cio.NewDirectIO, by an
// engine that then went away.
func TestAttachMobyContainer(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	cli := tc.daemon.Client(t)
	ctx := tc.ctx

	bundle := filepath.Join(tc.stateDir, id)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	ctr, err := cli.NewContainer(ctx, id,
		containerd.WithSpec(tc.spec(t, id, lineEcho)),
		containerd.WithRuntime(runcShim, &runcoptions.Options{}),
		containerd.WithAdditionalContainerLabels(map[string]string{DockerContainerBundlePath: bundle}),
	)
	if err != nil {
		t.Fatal(err)
	}
	fifos := cio.NewFIFOSet(cio.Config{
		Stdin:  filepath.Join(bundle, id+"-stdin"),
		Stdout: filepath.Join(bundle, id+"-stdout"),
		Stderr: filepath.Join(bundle, id+"-stderr"),
	}, func() error { return nil })
	var moby engineIO
	mobyTask, err := ctr.NewTask(ctx, func(string) (cio.IO, error) {
		dio, err := cio.NewDirectIO(context.Background(), fifos)
		if err != nil {
			return nil, err
		}
		return moby.attach(dio)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mobyTask.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := moby.stdin.Write([]byte("moby\n")); err != nil {
		t.Fatal(err)
	}
	moby.waitOutput(t, "got:moby\n")
	moby.die(t)

	lctr, err := tc.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var out capture
	task, err := lctr.AttachTask(ctx, out.attach)
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() != mobyTask.Pid() {
		t.Fatalf("attached to pid %d, want %d", task.Pid(), mobyTask.Pid())
	}
	if _, err := out.stdin.Write([]byte("libcontainerd\n")); err != nil {
		t.Fatal(err)
	}
	out.waitOutput(t, "got:libcontainerd\n")

	// An exec gets moby's FIFO names in the same bundle.
	var execOut capture
	p, err := task.Exec(ctx, "exec", tc.processSpec(t, id, "echo", "exec"), false, execOut.attach)
	if err != nil {
		t.Fatal(err)
	}
	assertPrivate(t, filepath.Join(bundle, "exec-stdout"), os.ModeNamedPipe)
	if stdout, _ := execOut.wait(t); stdout != "exec\n" {
		t.Fatalf("exec stdout %q", stdout)
	}
	tc.backend.waitEvent(t, id, types.EventExit, "exec")
	if _, err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	if err := out.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if exit := tc.backend.waitEvent(t, id, types.EventExit, id); exit.ExitCode != 4 || exit.Pid != task.Pid() {
		t.Fatalf("exit event %+v, want code 4 pid %d", exit, task.Pid())
	}
	if stdout, _ := out.wait(t); stdout != "got:libcontainerd\n" {
		t.Fatalf("stdout after attach %q", stdout)
	}
	if st, err := task.Delete(ctx); err != nil || st.ExitCode() != 4 {
		t.Fatalf("Delete: %v, %v", st, err)
	}
	if err := lctr.Delete(ctx); err != nil {
		t.Fatal(err)
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
	cli := tc.daemon.Client(t)
	userns := oci.WithUserNamespace(
		[]specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		[]specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}})
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
			_, err := cli.NewContainer(tc.ctx, id,
				containerd.WithSpec(tc.spec(t, id, []string{"true"}, c.opts...)),
				containerd.WithRuntime(runcShim, nil),
				containerd.WithAdditionalContainerLabels(map[string]string{DockerContainerBundlePath: bundle}),
			)
			if err != nil {
				t.Fatal(err)
			}
			ctr, err := tc.LoadContainer(tc.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if err := ctr.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(bundle)
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
		ctr := tc.newContainer(t, id, []string{"sleep", "3600"})
		var out capture
		pids[id] = tc.createAndStart(t, ctr, false, out.attach).Pid()
	}
	// The engine goes away; both containers exit while it is down.
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	cli := tc.daemon.Client(t)
	for _, id := range []string{consumed, unconsumed} {
		ctr, err := cli.LoadContainer(tc.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ctr.Task(tc.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		exited, err := raw.Wait(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Kill(tc.ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
	}

	b := newRecordingBackend()
	c, err := New(tc.ctx, cli, tc.stateDir, tc.ns, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	restarted := &testClient{Client: c, ctx: tc.ctx, ns: tc.ns, stateDir: tc.stateDir, backend: b, daemon: tc.daemon}

	// Restore the way dockerd does: attach, ask the status, delete.
	restore := func(id string) (types.Container, types.Task) {
		ctr, err := c.LoadContainer(tc.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var out capture
		task, err := ctr.AttachTask(tc.ctx, out.attach)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Stopped {
			t.Fatalf("restored task of %s: status %v, %v; want stopped", id, st.Status, err)
		}
		return ctr, task
	}
	ctr, task := restore(consumed)
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
	raw, err := cli.LoadContainer(tc.ctx, unconsumed)
	if err != nil {
		t.Fatal(err)
	}
	rawTask, err := raw.Task(tc.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawTask.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if exit := b.waitEvent(t, unconsumed, types.EventExit, unconsumed); exit.Pid != pids[unconsumed] || exit.ExitCode != 137 {
		t.Fatalf("exit of the unconsumed task %+v, want pid %d code 137", exit, pids[unconsumed])
	}
	// Run one more incarnation so that any second copy would be there.
	restarted.assertNoExitBefore(t, ctr2, 0)
	n := 0
	for _, e := range b.of(unconsumed) {
		if e.Type == types.EventExit && e.Info.Pid == pids[unconsumed] {
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
