package libcontainerd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// The tests in this file checkpoint and restore with real runc and CRIU:
// the CRIU that `criu check` passes with, first in PATH (`make tools`
// provisions one when the machine's own does not work; the harness hands
// the PATH to containerd, whose runc looks criu up in it).

// counterScript counts on stdout from a shell variable, one line every
// 50 ms, and echoes what it reads on stdin. A restored copy goes on from
// where the dump left the variable; a restart would begin at 0.
const counterScript = `i=0
while :; do echo "count $i"; i=$((i+1)); sleep 0.05; done &
while read -r line; do echo "echo $line"; done
wait`

var criuCheckOnce = sync.OnceValues(criuCheck)

// requireCRIU skips t unless `criu check` passes; when integration tests
// are required, that is a failure: CI proves checkpoints with real CRIU.
func requireCRIU(t *testing.T) {
	t.Helper()
	out, err := criuCheckOnce()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("real CRIU cannot checkpoint here (`make tools` provisions one): criu check: %v: %s", err, out)
	if os.Getenv(testutil.EnvRequireIntegration) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// counterTask is a container running counterScript, its task and output.
type counterTask struct {
	id   string
	ctr  types.Container
	task types.Task
	out  *capture
}

// startCounter creates container id running counterScript, with stdin,
// and starts its task from checkpointDir ("" for a fresh start). The task
// is killed and everything deleted when t ends, unless the test did.
func (tc *testClient) startCounter(t *testing.T, id, checkpointDir string, opts ...oci.SpecOpts) *counterTask {
	t.Helper()
	ct := &counterTask{id: id, out: &capture{}}
	ct.ctr = tc.newContainer(t, id, []string{"sh", "-c", counterScript}, opts...)
	task, err := ct.ctr.NewTask(tc.ctx, checkpointDir, true, ct.out.attach)
	if err != nil {
		_ = ct.ctr.Delete(tc.ctx)
		t.Fatalf("NewTask(%s, %q): %v", id, checkpointDir, err)
	}
	ct.task = task
	t.Cleanup(func() { tc.removeCounter(t, ct) })
	if err := task.Start(tc.ctx); err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	return ct
}

// removeCounter kills and deletes ct's task, if it still has one, and its
// container; what is gone already is fine.
func (tc *testClient) removeCounter(t testing.TB, ct *counterTask) {
	t.Helper()
	if ct.task != nil {
		tc.killAndDelete(t, ct.ctr, ct.task)
		ct.task = nil
		return
	}
	if err := ct.ctr.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("delete container %s: %v", ct.id, err)
	}
}

// stdout returns what ct printed so far.
func (ct *counterTask) stdout() string {
	ct.out.mu.Lock()
	defer ct.out.mu.Unlock()
	return ct.out.stdout.String()
}

var countLine = regexp.MustCompile(`(?m)^count (\d+)$`)

// counts returns the counter values in out, in order.
func counts(out string) []int {
	var n []int
	for _, m := range countLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n = append(n, v)
	}
	return n
}

// lastCount returns the last counter value ct printed.
func (ct *counterTask) lastCount(t testing.TB) int {
	t.Helper()
	n := counts(ct.stdout())
	if len(n) == 0 {
		t.Fatalf("%s printed no count: %q", ct.id, ct.stdout())
	}
	return n[len(n)-1]
}

// startCounting opens a test with a counter container named after it,
// once the counter has printed n values.
func startCounting(t *testing.T, n int) (*testClient, *counterTask) {
	t.Helper()
	tc := newTestClient(t)
	ct := tc.startCounter(t, testutil.ID(t), "")
	ct.waitCount(t, 0, n)
	return tc, ct
}

// waitCount waits until ct has printed at least n counter values after
// the first offset bytes of its output, and returns them.
func (ct *counterTask) waitCount(t testing.TB, offset, n int) []int {
	t.Helper()
	var got []int
	eventually(t, fmt.Sprintf("%d counter values of %s after byte %d", n, ct.id, offset), func() (bool, string) {
		out := ct.stdout()
		got = counts(out[offset:])
		return len(got) >= n, fmt.Sprintf("stdout %q", out)
	})
	return got
}

// roundTrip writes a line to ct's stdin and waits for its echo.
func (ct *counterTask) roundTrip(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(ct.out.stdin, line+"\n"); err != nil {
		t.Fatalf("write stdin of %s: %v", ct.id, err)
	}
	ct.out.waitOutput(t, "echo "+line+"\n")
}

// criuDumpLog matches where containerd's shim says CRIU's log is.
var criuDumpLog = regexp.MustCompile(`path= (\S+\.log)`)

// checkpoint checkpoints ct into dir and fails t with CRIU's log if it
// fails.
func (tc *testClient) checkpoint(t testing.TB, ct *counterTask, dir string, exit bool) {
	t.Helper()
	if err := ct.task.CreateCheckpoint(tc.ctx, dir, exit); err != nil {
		t.Fatalf("checkpoint %s (exit=%v): %v%s", ct.id, exit, err, criuLog(err))
	}
}

// checkpointImages checkpoints ct into a new directory, which it returns
// once it holds CRIU's images and containerd holds nothing of the
// checkpoint.
func (tc *testClient) checkpointImages(t testing.TB, ct *counterTask, exit bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	tc.checkpoint(t, ct, dir, exit)
	assertCRIUImages(t, dir)
	tc.assertNoCheckpointLeftovers(t)
	return dir
}

// criuLog returns the errors in the CRIU log that an error of runc
// points to, if any.
func criuLog(err error) string {
	if err == nil {
		return ""
	}
	m := criuDumpLog.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	b, rerr := os.ReadFile(m[1])
	if rerr != nil {
		return "\n" + rerr.Error()
	}
	var errs []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Error") {
			errs = append(errs, line)
		}
	}
	return "\nCRIU's errors (" + m[1] + "):\n" + strings.Join(errs, "\n")
}

// assertCRIUImages checks that dir holds what CRIU dumped, and that the
// download left nothing next to it.
func assertCRIUImages(t testing.TB, dir string) {
	t.Helper()
	for _, name := range []string{"inventory.img", "pstree.img", "descriptors.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("checkpoint dir has no %s: %v (has %v)", name, err, dirEntries(t, dir))
		}
	}
	if left := dirEntries(t, filepath.Dir(dir)); len(left) != 1 {
		t.Fatalf("next to the checkpoint dir: %v, want only %s", left, filepath.Base(dir))
	}
}

// assertRestoredEvents checks the Backend's events of a restored
// container: create and start of its init process, the start with the
// restored pid, and no exit yet.
func (tc *testClient) assertRestoredEvents(t testing.TB, ct *counterTask) {
	t.Helper()
	tc.backend.waitEvent(t, ct.id, types.EventCreate, ct.id)
	if start := tc.backend.waitEvent(t, ct.id, types.EventStart, ct.id); start.Pid != ct.task.Pid() {
		t.Fatalf("start event %+v, want pid %d", start, ct.task.Pid())
	}
	if exits := exitsOfPid(tc.backend.of(ct.id), ct.id, ct.task.Pid()); len(exits) != 0 {
		t.Fatalf("exit events of the running %s: %v", ct.id, exits)
	}
}

// stopAndCheckExit kills ct, deletes it and checks that its exit reached
// the Backend exactly once.
func (tc *testClient) stopAndCheckExit(t testing.TB, ct *counterTask) {
	t.Helper()
	pid := ct.task.Pid()
	tc.removeCounter(t, ct)
	if exits := exitsOfPid(tc.backend.of(ct.id), ct.id, pid); len(exits) != 1 {
		t.Fatalf("exit events of %s pid %d: %v, want one", ct.id, pid, exits)
	}
}

// assertNothingLeft checks that the client's state dir is empty (no
// bundle, no FIFO) and that containerd holds no checkpoint image, lease
// or content.
func (tc *testClient) assertNothingLeft(t testing.TB) {
	t.Helper()
	if left := dirEntries(t, tc.stateDir); len(left) != 0 {
		t.Errorf("left in the state dir: %v", left)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// TestCheckpointCRIU checkpoints a counter, exiting and leaving it
// running, and restores the checkpoint into a new container: the count
// goes on from the dumped value, the restored process's stdout and stdin
// work through new FIFOs, the Backend sees its create and start and, once
// it is killed, one exit; nothing is left behind.
func TestCheckpointCRIU(t *testing.T) {
	eachCheckpointMode(t, func(t *testing.T, exit bool) {
		tc, orig := startCounting(t, 5)
		orig.roundTrip(t, "before")
		before := orig.lastCount(t)

		dir := tc.checkpointImages(t, orig, exit)

		if exit {
			ev := tc.backend.waitEvent(t, orig.id, types.EventExit, orig.id)
			if ev.Pid != orig.task.Pid() {
				t.Fatalf("exit event %+v, want pid %d", ev, orig.task.Pid())
			}
			orig.out.wait(t)
			if _, err := orig.task.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			orig.task = nil
		} else {
			if st, err := orig.task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
				t.Fatalf("status after a checkpoint that leaves it running: %+v, %v", st, err)
			}
			// It goes on counting, in the same process.
			orig.waitCount(t, len(orig.stdout()), 3)
			orig.roundTrip(t, "original")
		}

		restored := tc.startCounter(t, testutil.ID(t, "restored"), dir)
		first := restored.waitCount(t, 0, 3)[0]
		if exit {
			// Everything the original printed came out before its
			// exit; the copy prints what comes next.
			if last := orig.lastCount(t); first != last+1 {
				t.Fatalf("restored counter starts at %d, want %d (the original's last was %d)", first, last+1, last)
			}
		} else if first <= before || !strings.Contains(orig.stdout(), fmt.Sprintf("count %d\n", first-1)) {
			t.Fatalf("restored counter starts at %d; the original was at %d when checkpointed and printed %q", first, before, orig.stdout())
		}
		restored.roundTrip(t, "restored")
		if strings.Contains(orig.stdout(), "echo restored") {
			t.Fatal("the original got the restored copy's stdin")
		}
		tc.assertRestoredEvents(t, restored)
		// containerd 2.x's shim has no cgroup for a restored task: a
		// classified NotFound, never an unclassified error.
		if _, err := restored.task.Stats(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
			t.Fatalf("Stats of the restored task: %v, want metrics or NotFound", err)
		}

		if exit {
			tc.removeCounter(t, orig)
		} else {
			// The copy is on its own: the original's end is not its.
			tc.stopAndCheckExit(t, orig)
			restored.roundTrip(t, "alone")
			restored.waitCount(t, len(restored.stdout()), 2)
		}
		tc.stopAndCheckExit(t, restored)
		tc.assertNothingLeft(t)
	})
}

// TestCheckpointCRIURestoreTwice restores one checkpoint directory into
// two new containers that then run side by side: both go on from the
// same count, each with its own stdio, and each exits once.
func TestCheckpointCRIURestoreTwice(t *testing.T) {
	tc, dir, last := checkpointedCounter(t)
	want := last + 1
	images := checkpointTree(t, dir)

	copies := []*counterTask{
		tc.startCounter(t, testutil.ID(t, "a"), dir),
		tc.startCounter(t, testutil.ID(t, "b"), dir),
	}
	for _, c := range copies {
		if first := c.waitCount(t, 0, 3)[0]; first != want {
			t.Fatalf("%s starts counting at %d, want %d", c.id, first, want)
		}
		tc.assertRestoredEvents(t, c)
	}
	for _, c := range copies {
		c.roundTrip(t, c.id)
	}
	for i, c := range copies {
		if other := copies[1-i]; strings.Contains(c.stdout(), "echo "+other.id) {
			t.Fatalf("%s printed the stdin of %s", c.id, other.id)
		}
	}
	sameCheckpointTree(t, "checkpoint dir after two restores", checkpointTree(t, dir), images)
	for _, c := range copies {
		tc.stopAndCheckExit(t, c)
	}
	tc.assertNothingLeft(t)
}

// TestCheckpointCRIURestoreRefused restores from a checkpoint directory
// that lost its memory pages, as an incomplete copy would: CRIU refuses
// the restore, Start fails with a class, the task stays created and is
// deleted like any other, no exit is reported for a process that never
// ran, and nothing is left behind.
func TestCheckpointCRIURestoreRefused(t *testing.T) {
	tc, dir, _ := checkpointedCounter(t)
	pages, err := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no memory pages in the checkpoint (%v): %v", err, dirEntries(t, dir))
	}
	for _, p := range pages {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}

	id := testutil.ID(t, "restored")
	ctr := tc.newContainer(t, id, []string{"sh", "-c", counterScript})
	var out capture
	task, err := ctr.NewTask(tc.ctx, dir, true, out.attach)
	if err != nil {
		t.Fatalf("NewTask from the incomplete checkpoint: %v", err)
	}
	assertRuntimeError(t, "start from an incomplete checkpoint", task.Start(tc.ctx))
	if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Created {
		t.Fatalf("status after the failed restore: %+v, %v; want created", st, err)
	}
	if _, err := task.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if exits := exitsOf(tc.backend.of(id), id); len(exits) != 0 {
		t.Fatalf("exits of a restore that never ran: %v", exits)
	}
	tc.assertNothingLeft(t)
}

// TestCheckpointCRIUPaused checkpoints a paused task. Left running, it
// stays paused and, once resumed, counts on from where it was paused;
// with exit, it exits (once, killed). A restored copy counts on from
// where it was paused too, running.
func TestCheckpointCRIUPaused(t *testing.T) {
	eachCheckpointMode(t, func(t *testing.T, exit bool) {
		tc, orig := startCounting(t, 3)
		if err := orig.task.Pause(tc.ctx); err != nil {
			t.Fatal(err)
		}
		tc.backend.waitEvent(t, orig.id, types.EventPaused, "")

		dir := tc.checkpointImages(t, orig, exit)
		if exit {
			ev := tc.backend.waitEvent(t, orig.id, types.EventExit, orig.id)
			if ev.Pid != orig.task.Pid() || ev.ExitCode != 128+uint32(syscall.SIGKILL) {
				t.Fatalf("exit event %+v, want pid %d killed", ev, orig.task.Pid())
			}
			orig.out.wait(t)
		} else if st, err := orig.task.Status(tc.ctx); err != nil || st.Status != containerd.Paused {
			t.Fatalf("status after checkpointing a paused task: %+v, %v; want paused", st, err)
		}
		// Frozen since Pause returned: its output is complete (the
		// shim, which copies it, is not frozen, and the checkpoint
		// took longer than that copy).
		paused := orig.stdout()
		last := orig.lastCount(t)

		if !exit {
			if err := orig.task.Resume(tc.ctx); err != nil {
				t.Fatal(err)
			}
			tc.backend.waitEvent(t, orig.id, types.EventResumed, "")
			if next := orig.waitCount(t, len(paused), 1)[0]; next != last+1 {
				t.Fatalf("resumed counter printed %d, want %d", next, last+1)
			}
		}

		restored := tc.startCounter(t, testutil.ID(t, "restored"), dir)
		if first := restored.waitCount(t, 0, 3)[0]; first != last+1 {
			t.Fatalf("restored counter starts at %d, want %d", first, last+1)
		}
		if st, err := restored.task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
			t.Fatalf("status of the restored copy of a paused task: %+v, %v; want running", st, err)
		}
		restored.roundTrip(t, "restored")
		tc.assertRestoredEvents(t, restored)
		tc.stopAndCheckExit(t, restored)
		tc.stopAndCheckExit(t, orig)
		tc.assertNothingLeft(t)
	})
}

// readerScript is an exec that echoes its stdin.
const readerScript = `while read -r l; do echo "exec $l"; done`

// TestCheckpointCRIUExec checkpoints a task while an exec runs in it. runc
// dumps the tree of the task's init process, which an exec is not part
// of: the checkpoint succeeds, a restored copy has the init's processes
// only, and the exec itself exits with the task (exit: once, with its
// pid) or keeps running with working stdio (leave-running).
func TestCheckpointCRIUExec(t *testing.T) {
	eachCheckpointMode(t, func(t *testing.T, exit bool) {
		tc, orig := startCounting(t, 3)
		var execOut capture
		p, err := orig.task.Exec(tc.ctx, "reader", tc.processSpec(t, orig.id, "sh", "-c", readerScript), true, execOut.attach)
		if err != nil {
			t.Fatal(err)
		}
		echo := func(line string) {
			t.Helper()
			if _, err := io.WriteString(execOut.stdin, line+"\n"); err != nil {
				t.Fatal(err)
			}
			execOut.waitOutput(t, "exec "+line+"\n")
		}
		echo("before")

		dir := tc.checkpointImages(t, orig, exit)
		if exit {
			for _, pr := range []struct {
				id  string
				pid uint32
			}{{"reader", p.Pid()}, {orig.id, orig.task.Pid()}} {
				if ev := tc.backend.waitEvent(t, orig.id, types.EventExit, pr.id); ev.Pid != pr.pid {
					t.Fatalf("exit event %+v, want pid %d", ev, pr.pid)
				}
			}
			if st, err := p.Delete(tc.ctx); err != nil || st.ExitCode() != 128+uint32(syscall.SIGKILL) {
				t.Fatalf("delete the exec: %+v, %v; want killed", st, err)
			}
			orig.out.wait(t)
			if _, err := orig.task.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			orig.task = nil
			if exits := exitsOf(tc.backend.of(orig.id), orig.id); len(exits) != 2 {
				t.Fatalf("exit events %v, want one of the exec and one of the init", exits)
			}
		} else {
			echo("after")
			orig.waitCount(t, len(orig.stdout()), 2)
		}

		restored := tc.startCounter(t, testutil.ID(t, "restored"), dir)
		restored.waitCount(t, 0, 3)
		restored.roundTrip(t, "restored")
		tc.assertRestoredEvents(t, restored)
		pids, err := restored.task.Pids(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, pi := range pids {
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pi.Pid))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if pi.Info != nil || strings.Contains(string(cmdline), readerScript) {
				t.Fatalf("the restored copy has the exec: %+v %q", pi, cmdline)
			}
		}
		tc.stopAndCheckExit(t, restored)
		if !exit {
			if err := p.Kill(tc.ctx, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			tc.backend.waitEvent(t, orig.id, types.EventExit, "reader")
			if _, err := p.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			tc.stopAndCheckExit(t, orig)
		} else {
			tc.removeCounter(t, orig)
		}
		tc.assertNothingLeft(t)
	})
}

// TestCheckpointCRIURefused checkpoints a task that CRIU cannot dump: it
// holds a TCP connection to a peer outside the container (the test), and
// CRIU does not dump established connections unless told to, which the
// library does not. The error is FailedPrecondition, the task keeps
// running with its connection, and nothing is left behind. Where CRIU does
// not work at all, every checkpoint is refused, and the test checks the
// same of a plain task.
func TestCheckpointCRIURefused(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	if _, err := criuCheckOnce(); err != nil {
		t.Logf("criu check fails here (%v): every checkpoint is refused", err)
		ctr := tc.newContainer(t, id, checkpointArgs)
		task, _ := tc.startCheckpointTask(t, ctr, "")
		tc.assertRefused(t, task, nil)
		tc.removeCheckpointTask(t, ctr, task)
		tc.assertNothingLeft(t)
		return
	}

	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// In the host's network namespace, where the listener is; nc prints
	// what it receives.
	script := fmt.Sprintf("echo started; sleep 600 | nc 127.0.0.1 %d", ln.Addr().(*net.TCPAddr).Port)
	ctr := tc.newContainer(t, id, []string{"sh", "-c", script}, oci.WithHostNamespace(specs.NetworkNamespace))
	task, out := tc.startCheckpointTask(t, ctr, "")
	if err := ln.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept the container's connection: %v", err)
	}
	defer conn.Close()
	tc.assertRefused(t, task, func(err error) {
		t.Helper()
		if log := criuLog(err); !strings.Contains(log, "Connected TCP socket") {
			t.Fatalf("CRIU refused for another reason: %v%s", err, log)
		}
		// The connection survived the attempt.
		msg := fmt.Sprintf("still connected %d\n", time.Now().UnixNano())
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		out.waitOutput(t, msg)
	})
	tc.removeCheckpointTask(t, ctr, task)
	tc.assertNothingLeft(t)
}

// assertRefused checkpoints task, into a new and into an existing empty
// directory, expecting FailedPrecondition each time, nothing left in or
// next to the directory or in containerd, and the task still running;
// then it calls check, if set, with the error.
func (tc *testClient) assertRefused(t *testing.T, task types.Task, check func(error)) {
	t.Helper()
	for _, exists := range []bool{false, true} {
		base := t.TempDir()
		dir := filepath.Join(base, "checkpoint")
		if exists {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		err := task.CreateCheckpoint(tc.ctx, dir, true)
		if wantClass(t, "refused checkpoint", err, "FailedPrecondition"); t.Failed() {
			t.Fatalf("refused checkpoint of %s%s", dir, criuLog(err))
		}
		if exists {
			if left := dirEntries(t, dir); len(left) != 0 {
				t.Fatalf("left in the checkpoint dir: %v", left)
			}
		} else if left := dirEntries(t, base); len(left) != 0 {
			t.Fatalf("left next to the checkpoint dir: %v", left)
		}
		if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
			t.Fatalf("task status after the refused checkpoint: %+v, %v; want running", st, err)
		}
		tc.assertNoCheckpointLeftovers(t)
		if check != nil {
			check(err)
		}
	}
}

// eachCheckpointMode runs test, in parallel, once with a checkpoint that
// exits the task and once with one that leaves it running.
func eachCheckpointMode(t *testing.T, test func(t *testing.T, exit bool)) {
	t.Parallel()
	requireCRIU(t)
	for _, exit := range []bool{true, false} {
		t.Run("exit="+strconv.FormatBool(exit), func(t *testing.T) {
			t.Parallel()
			test(t, exit)
		})
	}
}

// checkpointedCounter runs a counter in a parallel test of its own,
// checkpoints it with exit into a directory, and removes it once it has
// exited. It returns the test client, the checkpoint directory and the
// last count the counter printed.
func checkpointedCounter(t *testing.T) (tc *testClient, dir string, last int) {
	t.Helper()
	t.Parallel()
	requireCRIU(t)
	tc, orig := startCounting(t, 3)
	dir = filepath.Join(t.TempDir(), "checkpoint")
	tc.checkpoint(t, orig, dir, true)
	tc.backend.waitEvent(t, orig.id, types.EventExit, orig.id)
	orig.out.wait(t)
	last = orig.lastCount(t)
	tc.removeCounter(t, orig)
	return tc, dir, last
}
