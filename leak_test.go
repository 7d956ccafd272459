package libcontainerd

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// leakCycles is the number of full lifecycles TestNoLeaks runs.
const leakCycles = 500

// TestNoLeaks runs full lifecycles (container, task with stdin, start,
// exec, exit, delete) and checks that goroutines and file descriptors come
// back to their level before, and that nothing is left under the state
// directory. Not parallel: it counts the process's goroutines and fds.
func TestNoLeaks(t *testing.T) {
	tc := newTestClient(t)
	cycle := func(name string) {
		id := testutil.ID(t, name)
		ctr := tc.newContainer(t, id, []string{"cat"})
		var out capture
		task := tc.createAndStart(t, ctr, true, out.attach)
		var execOut capture
		p, err := task.Exec(tc.ctx, "probe", &specs.Process{Args: []string{"echo", "exec"}, Cwd: "/", Env: []string{"PATH=/bin"}}, false, execOut.attach)
		if err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, "probe")
		if stdout, _ := execOut.wait(t); stdout != "exec\n" {
			t.Fatalf("exec output %q", stdout)
		}
		if _, err := p.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := out.stdin.Write([]byte("in\n")); err != nil {
			t.Fatal(err)
		}
		if err := out.stdin.Close(); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, id, types.EventExit, id)
		if stdout, _ := out.wait(t); stdout != "in\n" {
			t.Fatalf("output %q", stdout)
		}
		if _, err := task.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(tc.ctx); err != nil {
			t.Fatal(err)
		}
	}

	// One cycle first, so that what is started once per process or client
	// (gRPC connections, tracer) is in the baseline.
	cycle("warmup")
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	start := time.Now()
	for i := range leakCycles {
		cycle(fmt.Sprint(i))
	}
	t.Logf("%d lifecycles in %v", leakCycles, time.Since(start).Round(time.Millisecond))

	const tolerance = 3
	settle(t, "goroutines", goroutines+tolerance, runtime.NumGoroutine)
	settle(t, "open fds", fds+tolerance, func() int { return openFDs(t) })
	left, err := filepath.Glob(filepath.Join(tc.stateDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("left under the state dir: %v", left)
	}
	if m := tc.Metrics(); m.Dropped != 0 || m.QueueDepth != 0 {
		t.Fatalf("metrics %+v", m)
	}
}
