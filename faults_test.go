//go:build linux

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// faultDeadline is the context deadline of every call made while containerd
// is down; each must fail well within it.
const faultDeadline = 5 * time.Second

// TestContainerdDown stops containerd and calls every method of every
// handle: each returns an Unavailable error before its deadline, nothing is
// left on disk, and after containerd is back the handles work again.
func TestContainerdDown(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	ctr, task, _ := tc.run(t, id, true, []string{"sleep", "60"})
	proc, _ := tc.exec(t, task, "sleeper", false, "sleep", "60")
	before := dirEntries(t, filepath.Join(tc.stateDir, id))

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	fresh := testutil.ID(t, "new")
	calls := append(tc.clientCalls(id, fresh, tc.spec(t, fresh, []string{"true"})),
		everyCall(ctr, task, proc, "while-down", tc.processSpec(t, id, "true"), filepath.Join(t.TempDir(), "cp"), (&capture{}).attach)...)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tc.ctx, faultDeadline)
			defer cancel()
			start := time.Now()
			err := c.fn(ctx)
			if errors.Is(err, errNoError) {
				return // a Pid: nothing to call containerd for
			}
			elapsed := time.Since(start)
			if !errdefs.IsUnavailable(err) {
				t.Errorf("error %v (%T), want Unavailable", err, err)
			}
			if elapsed >= faultDeadline {
				t.Errorf("took %v, deadline %v", elapsed, faultDeadline)
			}
		})
	}
	if after := dirEntries(t, filepath.Join(tc.stateDir, id)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("bundle changed while containerd was down: %v, before %v", after, before)
	}
	if left := dirEntries(t, tc.stateDir); len(left) != 1 {
		t.Errorf("state dir: %v, want only %s", left, id)
	}

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	// The containerd client reconnects on its own schedule; an engine
	// retries.
	if err := retry("status after restart", func() error {
		st, err := task.Status(tc.ctx)
		if err == nil && st.Status != "running" {
			t.Fatalf("status after restart: %v", st.Status)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.reap(t, id, "sleeper", proc)
	if err := task.ForceDelete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, tc.stateDir)
}

// TestKilledMidCall kills containerd at different points of NewTask, Exec
// and Delete: whatever each call returns, after containerd is back the
// engine can clean up, no FIFO or bundle is left, and no goroutine.
func TestKilledMidCall(t *testing.T) {
	tc, _ := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	// One lifecycle first: its exit comes through the event stream, which
	// New does not wait for, so the stream's connection is in the baseline
	// and its marker publisher gone.
	warmup := testutil.ID(t, "warmup")
	ctr, task, out := tc.run(t, warmup, false, []string{"true"})
	tc.finish(t, warmup, ctr, task)
	out.wait(t)
	goroutines := runtime.NumGoroutine()
	startTask := func(ctr types.Container, args ...string) (types.Task, error) {
		task, err := ctr.NewTask(tc.ctx, "", true, (&capture{}).attach)
		if err != nil {
			return nil, err
		}
		return task, task.Start(tc.ctx)
	}
	for _, phase := range []struct {
		name    string
		args    []string
		prepare bool // start the task before containerd is killed
		op      func(id string, ctr types.Container, task types.Task) error
	}{
		{"NewTask", []string{"sleep", "60"}, false, func(_ string, ctr types.Container, _ types.Task) error {
			_, err := startTask(ctr)
			return err
		}},
		{"Exec", []string{"sleep", "60"}, true, func(id string, _ types.Container, task types.Task) error {
			p, err := task.Exec(tc.ctx, "x", tc.processSpec(t, id, "true"), true, (&capture{}).attach)
			if err != nil {
				return err
			}
			if !tc.backend.waitFor(5*time.Second, func(evs []event) bool { return len(exitsOf(evs, id)) > 0 }) {
				return fmt.Errorf("no exit event for exec %s (killed containerd lost it)", id)
			}
			_, err = p.Delete(tc.ctx)
			return err
		}},
		{"Delete", []string{"true"}, true, func(_ string, _ types.Container, task types.Task) error {
			_, err := task.Delete(tc.ctx)
			return err
		}},
	} {
		for i, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
			id := testutil.ID(t, phase.name, fmt.Sprint(i))
			ctr := tc.newContainer(t, id, phase.args)
			var task types.Task
			if phase.prepare {
				var err error
				if task, err = startTask(ctr); err != nil {
					t.Fatal(err)
				}
				if phase.name == "Delete" {
					tc.backend.waitEvent(t, id, types.EventExit, id)
				}
			}
			killed := make(chan struct{})
			go func() {
				defer close(killed)
				time.Sleep(delay) // a point in the middle of the call, not an ordering
				_ = d.Kill()
			}()
			err := phase.op(id, ctr, task)
			t.Logf("%s, kill after %v: %v", phase.name, delay, err)
			<-killed
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			// The engine's cleanup after a restart; its client reconnects on
			// its own schedule, so calls are retried.
			if err := retry("clean up "+id, func() error {
				if old, err := ctr.Task(tc.ctx); err == nil {
					if err := ignoreNotFound(old.ForceDelete(tc.ctx)); err != nil {
						return err
					}
				} else if !errdefs.IsNotFound(err) {
					return err
				}
				return ctr.Delete(tc.ctx)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	assertEmptyDir(t, tc.stateDir)
	settle(t, "goroutines", goroutines+3, runtime.NumGoroutine)
}
