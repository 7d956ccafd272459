package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	err = tc.criuStep(t, "refused restore", id, func(ctx context.Context) error { return task.Start(ctx) })
	assertRuntimeError(t, "start from an incomplete checkpoint", err)
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
// running with its connection (one paused and one resumed event for each
// attempt), and nothing is left behind. Where CRIU does
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
	// Each refused checkpoint paused the task for the dump and resumed
	// it: a pair of events each, as moby's copy delivers, no more.
	tc.backend.waitUntil(t, "a paused and a resumed event per refused checkpoint", func(evs []event) bool {
		// Called with the Backend's lock held: count evs, not through it.
		var paused, resumed int
		for _, e := range evs {
			if e.Info.ContainerID == id {
				switch e.Type {
				case types.EventPaused:
					paused++
				case types.EventResumed:
					resumed++
				}
			}
		}
		return paused == 2 && resumed == 2
	})
	tc.removeCheckpointTask(t, ctr, task)
	tc.assertNothingLeft(t)
	if p, r := tc.countEvents(id, types.EventPaused), tc.countEvents(id, types.EventResumed); p != 2 || r != 2 {
		t.Fatalf("%d paused and %d resumed events after two refused checkpoints, want 2 each: %v", p, r, tc.backend.of(id))
	}
}
