//go:build linux

package libcontainerd

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestTaskTTY runs a container on a terminal, resizes it and reads the size
// back with stty; a terminal has no stderr FIFO.
func TestTaskTTY(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr, task, out := tc.run(t, id, true, []string{"sh", "-c", "read line; stty size"}, oci.WithTTY)
	if out.dio.Stderr != nil {
		t.Fatal("task on a terminal has a stderr stream")
	}
	bundle := filepath.Join(tc.stateDir, id)
	if got, want := dirEntries(t, bundle), []string{id + "-stdin", id + "-stdout"}; !slices.Equal(got, want) {
		t.Fatalf("bundle holds %v, want %v", got, want)
	}
	if err := task.Resize(tc.ctx, 132, 43); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	out.send(t, "\n")
	out.waitOutput(t, "43 132")
	if exit, _ := tc.finish(t, id, ctr, task); exit.ExitCode != 0 {
		t.Fatalf("exit event %+v, want code 0", exit)
	}
}

// TestPauseResume pauses and resumes a task and checks its status and
// events.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)

	for _, step := range []struct {
		name   string
		op     func(context.Context) error
		event  types.EventType
		status containerd.ProcessStatus
	}{
		{"pause", task.Pause, types.EventPaused, containerd.Paused},
		{"resume", task.Resume, types.EventResumed, containerd.Running},
	} {
		if err := step.op(tc.ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		tc.backend.waitEvent(t, id, step.event, "")
		st, err := task.Status(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != step.status {
			t.Fatalf("status after %s: %s, want %s", step.name, st.Status, step.status)
		}
	}
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventPaused, types.EventResumed}
	if got := eventTypes(tc.backend.of(id)); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestStats reads the metrics of a running task without the importer
// registering the metrics types.
func TestStats(t *testing.T) {
	t.Parallel()
	tc, _, task := newSleeperTest(t)
	st, err := task.Stats(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read.IsZero() {
		t.Fatal("Stats.Read is not set")
	}
	switch m := st.Metrics.(type) {
	case *v1stats.Metrics:
		if m.GetMemory().GetUsage().GetUsage() == 0 && m.GetPids().GetCurrent() == 0 {
			t.Fatalf("cgroup v1 metrics without memory usage or pids: %v", m)
		}
	case *v2stats.Metrics:
		if m.GetMemory().GetUsage() == 0 && m.GetPids().GetCurrent() == 0 {
			t.Fatalf("cgroup v2 metrics without memory usage or pids: %v", m)
		}
	default:
		t.Fatalf("metrics of type %T", st.Metrics)
	}
}

// TestPidsSummaryUpdate lists the processes of a task with an exec, and
// updates its pids limit.
func TestPidsSummaryUpdate(t *testing.T) {
	t.Parallel()
	tc, id, task := newSleeperTest(t)
	p, _ := tc.exec(t, task, "sleeper", false, "sleep", "3600")
	pids, err := task.Pids(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, pi := range pids {
		got = append(got, pi.Pid)
	}
	for _, want := range []uint32{task.Pid(), p.Pid()} {
		if !slices.Contains(got, want) {
			t.Fatalf("Pids %v lacks %d", got, want)
		}
	}
	summary, err := task.Summary(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(summary) != len(pids) {
		t.Fatalf("Summary has %d entries for %d processes", len(summary), len(pids))
	}

	if err := task.UpdateResources(tc.ctx, nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("UpdateResources(nil): %v, want InvalidArgument", err)
	}
	if err := task.UpdateResources(tc.ctx, &types.Resources{Pids: &specs.LinuxPids{Limit: ptrTo[int64](42)}}); err != nil {
		t.Fatalf("UpdateResources: %v", err)
	}
	st, err := task.Stats(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var limit uint64
	switch m := st.Metrics.(type) {
	case *v1stats.Metrics:
		limit = m.GetPids().GetLimit()
	case *v2stats.Metrics:
		limit = m.GetPids().GetLimit()
	}
	if limit != 42 {
		t.Fatalf("pids limit %d after update, want 42", limit)
	}

	if err := p.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.reap(t, id, "sleeper", p)
}

// TestExitCodes checks the exit code of the init process in the exit event
// and in Delete: normal exits and a SIGKILL.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	for _, c := range exitCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			id := testutil.ID(t)
			ctr, task, _ := tc.run(t, id, false, c.args)
			c.end(t, tc, task)
			pid := task.Pid()
			exit, st := tc.finish(t, id, ctr, task)
			c.check(t, exit, st, pid)
		})
	}
}

// TestForceDelete deletes a running task.
func TestForceDelete(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr, task, out := tc.run(t, id, true, []string{"sleep", "3600"})
	// The container of a task cannot go, nor can its FIFOs.
	fifos := snapshotDir(t, filepath.Join(tc.stateDir, id))
	if err := ctr.Delete(tc.ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Delete of a container with a task: %v, want FailedPrecondition", err)
	}
	if got := snapshotDir(t, filepath.Join(tc.stateDir, id)); !slices.Equal(got, fifos) {
		t.Fatalf("bundle changed by a failed Delete: %v, was %v", got, fifos)
	}
	if err := task.ForceDelete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	out.wait(t)
	if _, err := ctr.Task(tc.ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("Task after ForceDelete: %v, want NotFound", err)
	}
	assertEmptyDir(t, filepath.Join(tc.stateDir, id))
	// The engine deleted the task: its exit counts as consumed.
	tc.assertNoExitBefore(t, ctr, task.Pid())
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, tc.stateDir)
}

// TestEventOrderParallel starts 50 containers at once and checks that each
// one's events arrive as create, start, exit.
func TestEventOrderParallel(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	const n = 50
	type run struct {
		id   string
		spec *specs.Spec
		ctr  types.Container
		task types.Task
		out  capture
	}
	runs := make([]run, n)
	for i := range runs {
		runs[i].id = testutil.ID(t, fmt.Sprint(i))
		runs[i].spec = tc.spec(t, runs[i].id, []string{"echo", runs[i].id})
	}
	if err := inParallel(n, func(i int) (err error) {
		r := &runs[i]
		// No runtime options: the shim's defaults apply.
		if r.ctr, err = tc.NewContainer(tc.ctx, r.id, r.spec, runcShim, nil); err != nil {
			return err
		}
		if r.task, err = r.ctr.NewTask(tc.ctx, "", false, r.out.attach); err != nil {
			return err
		}
		return r.task.Start(tc.ctx)
	}); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitUntil(t, "50 exits", func(evs []event) bool {
		exits := 0
		for _, e := range evs {
			if e.Type == types.EventExit {
				exits++
			}
		}
		return exits == n
	})
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventExit}
	for i := range runs {
		r := &runs[i]
		if got := eventTypes(tc.backend.of(r.id)); !slices.Equal(got, want) {
			t.Errorf("events of %s: %v, want %v", r.id, got, want)
		}
		if stdout, _ := r.out.wait(t); stdout != r.id+"\n" {
			t.Errorf("stdout of %s: %q", r.id, stdout)
		}
	}
	if err := inParallel(n, func(i int) error {
		if _, err := runs[i].task.Delete(tc.ctx); err != nil {
			return err
		}
		return runs[i].ctr.Delete(tc.ctx)
	}); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, tc.stateDir)
}

// TestSpans checks the OpenTelemetry spans of NewTask, Start and Exec. It
// replaces the global tracer provider, so it does not run in parallel.
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})

	tc, id, task := newSleeperTest(t)
	p, out := tc.exec(t, task, "traced", false, "true")
	tc.reap(t, id, "traced", p)
	// A failed call records its error on the span.
	if _, err := task.Exec(tc.ctx, "../bad", tc.processSpec(t, id, "true"), false, out.attach); err == nil {
		t.Fatal("exec with a bad ID succeeded")
	}

	type spanKey struct {
		name   string
		failed bool
	}
	var got []spanKey
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "container.id" && a.Value.AsString() == id {
				got = append(got, spanKey{s.Name(), s.Status().Code == codes.Error})
			}
		}
	}
	for _, want := range []spanKey{
		{"libcontainerd.NewTask", false},
		{"libcontainerd.task.Start", false},
		{"libcontainerd.task.Exec", false},
		{"libcontainerd.task.Exec", true},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no span %+v among %+v", want, got)
		}
	}
}

// TestStdinClosedEarly closes stdin in the stdio callback, before the
// process exists: the close reaches the process once it does, for the init
// process and for an exec.
func TestStdinClosedEarly(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sh", "-c", "cat; echo init done"})
	var out capture
	task := tc.createAndStart(t, ctr, true, closingStdin(&out))
	if stdout, _ := out.wait(t); stdout != "init done\n" {
		t.Fatalf("init stdout %q", stdout)
	}
	if exit, _ := tc.finish(t, id, ctr, task); exit.ExitCode != 0 {
		t.Fatalf("init exit %+v", exit)
	}

	id = testutil.ID(t, "exec")
	_, task = tc.runSleeper(t, id)
	var execOut capture
	p, err := task.Exec(tc.ctx, "cat", tc.processSpec(t, id, "sh", "-c", "cat; echo exec done"), true, closingStdin(&execOut))
	if err != nil {
		t.Fatal(err)
	}
	if stdout, _ := execOut.wait(t); stdout != "exec done\n" {
		t.Fatalf("exec stdout %q", stdout)
	}
	if exit, _ := tc.reap(t, id, "cat", p); exit.ExitCode != 0 {
		t.Fatalf("exec exit %+v", exit)
	}
}

// TestLifecycleEvents runs a container that echoes its stdin and exits 3,
// and checks the output, the exit status and the events in order.
func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	tc, id := newTestClient(t), testutil.ID(t)
	ctr, task, out := tc.run(t, id, true, []string{"sh", "-c", "cat; echo err >&2; exit 3"})
	out.send(t, "hello stdin\n")
	out.closeStdin(t)
	if stdout, stderr := out.wait(t); stdout != "hello stdin\n" || stderr != "err\n" {
		t.Fatalf("stdout %q stderr %q", stdout, stderr)
	}
	pid := task.Pid()
	exit, st := tc.finish(t, id, ctr, task)
	if exit.ExitCode != 3 || exit.Pid != pid || exit.ExitedAt.IsZero() || st.ExitCode() != 3 {
		t.Fatalf("exit event %+v, Delete's exit status %d; want code 3 pid %d", exit, st.ExitCode(), pid)
	}
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventExit}
	if got := eventTypes(tc.backend.of(id)); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	assertEmptyDir(t, tc.stateDir)
}

// methodCounter counts the unary requests of a containerd client by method.
type methodCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *methodCounter) dialOpt() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c.mu.Lock()
		c.n[method]++
		c.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// during returns the requests f made, by service and method
// ("Tasks/Get").
func (c *methodCounter) during(f func()) map[string]int {
	c.mu.Lock()
	c.n = make(map[string]int)
	c.mu.Unlock()
	f()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for m, n := range c.n {
		out[m[strings.LastIndex(m, ".")+1:]] = n
	}
	return out
}

// TestDeleteAfterExitEvent deletes a task and an exec whose exit events
// the engine had: each delete is one request to containerd, without the
// status request containerd's client makes first, and the output written
// before the exit is all there. When the stream lost the exit, the delete
// asks containerd for the status first, as containerd's client does.
func TestDeleteAfterExitEvent(t *testing.T) {
	t.Parallel()
	withAndWithoutLostEvents(t, testDeleteAfterExitEvent)
}

func testDeleteAfterExitEvent(t *testing.T, exitsLost bool) {
	calls := &methodCounter{n: make(map[string]int)}
	tc := newTestClient(t, viaConnection(containerd.WithExtraDialOpts([]grpc.DialOption{calls.dialOpt()})),
		withLostStreamEvents(func(ev taskEvent) bool { return exitsLost && ev.typ == types.EventExit }))
	id := testutil.ID(t)
	wantStatus := map[string]int{}
	if exitsLost {
		wantStatus["Tasks/Get"] = 1
	}
	// Without the exit event, the test learns from containerd that the
	// process stopped.
	stopped := func(p containerd.Process) {
		t.Helper()
		if exitsLost {
			eventually(t, p.ID()+" stopped", func() (bool, string) {
				s, err := p.Status(tc.ctx)
				return err == nil && s.Status == containerd.Stopped, fmt.Sprintf("status %v, error %v", s.Status, err)
			})
		}
	}
	ctr, tk, out := tc.run(t, id, false, []string{"sh", "-c", "sleep 3600 & wait"})

	p, execOut := tc.exec(t, tk, "lines", false, "seq", "1", "20000")
	stopped(p.(*process).c8dProc)
	if !exitsLost {
		tc.backend.waitEvent(t, id, types.EventExit, "lines")
	}
	var st *containerd.ExitStatus
	got := calls.during(func() {
		var err error
		if st, err = p.Delete(tc.ctx); err != nil {
			t.Fatalf("delete exec: %v", err)
		}
	})
	if want := mergeCounts(wantStatus, map[string]int{"Tasks/DeleteProcess": 1}); !maps.Equal(got, want) {
		t.Errorf("delete of the exec made requests %v, want %v", got, want)
	}
	if st.ExitCode() != 0 || st.ExitTime().IsZero() {
		t.Errorf("exit status of the exec: code %d at %v", st.ExitCode(), st.ExitTime())
	}
	if stdout, _ := execOut.wait(t); len(stdout) != 108894 || !strings.HasSuffix(stdout, "\n20000\n") {
		t.Errorf("exec output: %d bytes ending %q", len(stdout), stdout[max(0, len(stdout)-10):])
	}

	if err := tk.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stopped(tk.(*task).c8dTask)
	if !exitsLost {
		tc.backend.waitEvent(t, id, types.EventExit, id)
	}
	got = calls.during(func() {
		var err error
		if st, err = tk.Delete(tc.ctx); err != nil {
			t.Fatalf("delete task: %v", err)
		}
	})
	if want := mergeCounts(wantStatus, map[string]int{"Tasks/Delete": 1}); !maps.Equal(got, want) {
		t.Errorf("delete of the task made requests %v, want %v", got, want)
	}
	if st.ExitCode() != 137 {
		t.Errorf("exit status of the task: %d, want 137", st.ExitCode())
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	out.wait(t)
	if n := len(exitsOf(tc.backend.all(), id)); exitsLost && n != 0 {
		t.Errorf("%d exit events after the engine's deletes, want none", n)
	}
}

// mergeCounts returns the sum of the counts a and b.
func mergeCounts(a, b map[string]int) map[string]int {
	out := maps.Clone(a)
	for k, n := range b {
		out[k] += n
	}
	return out
}
