//go:build linux

package libcontainerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestExecStdin sends stdin to an exec'd cat, closes it and checks that cat
// saw EOF: its output, exit event and exit status.
func TestExecStdin(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	p, out := tc.exec(t, task, "cat", true, "cat")
	out.send(t, "through the exec\n")
	out.closeStdin(t)
	if stdout, stderr := out.wait(t); stdout != "through the exec\n" || stderr != "" {
		t.Fatalf("stdout %q stderr %q", stdout, stderr)
	}
	pid := p.Pid()
	exit, st := tc.reap(t, id, "cat", p)
	if exit.ExitCode != 0 || exit.Pid != pid || st.ExitCode() != 0 {
		t.Fatalf("exit event %+v, exit status %d; want code 0 pid %d", exit, st.ExitCode(), pid)
	}
	tc.backend.waitEvent(t, id, types.EventExecAdded, "cat")
	tc.backend.waitEvent(t, id, types.EventExecStarted, "cat")
	tc.assertNoFIFOs(t, id, "cat")
}

// TestExecTTYResize runs an exec on a terminal, resizes the terminal and
// reads the size back with stty.
func TestExecTTYResize(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	spec := tc.processSpec(t, id, "sh", "-c", "read line; stty size")
	spec.Terminal = true
	var out engineIO
	p, err := task.Exec(tc.ctx, "tty", spec, true, out.attach)
	if err != nil {
		t.Fatal(err)
	}
	if out.dio.Stderr != nil {
		t.Fatal("exec on a terminal has a stderr stream")
	}
	if _, err := os.Lstat(filepath.Join(tc.stateDir, id, "tty-stderr")); !os.IsNotExist(err) {
		t.Fatalf("stderr fifo of a terminal exec: %v", err)
	}
	if err := p.Resize(tc.ctx, 123, 45); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	out.send(t, "\n")
	out.waitOutput(t, "45 123")
	if exit, _ := tc.reap(t, id, "tty", p); exit.ExitCode != 0 {
		t.Fatalf("exit event %+v, want code 0", exit)
	}
}

// TestExecConcurrent runs 20 execs in one container at once; each gets its
// own output and its events.
func TestExecConcurrent(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	const n = 20
	var (
		ids    = make([]string, n)
		pspecs = make([]*specs.Process, n)
		outs   = make([]capture, n)
		procs  = make([]types.Process, n)
	)
	for i := range n {
		ids[i] = fmt.Sprintf("exec-%d", i)
		pspecs[i] = tc.processSpec(t, id, "echo", "hello", ids[i])
	}
	if err := inParallel(n, func(i int) (err error) {
		procs[i], err = task.Exec(tc.ctx, ids[i], pspecs[i], false, outs[i].attach)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		stdout, stderr := outs[i].wait(t)
		if want := "hello " + ids[i] + "\n"; stdout != want || stderr != "" {
			t.Errorf("exec %s: stdout %q stderr %q, want %q", ids[i], stdout, stderr, want)
		}
		// Delete requires the process to have stopped: its exit event
		// says it has.
		tc.backend.waitEvent(t, id, types.EventExit, ids[i])
	}
	if err := inParallel(n, func(i int) error {
		st, err := procs[i].Delete(tc.ctx)
		switch {
		case err != nil:
			return fmt.Errorf("delete %s: %w", ids[i], err)
		case st.ExitCode() != 0:
			return fmt.Errorf("exec %s: exit status %d", ids[i], st.ExitCode())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitUntil(t, "20 exec-added, exec-started and exits", func(evs []event) bool {
		return countEvents(evs, id, types.EventExecAdded) == n &&
			countEvents(evs, id, types.EventExecStarted) == n &&
			countEvents(evs, id, types.EventExit) == n
	})
	for _, e := range tc.backend.of(id) {
		if e.Type == types.EventExit && !strings.HasPrefix(e.Info.ProcessID, "exec-") {
			t.Fatalf("unexpected exit %v", e)
		}
	}
	tc.assertNoFIFOs(t, id, "exec")
}

// TestExecDuplicateID checks that a second exec with the ID of a running one
// is a Conflict and leaves the first one's FIFOs and output alone.
func TestExecDuplicateID(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	p, first := tc.exec(t, task, "dup", true, "sh", "-c", "while read l; do echo got:$l; done")
	fifos := snapshotDir(t, filepath.Join(tc.stateDir, id))

	var second capture
	if _, err := task.Exec(tc.ctx, "dup", tc.processSpec(t, id, "echo", "intruder"), true, second.attach); !errdefs.IsConflict(err) {
		t.Fatalf("duplicate exec: %v, want Conflict", err)
	}
	if second.stdin != nil {
		t.Fatal("the duplicate exec's stdio callback was called")
	}
	if got := snapshotDir(t, filepath.Join(tc.stateDir, id)); !slices.Equal(got, fifos) {
		t.Fatalf("bundle changed by the duplicate exec: %v, was %v", got, fifos)
	}
	// The first exec still reads its stdin and writes its stdout.
	first.send(t, "one\n")
	first.waitOutput(t, "got:one\n")
	first.closeStdin(t)
	if exit := tc.backend.waitEvent(t, id, types.EventExit, "dup"); exit.ExitCode != 0 || exit.Pid != p.Pid() {
		t.Fatalf("exit event %+v, want code 0 pid %d", exit, p.Pid())
	}
	if stdout, _ := first.wait(t); stdout != "got:one\n" {
		t.Fatalf("stdout %q", stdout)
	}
	// An exited exec that was not deleted still holds its ID.
	if _, err := task.Exec(tc.ctx, "dup", tc.processSpec(t, id, "true"), false, second.attach); !errdefs.IsConflict(err) {
		t.Fatalf("exec with the ID of an exited exec: %v, want Conflict", err)
	}
	if _, err := p.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	// The init process's FIFOs are named after the container ID.
	if _, err := task.Exec(tc.ctx, id, tc.processSpec(t, id, "true"), false, second.attach); !errdefs.IsConflict(err) {
		t.Fatalf("exec with the container's ID: %v, want Conflict", err)
	}
}

// TestExecExitCode checks the exit code of an exec in its event and in
// Delete.
func TestExecExitCode(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	for _, c := range exitCases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := tc.exec(t, task, c.name, false, c.args...)
			c.end(t, tc, p)
			pid := p.Pid()
			exit, st := tc.reap(t, id, c.name, p)
			c.check(t, exit, st, pid)
		})
	}
}

// TestExecNotFound checks that a deleted exec is NotFound for Delete and
// Kill.
func TestExecNotFound(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	p, _ := tc.exec(t, task, "once", false, "true")
	tc.reap(t, id, "once", p)
	if _, err := p.Delete(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete: %v, want NotFound", err)
	}
	if err := p.Kill(tc.ctx, syscall.SIGKILL); !errdefs.IsNotFound(err) {
		t.Fatalf("Kill after Delete: %v, want NotFound", err)
	}
	if err := p.Resize(tc.ctx, 80, 24); err == nil {
		t.Fatal("Resize after Delete succeeded")
	}
}

// TestFailuresLeaveNoFIFOs checks that a NewTask or Exec that fails, in the
// engine's stdio callback or in containerd, removes the FIFOs it made and
// leaves the ID free.
func TestFailuresLeaveNoFIFOs(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	errStdio := errors.New("engine cannot attach")
	failures := []struct {
		name   string
		args   []string
		attach types.StdioCallback
	}{
		{"stdio error", []string{"true"}, func(*cio.DirectIO) (cio.IO, error) { return nil, errStdio }},
		{"stdio panic", []string{"true"}, func(*cio.DirectIO) (cio.IO, error) { panic("engine bug") }},
		{"runtime fails", []string{"/no/such/binary"}, (&capture{}).attach},
	}

	t.Run("NewTask", func(t *testing.T) {
		for _, c := range failures {
			t.Run(c.name, func(t *testing.T) {
				id := testutil.ID(t)
				ctr := tc.newContainer(t, id, c.args)
				if _, err := ctr.NewTask(tc.ctx, "", true, c.attach); err == nil {
					t.Fatal("NewTask succeeded")
				}
				tc.deleteWithoutTask(t, id, ctr)
			})
		}
	})

	t.Run("Exec", func(t *testing.T) {
		id := testutil.ID(t)
		_, task := tc.runSleeper(t, id)
		bundle := filepath.Join(tc.stateDir, id)
		before := snapshotDir(t, bundle)
		for _, c := range failures {
			if _, err := task.Exec(tc.ctx, "failing", tc.processSpec(t, id, c.args...), true, c.attach); err == nil {
				t.Fatalf("%s: Exec succeeded", c.name)
			}
			if after := snapshotDir(t, bundle); !slices.Equal(after, before) {
				t.Fatalf("%s: bundle holds %v, held %v", c.name, after, before)
			}
		}
		// The ID is free again.
		p, out := tc.exec(t, task, "failing", false, "echo", "ok")
		if stdout, _ := out.wait(t); stdout != "ok\n" {
			t.Fatalf("stdout %q", stdout)
		}
		tc.reap(t, id, "failing", p)
	})
}

// TestExecRecordsBounded is a healthcheck on one container for months:
// execs one after the other, some failing to start (a missing command),
// the others exiting and deleted by the engine at their exit. What the
// client remembers of them stays within its tombstone bound plus the
// processes alive.
func TestExecRecordsBounded(t *testing.T) {
	t.Parallel()
	const (
		perKind = 5000 // failing execs, and as many that run
		workers = 4
		bound   = 64 // tombstones kept
	)
	b := newRecordingBackend()
	var exited sync.Map // exec ID -> chan struct{}, closed at its exit event
	b.fail = func(_ string, et types.EventType, ei types.EventInfo) error {
		if et != types.EventExit {
			return nil
		}
		if ch, ok := exited.LoadAndDelete(ei.ProcessID); ok {
			close(ch.(chan struct{}))
		}
		return nil
	}
	tc := newTestClient(t, withBackend(b), withClientOptions(func(o *clientOptions) { o.tombstoneMax = bound }))
	id := testutil.ID(t)
	_, task := tc.runSleeper(t, id)
	missing := tc.processSpec(t, id, "/no/such/command")
	runs := tc.processSpec(t, id, "true")
	var largest atomic.Int64
	err := inParallel(workers, func(w int) error {
		for i := range perKind / workers {
			execID := fmt.Sprintf("fail-%d-%d", w, i)
			if _, err := task.Exec(tc.ctx, execID, missing, false, (&capture{}).attach); err == nil {
				return fmt.Errorf("exec %s of a missing command started", execID)
			}
			execID = fmt.Sprintf("run-%d-%d", w, i)
			done := make(chan struct{})
			exited.Store(execID, done)
			p, err := task.Exec(tc.ctx, execID, runs, false, (&capture{}).attach)
			if err != nil {
				return err
			}
			select {
			case <-done:
			case <-time.After(waitTimeout):
				return fmt.Errorf("no exit event of %s", execID)
			}
			if _, err := p.Delete(tc.ctx); err != nil {
				return err
			}
			n := int64(tc.events.store.size())
			for m := largest.Load(); n > m && !largest.CompareAndSwap(m, n); m = largest.Load() {
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Alive: the init process, and up to two execs per worker.
	if n := largest.Load(); n > bound+1+2*workers {
		t.Fatalf("up to %d processes remembered after %d execs, bound %d tombstones", n, 2*perKind, bound)
	}
	t.Logf("%d execs: up to %d processes remembered", 2*perKind, largest.Load())
}
