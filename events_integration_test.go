package libcontainerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// exitsOf returns the exit events of container id.
func exitsOf(evs []event, id string) []event {
	var out []event
	for _, e := range evs {
		if e.Type == types.EventExit && e.Info.ContainerID == id {
			out = append(out, e)
		}
	}
	return out
}

// exitsOfPid returns the exit events of the init process pid of container
// id.
func exitsOfPid(evs []event, id string, pid uint32) []event {
	var out []event
	for _, e := range exitsOf(evs, id) {
		if e.Info.ProcessID == id && e.Info.Pid == pid {
			out = append(out, e)
		}
	}
	return out
}

// startedTask is a started task: its pid and the exit code it will have.
type startedTask struct {
	pid  uint32
	code int
}

// exited reports whether process pid has exited: it is gone or a zombie
// its parent (the shim) has not reaped yet.
func exited(pid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) == 0 || fields[0] == "Z" || fields[0] == "X"
}

// waitGone waits until process pid has exited.
func waitGone(t testing.TB, pid uint32) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !exited(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond) // polling the kernel, not ordering events
	}
}

// errGiveUp stops a retry at once.
var errGiveUp = errors.New("giving up")

// retry runs op until it succeeds, for calls made while containerd
// restarts. It may run on any goroutine.
func retry(what string, op func() error) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		err := op()
		if err == nil || errors.Is(err, errGiveUp) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(20 * time.Millisecond) // waiting for containerd to serve again
	}
}

// TestExitsWhileContainerdDown kills containerd, lets 20 containers exit
// while it is down and restarts it: every exit is delivered exactly once,
// with its status, soon after containerd serves again, and new containers
// get their events afterwards.
func TestExitsWhileContainerdDown(t *testing.T) {
	t.Parallel()
	d := testutil.NewDaemon(t)
	tc := newTestClientOn(t, d)
	const n = 20
	ids := make([]string, n)
	tasks := make([]types.Task, n)
	for i := range n {
		ids[i] = testutil.ID(t, fmt.Sprint(i))
		// The trap makes the exit status 3 when the test signals the
		// process while containerd is down.
		ctr := tc.newContainer(t, ids[i], []string{"sh", "-c", `trap "exit 3" TERM; while true; do sleep 0.05; done`})
		task, err := ctr.NewTask(tc.ctx, "", false, (&capture{}).attach)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(tc.ctx); err != nil {
			t.Fatal(err)
		}
		tasks[i] = task
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
	ctr := tc.newContainer(t, newID, []string{"true"})
	task, err := ctr.NewTask(tc.ctx, "", false, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(tc.ctx); err != nil {
		t.Fatal(err)
	}
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
	d := testutil.NewDaemon(t)
	tc := newTestClientOn(t, d, WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
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
		return retry("delete container "+id, func() error {
			err := ctr.Delete(tc.ctx)
			if errdefs.IsNotFound(err) {
				return nil
			}
			return err
		})
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
		if err := retry("delete task "+id, func() error {
			err := task.ForceDelete(tc.ctx)
			if errdefs.IsNotFound(err) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
		return deleteContainer(id, ctr)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				id := testutil.ID(t, fmt.Sprint(w), fmt.Sprint(i))
				if err := lifecycle(id, (w*perWorker+i)%100); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	for r := 0; r < restarts; r++ {
		// Restart after every third container started, so restarts hit
		// creates, starts, exits and deletes alike.
		for range totalStarts / restarts {
			select {
			case <-progress:
			case <-done:
			}
		}
		if err := d.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	<-done

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

// TestBackendRetry fails every event of one container until another
// container's whole lifecycle was delivered: the failing container's
// events then arrive complete and in order, and the other was not held up.
func TestBackendRetry(t *testing.T) {
	t.Parallel()
	d := testutil.Shared(t)
	ctx, ns := testutil.Context(t, d)
	failing, healthy := testutil.ID(t, "failing"), testutil.ID(t, "healthy")
	b := newRecordingBackend()
	healthyDone := make(chan struct{})
	var failures int
	b.fail = func(containerID string, et types.EventType, ei types.EventInfo) error {
		if containerID != failing {
			return nil
		}
		select {
		case <-healthyDone:
			return nil
		default:
			failures++ // only the failing container's worker runs this
			return errors.New("backend busy")
		}
	}
	c, err := New(ctx, d.Client(t), t.TempDir(), ns, b, WithEventRetry(100000, time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}

	run := func(id string) types.Task {
		ctr := tc.newContainer(t, id, []string{"true"})
		task, err := ctr.NewTask(ctx, "", false, (&capture{}).attach)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return task
	}
	ft := run(failing)
	ht := run(healthy)
	b.waitEvent(t, healthy, types.EventExit, healthy)
	if n := len(b.of(failing)); n != 0 {
		t.Fatalf("failing container has %d events delivered before release", n)
	}
	close(healthyDone)
	b.waitEvent(t, failing, types.EventExit, failing)
	var got []types.EventType
	for _, e := range b.of(failing) {
		got = append(got, e.Type)
	}
	if fmt.Sprint(got) != fmt.Sprint([]types.EventType{types.EventCreate, types.EventStart, types.EventExit}) {
		t.Fatalf("failing container's events %v, want create start exit", got)
	}
	if m := c.Metrics(); m.Retried == 0 || m.Dropped != 0 {
		t.Fatalf("metrics %+v: want retries and no drops", m)
	}
	for _, task := range []types.Task{ft, ht} {
		if _, err := task.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackendErrorAttempts checks how often a failing ProcessEvent is
// called: once by default, as moby does (dockerd's handler has side effects
// before it can fail), and the configured attempts with WithEventRetry;
// then the event is dropped and the container's next event goes on.
func TestBackendErrorAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		opts           []Option
		calls, retried uint64
	}{
		{"default", nil, 1, 0},
		{"WithEventRetry", []Option{WithEventRetry(3, time.Millisecond, time.Millisecond)}, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := testutil.Shared(t)
			ctx, ns := testutil.Context(t, d)
			id := testutil.ID(t)
			b := newRecordingBackend()
			var calls atomic.Uint64
			b.fail = func(_ string, et types.EventType, _ types.EventInfo) error {
				if et == types.EventCreate {
					calls.Add(1)
					return errors.New("rejected")
				}
				return nil
			}
			c, err := New(ctx, d.Client(t), t.TempDir(), ns, b, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}
			ctr := client.newContainer(t, id, []string{"true"})
			task := client.createAndStart(t, ctr, false, (&capture{}).attach)
			b.waitEvent(t, id, types.EventExit, id)
			if n := calls.Load(); n != tc.calls {
				t.Fatalf("create delivered %d times, want %d", n, tc.calls)
			}
			if m := c.Metrics(); m.Dropped != 1 || m.Retried != tc.retried {
				t.Fatalf("metrics %+v: want 1 dropped, %d retried", m, tc.retried)
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseWithQueuedEvents closes a client whose Backend is blocked with
// events queued behind it, and one whose containerd is down: Close returns
// and every goroutine the client started is gone. Not parallel: it counts
// the process's goroutines.
func TestCloseWithQueuedEvents(t *testing.T) {
	d := testutil.NewDaemon(t)
	for _, policy := range []ClosePolicy{CloseAbandon, CloseDrain} {
		t.Run(fmt.Sprint("policy", policy), func(t *testing.T) {
			ctx, ns := testutil.Context(t, d)
			cli := d.Client(t)
			// Connect first: the gRPC connection's goroutines are the
			// containerd client's, not ours.
			if _, err := cli.Version(ctx); err != nil {
				t.Fatal(err)
			}
			before := runtime.NumGoroutine()

			id := testutil.ID(t)
			b := newRecordingBackend()
			entered := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			b.fail = func(containerID string, et types.EventType, _ types.EventInfo) error {
				once.Do(func() { close(entered); <-release })
				return nil
			}
			c, err := New(ctx, cli, t.TempDir(), ns, b, WithClosePolicy(policy))
			if err != nil {
				t.Fatal(err)
			}
			tc := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}
			ctr := tc.newContainer(t, id, []string{"true"})
			task, err := ctr.NewTask(ctx, "", false, (&capture{}).attach)
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Start(ctx); err != nil {
				t.Fatal(err)
			}
			<-entered
			// Create is blocked in the Backend; wait for start and exit to
			// be queued behind it.
			deadline := time.Now().Add(waitTimeout)
			for c.Metrics().Received < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("events not received: %+v", c.Metrics())
				}
				time.Sleep(5 * time.Millisecond) // polling a counter
			}
			closed := make(chan error)
			go func() { closed <- c.Close() }()
			if policy == CloseAbandon {
				// Release the Backend only once Close abandons the queue.
				for !c.events.delivery.abandoned() {
					time.Sleep(time.Millisecond) // polling a flag
				}
			}
			close(release)
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			m := c.Metrics()
			switch policy {
			case CloseAbandon:
				if m.Dropped != 2 || len(b.of(id)) != 1 {
					t.Fatalf("abandon: metrics %+v, delivered %v", m, b.of(id))
				}
			case CloseDrain:
				if m.Dropped != 0 || len(b.of(id)) != 3 {
					t.Fatalf("drain: metrics %+v, delivered %v", m, b.of(id))
				}
			}
			if m.QueueDepth != 0 {
				t.Fatalf("queue depth %d after close", m.QueueDepth)
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ctr.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			settle(t, "goroutines", before, runtime.NumGoroutine)
		})
	}

	t.Run("containerd down", func(t *testing.T) {
		ctx, ns := testutil.Context(t, d)
		cli := d.Client(t)
		if _, err := cli.Version(ctx); err != nil {
			t.Fatal(err)
		}
		before := runtime.NumGoroutine()
		c, err := New(ctx, cli, t.TempDir(), ns, newRecordingBackend())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Version(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Kill(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
		}()
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.CloseContext(closeCtx); err != nil {
			t.Fatal(err)
		}
		settle(t, "goroutines", before, runtime.NumGoroutine)
	})
}

// shimOf reports the pid of the shim of container id in namespace ns,
// or 0.
func shimOf(ns, id string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(args[0], "containerd-shim") {
			continue
		}
		if slices.Contains(args, ns) && slices.Contains(args, id) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// TestDeletesCompletedAfterOutage has the engine clean up while containerd
// is down, as dockerd does when exits reach it during an outage: the
// deletes of an exec, a task and a container fail with Unavailable, and
// the client completes them once containerd serves again, so that no shim
// or container is left behind.
func TestDeletesCompletedAfterOutage(t *testing.T) {
	t.Parallel()
	d := testutil.NewDaemon(t)
	tc := newTestClientOn(t, d)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sleep", "3600"})
	task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
	proc, err := task.Exec(tc.ctx, "exec1", tc.processSpec(t, id, "true"), false, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, "exec1")
	if err := task.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if shimOf(tc.ns, id) == 0 {
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
	eventually(t, "the shim to exit", func() (bool, string) {
		pid := shimOf(tc.ns, id)
		return pid == 0, fmt.Sprintf("shim pid %d", pid)
	})
	if _, err := os.Lstat(filepath.Join(tc.stateDir, id)); !os.IsNotExist(err) {
		t.Fatalf("bundle after the outage: %v", err)
	}
	if n := len(exitsOf(tc.backend.all(), id)); n != 2 {
		t.Fatalf("%d exits delivered, want 2 (exec and task): %v", n, tc.backend.all())
	}
}
