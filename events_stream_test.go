//go:build linux

package libcontainerd

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// startedTask is a started task: its pid and the exit code it will have.
type startedTask struct {
	pid  uint32
	code int
}

// TestExitsWhileContainerdDown kills containerd, lets 20 containers exit
// while it is down and restarts it: every exit is delivered exactly once,
// with its status, soon after containerd serves again, and new containers
// get their events afterwards.
func TestExitsWhileContainerdDown(t *testing.T) {
	t.Parallel()
	tc, _ := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	const n = 20
	ids := make([]string, n)
	tasks := make([]types.Task, n)
	for i := range n {
		ids[i] = testutil.ID(t, fmt.Sprint(i))
		// The trap makes the exit status 3 when the test signals the
		// process while containerd is down. The shell is its pid
		// namespace's init, which a signal it has no handler for does
		// not reach: the test signals only once the trap is set.
		var out *engineIO
		_, tasks[i], out = tc.run(t, ids[i], false, []string{"sh", "-c", `trap "exit 3" TERM; echo trapped; while true; do sleep 0.05; done`})
		out.waitOutput(t, "trapped\n")
		tc.backend.waitEvent(t, ids[i], types.EventStart, ids[i])
	}

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if err := syscall.Kill(int(task.Pid()), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, task := range tasks {
		waitGone(t, task.Pid())
	}
	if n := len(exitsOf(tc.backend.all(), ids[0])); n != 0 {
		t.Fatalf("exit delivered while containerd was down: %d", n)
	}
	// Measured from the restart, so it includes containerd's own start.
	restarted := time.Now()
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	serving := time.Now()
	t.Logf("containerd serves again %v after the restart", serving.Sub(restarted))
	tc.backend.waitUntil(t, "20 exits", func(evs []event) bool {
		for _, id := range ids {
			if len(exitsOf(evs, id)) == 0 {
				return false
			}
		}
		return true
	})
	recovery := time.Since(serving)
	t.Logf("last missed exit delivered at most %v after containerd served again (%v after the restart)", recovery, time.Since(restarted))
	if recovery > 2*time.Second {
		t.Errorf("missed exits took %v to arrive, want <= 2s", recovery)
	}

	// Settle: a new container's full lifecycle is delivered after the
	// reconnect; any duplicate exit of the old ones would be queued before
	// its exit.
	newID := testutil.ID(t, "after")
	_, task, _ := tc.run(t, newID, false, []string{"true"})
	tc.backend.waitEvent(t, newID, types.EventExit, newID)
	evs := tc.backend.all()
	for i, id := range ids {
		exits := exitsOf(evs, id)
		if len(exits) != 1 {
			t.Errorf("%s: %d exits, want 1: %v", id, len(exits), exits)
			continue
		}
		e := exits[0].Info
		if e.Pid != tasks[i].Pid() || e.ExitedAt.IsZero() {
			t.Errorf("%s: exit %+v, want pid %d and a time", id, e, tasks[i].Pid())
		}
		switch {
		case e.Error == nil && e.ExitCode == 3:
		case e.Error != nil && d.Flavor == testutil.FlavorV2:
			// containerd 2.4 deletes, on restart, a task whose process
			// exited while it was down ("cleaning leaked shim process"),
			// and the exit status with it: the exit is still delivered,
			// once, flagged as of unknown status.
			if e.ExitCode != 255 || !errdefs.IsNotFound(e.Error) {
				t.Errorf("%s: exit of unknown status %+v, want code 255 and a NotFound error", id, e)
			}
		default:
			t.Errorf("%s: exit %+v, want code 3", id, e)
		}
	}
	if m := tc.Metrics(); m.Reconnects < 1 || m.Synthesized < 1 {
		t.Errorf("metrics %+v: want a reconnect and synthesized exits", m)
	}
	for i, task := range tasks {
		if _, err := task.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("delete task %s: %v", ids[i], err)
		}
	}
	if _, err := task.Delete(tc.ctx); err != nil {
		t.Error(err)
	}
}

// TestExitsAcrossRepeatedRestarts restarts containerd 10 times while
// containers start and exit continuously: every started container's exit is
// delivered exactly once.
func TestExitsAcrossRepeatedRestarts(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t, onOwnDaemon(), withClientOptions(WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond)))
	const (
		workers     = 3
		perWorker   = 10
		restarts    = 10
		totalStarts = workers * perWorker
	)

	var (
		mu sync.Mutex
		// container -> the started incarnation and its expected exit code;
		// an incarnation created by a create that a restart interrupted may
		// exit too (containerd reports the kill of a created task).
		started = map[string]startedTask{}
		done    = make(chan struct{})
	)
	progress := make(chan struct{}, totalStarts)
	deleteContainer := func(id string, ctr types.Container) error {
		return retry("delete container "+id, func() error { return ignoreNotFound(ctr.Delete(tc.ctx)) })
	}
	// lifecycle runs one container the way an engine does: create, start,
	// wait for the exit event, delete. Calls that fail while containerd
	// restarts are retried.
	lifecycle := func(id string, code int) error {
		spec := tc.spec(t, id, []string{"sh", "-c", fmt.Sprintf("exit %d", code)})
		var ctr types.Container
		if err := retry("create "+id, func() error {
			var err error
			ctr, err = ReplaceContainer(tc.ctx, tc, id, spec, runcShim, nil)
			return err
		}); err != nil {
			return err
		}
		created := time.Now()
		var task types.Task
		if err := retry("new task "+id, func() error {
			if time.Since(created) > 5*time.Second {
				// containerd 1.6 killed in the middle of a task create
				// leaves the shim's state directory behind and refuses
				// every new task of that ID until it restarts again.
				return errGiveUp
			}
			if old, err := ctr.Task(tc.ctx); err == nil {
				if err := old.ForceDelete(tc.ctx); err != nil {
					t.Logf("force delete stale task %s: %v", id, err)
				}
			}
			var err error
			task, err = ctr.NewTask(tc.ctx, "", false, (&capture{}).attach)
			return err
		}); errors.Is(err, errGiveUp) {
			t.Logf("giving up on %s: no task could be created", id)
			return deleteContainer(id, ctr)
		} else if err != nil {
			return err
		}
		err := task.Start(tc.ctx)
		progress <- struct{}{}
		if err == nil {
			mu.Lock()
			started[id] = startedTask{pid: task.Pid(), code: code}
			mu.Unlock()
			if !tc.backend.waitFor(waitTimeout, func(evs []event) bool { return len(exitsOfPid(evs, id, task.Pid())) > 0 }) {
				return fmt.Errorf("no exit event for %s", id)
			}
		} else {
			t.Logf("start %s during restart: %v", id, err)
		}
		if err := retry("delete task "+id, func() error { return ignoreNotFound(task.ForceDelete(tc.ctx)) }); err != nil {
			return err
		}
		return deleteContainer(id, ctr)
	}
	var workErr error
	go func() {
		defer close(done)
		workErr = inParallel(workers, func(w int) error {
			for i := range perWorker {
				if err := lifecycle(testutil.ID(t, fmt.Sprint(w), fmt.Sprint(i)), (w*perWorker+i)%100); err != nil {
					return err
				}
			}
			return nil
		})
	}()

	for r := 0; r < restarts; r++ {
		// Restart after every third container started, so restarts hit
		// creates, starts, exits and deletes alike.
		for range totalStarts / restarts {
			select {
			case <-progress:
			case <-done:
			}
		}
		if err := tc.daemon.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if workErr != nil {
		t.Error(workErr)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(started) < totalStarts/2 {
		t.Fatalf("only %d of %d containers started", len(started), totalStarts)
	}
	var missing []string
	tc.backend.waitUntil(t, "an exit for every started container", func(evs []event) bool {
		missing = missing[:0]
		for id, inc := range started {
			if len(exitsOfPid(evs, id, inc.pid)) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			t.Logf("no exit yet for %v", missing)
		}
		return len(missing) == 0
	})
	evs := tc.backend.all()
	for id, inc := range started {
		exits := exitsOfPid(evs, id, inc.pid)
		if len(exits) != 1 {
			t.Errorf("%s: %d exits of pid %d, want 1: %v", id, len(exits), inc.pid, exitsOf(evs, id))
		} else if exits[0].Info.ExitCode != uint32(inc.code) && exits[0].Info.Error == nil {
			t.Errorf("%s: exit code %d, want %d", id, exits[0].Info.ExitCode, inc.code)
		}
	}
	// Containers whose start raced a restart may have exited or not, but
	// never twice.
	counts := map[string]int{}
	for _, e := range evs {
		if e.Type == types.EventExit {
			counts[e.Info.ContainerID+"/"+e.Info.ProcessID+"/"+fmt.Sprint(e.Info.Pid)]++
		}
	}
	for k, n := range counts {
		if n > 1 {
			t.Errorf("exit of %s delivered %d times", k, n)
		}
	}
	t.Logf("metrics: %+v", tc.Metrics())
}

// TestExecExitBeforeInitAfterOutage kills containerd, then a container's
// init process and with it an exec, and restarts containerd: the exec's
// exit reaches the engine before the init's, as containerd's shim orders
// them, whether the exits come from the shim or from reconciliation.
// dockerd cleans a container's execs up at its exit: an exec exit after
// it would lose its status.
func TestExecExitBeforeInitAfterOutage(t *testing.T) {
	t.Parallel()
	tc, base := newTestClient(t, onOwnDaemon()), testutil.ID(t)
	d := tc.daemon
	for i := range 20 {
		id := fmt.Sprintf("%s-%d", base, i)
		ctr, task := tc.runSleeper(t, id)
		p, _ := tc.exec(t, task, "probe", false, "sleep", "3600")
		tc.backend.waitEvent(t, id, types.EventExecStarted, "probe")
		if err := d.Kill(); err != nil {
			t.Fatal(err)
		}
		// The init first: the kernel then kills the exec, in its pid
		// namespace.
		for _, pid := range []uint32{task.Pid(), p.Pid()} {
			if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Fatal(err)
			}
		}
		waitGone(t, task.Pid())
		waitGone(t, p.Pid())
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitExit(t, id, task.Pid())
		var order []string
		for _, e := range exitsOf(tc.backend.of(id), id) {
			order = append(order, e.Info.ProcessID)
		}
		if len(order) != 2 || order[0] != "probe" {
			t.Fatalf("round %d: exits of %v, want the exec's then the init's, once each", i, order)
		}
		if err := retry("delete the exec", func() error {
			_, err := p.Delete(tc.ctx)
			if errdefs.IsNotFound(err) {
				return nil
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		tc.killAndDelete(t, ctr, task)
	}
}

// TestExitsWaitForTheEngineConnection restarts containerd under an engine
// whose own connection reconnects slowly (gRPC's backoff), while a
// container exits: the exit reaches the engine once its connection serves,
// so the Delete its exit handler makes (as dockerd's does, before a
// restart policy starts the container again) succeeds. The client's own
// event connection comes back first; delivering at once would have that
// Delete fail with Unavailable.
func TestExitsWaitForTheEngineConnection(t *testing.T) {
	t.Parallel()
	slow := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 3 * time.Second, Multiplier: 1.6, MaxDelay: 20 * time.Second},
		MinConnectTimeout: 20 * time.Second,
	})
	b := newRecordingBackend()
	var (
		mu      sync.Mutex
		tasks   = map[string]types.Task{}
		deleted = map[string]error{}
	)
	tc := newTestClient(t, onOwnDaemon(), withBackend(b), viaConnection(containerd.WithExtraDialOpts([]grpc.DialOption{slow})))
	b.fail = func(id string, et types.EventType, ei types.EventInfo) error {
		mu.Lock()
		task := tasks[id]
		mu.Unlock()
		if et != types.EventExit || ei.ProcessID != id || task == nil {
			return nil
		}
		_, err := task.Delete(tc.ctx)
		mu.Lock()
		deleted[id] = err
		mu.Unlock()
		return nil
	}
	d := tc.daemon
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sh", "-c", `trap "exit 3" TERM; echo trapped; while :; do sleep 0.05; done`})
	out := &capture{}
	task := tc.createAndStart(t, ctr, false, out.attach)
	out.waitOutput(t, "trapped")
	mu.Lock()
	tasks[id] = task
	mu.Unlock()
	whileDown(t, d, func() {
		// The engine's connection notices the outage and backs off.
		if _, err := tc.c8dClient.Version(tc.ctx); err == nil {
			t.Fatal("containerd answered while killed")
		}
		if err := syscall.Kill(int(task.Pid()), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitGone(t, task.Pid())
	})
	tc.backend.waitExit(t, id, task.Pid())
	mu.Lock()
	err := deleted[id]
	mu.Unlock()
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("the engine's Delete in its exit handler: %v, want success (or NotFound: containerd 2.4 removed the task)", err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
}
