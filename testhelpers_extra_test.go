package libcontainerd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// engineIO is a capture that keeps the DirectIO it was given, so that a
// test can look at it and close the engine's ends of the FIFOs the way an
// engine that dies does.
type engineIO struct {
	capture
	dio *cio.DirectIO
}

func (e *engineIO) attach(dio *cio.DirectIO) (cio.IO, error) {
	e.dio = dio
	return e.capture.attach(dio)
}

// die closes the engine's file descriptors of the FIFOs as the exit of the
// engine's process would: the FIFOs stay on disk and the process's stdin
// stays open in the shim (no CloseIO).
func (e *engineIO) die(t testing.TB) {
	t.Helper()
	if e.dio.Stdin != nil {
		var raw io.Closer = e.dio.Stdin
		if sc, ok := e.dio.Stdin.(*stdinCloser); ok {
			raw = sc.WriteCloser
		}
		if err := raw.Close(); err != nil {
			t.Fatalf("close stdin fifo: %v", err)
		}
	}
	for _, r := range []io.ReadCloser{e.dio.Stdout, e.dio.Stderr} {
		if r != nil {
			if err := r.Close(); err != nil {
				t.Fatalf("close output fifo: %v", err)
			}
		}
	}
	e.wait(t)
}

// processSpec returns the process of a busybox spec running args, for Exec.
func (tc *testClient) processSpec(t testing.TB, id string, args ...string) *specs.Process {
	t.Helper()
	return tc.spec(t, id, args).Process
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

// runSleeper creates container id running "sleep 3600" and starts its task;
// the task is killed and everything deleted when t ends.
func (tc *testClient) runSleeper(t *testing.T, id string) (types.Container, types.Task) {
	t.Helper()
	ctr := tc.newContainer(t, id, []string{"sleep", "3600"})
	var out capture
	task := tc.createAndStart(t, ctr, false, out.attach)
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

// eventTypes lists the types of evs, in order.
func eventTypes(evs []event) []types.EventType {
	out := make([]types.EventType, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// countEvents counts the events of type et of container id in evs.
func countEvents(evs []event, id string, et types.EventType) int {
	n := 0
	for _, e := range evs {
		if e.Info.ContainerID == id && e.Type == et {
			n++
		}
	}
	return n
}

// snapshotDir lists every path under dir, relative to it and with its
// inode number, sorted: for "nothing was created or replaced" checks.
func snapshotDir(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s@%d", rel, fi.Sys().(*syscall.Stat_t).Ino))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// assertPrivate fails t unless path exists and is not accessible to
// group and others.
func assertPrivate(t testing.TB, path string, wantType os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != wantType {
		t.Errorf("%s is a %v, want %v", path, fi.Mode().Type(), wantType)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("%s has mode %v, accessible to group or others", path, perm)
	}
}

func ptrTo[T any](v T) *T { return &v }

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
	tc.backend.waitUntil(t, "exit of the next incarnation", func(evs []event) bool {
		return slices.ContainsFunc(evs, func(e event) bool {
			return e.Type == types.EventExit && e.Info.ContainerID == id && e.Info.Pid == next.Pid()
		})
	})
	if _, err := next.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range tc.backend.of(id) {
		if e.Type == types.EventExit && e.Info.Pid == pid && e.Info.ProcessID == id {
			t.Fatalf("exit of pid %d delivered although its delete returned it: %v", pid, tc.backend.of(id))
		}
	}
}
