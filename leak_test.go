//go:build linux

package libcontainerd

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
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
		ctr, task, out := tc.run(t, id, true, []string{"cat"})
		var execOut capture
		p, err := task.Exec(tc.ctx, "probe", &specs.Process{Args: []string{"echo", "exec"}, Cwd: "/", Env: []string{"PATH=/bin"}}, false, execOut.attach)
		if err != nil {
			t.Fatal(err)
		}
		if stdout, _ := execOut.wait(t); stdout != "exec\n" {
			t.Fatalf("exec output %q", stdout)
		}
		tc.reap(t, id, "probe", p)
		out.send(t, "in\n")
		out.closeStdin(t)
		if stdout, _ := out.wait(t); stdout != "in\n" {
			t.Fatalf("output %q", stdout)
		}
		tc.finish(t, id, ctr, task)
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
	assertEmptyDir(t, tc.stateDir)
	if m := tc.Metrics(); m.Dropped != 0 || m.QueueDepth != 0 {
		t.Fatalf("metrics %+v", m)
	}
}
