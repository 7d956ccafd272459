package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// checkpointRestore checkpoints the task with CRIU, which stops it, and
// restores it into the same container from the checkpoint directory; it
// returns the restored task and its stdout. Without a CRIU that passes
// `criu check` the step is skipped and the task goes on as it was.
func checkpointRestore(ctx context.Context, crs criuSteps, ctr types.Container, task types.Task, backend *printingBackend, out *stream) (types.Task, *stream, error) {
	con := crs.con
	con.section("checkpoint and restore with CRIU")
	criu, err := workingCRIU()
	if err != nil {
		con.info("skipped: %v", err)
		return task, out, nil
	}
	crs.version = criuVersion(criu)
	con.ok("%s (%s) passes `criu check`", criu, crs.version)
	before, err := askCount(ctx, task, out)
	if err != nil {
		return nil, nil, err
	}
	con.ok("the count is at %d", before)

	dir, err := os.MkdirTemp("", "lcd-demo-checkpoint-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	err = crs.run(ctx, "dump", func(ctx context.Context) error {
		return task.CreateCheckpoint(ctx, dir, true)
	})
	if err != nil {
		return nil, nil, err
	}
	files, size, err := dirSize(dir)
	if err != nil {
		return nil, nil, err
	}
	con.ok("checkpointed into %s: %d files, %s", dir, files, mib(uint64(size)))
	if _, err := backend.waitFor(ctx, types.EventExit, containerID); err != nil {
		return nil, nil, err
	}
	out.wait(ctx)
	st, err := task.Delete(ctx)
	if err != nil {
		return nil, nil, err
	}
	con.ok("the dump stopped the task (exit status %d), task deleted", st.ExitCode())

	restoredOut := newStream(con, "stdout")
	restoredErr := newStream(con, "stderr")
	var restored types.Task
	err = crs.run(ctx, "restore", func(ctx context.Context) error {
		var err error
		restored, err = ctr.NewTask(ctx, dir, false, func(dio *cio.DirectIO) (cio.IO, error) {
			go restoredOut.follow(dio.Stdout)
			go restoredErr.follow(dio.Stderr)
			return dio, nil
		})
		if err != nil {
			return err
		}
		return restored.Start(ctx)
	})
	if err != nil {
		return nil, nil, err
	}
	con.ok("task restored from the checkpoint, pid %d", restored.Pid())
	after, err := askCount(ctx, restored, restoredOut)
	if err != nil {
		return nil, nil, err
	}
	if after < before {
		return nil, nil, fmt.Errorf("the restored process counts from %d, below the %d it had: it restarted", after, before)
	}
	con.ok("the count went on from %d to %d: the restored process has its memory, it did not restart", before, after)
	return restored, restoredOut, nil
}

// criuTimeout bounds each CRIU step of the demo. A good dump or restore
// takes well under a second here (`make tools` self-tests its CRIU: about
// 0.1 s each), while a CRIU that hangs in its dump would stop the demo for
// good.
const criuTimeout = 20 * time.Second

// criuGrace is how long after criuTimeout a step's own context lasts: by
// then the hung step's CRIU log has been read (the shim removes it once
// runc returns, which it does when the context ends) and CRIU killed.
const criuGrace = 10 * time.Second

// criuSteps runs the CRIU steps of the demo's daemon d in namespace ns.
type criuSteps struct {
	con     *console
	d       *testutil.Daemon
	ns      string
	version string
}

// run runs step, the CRIU step what, and prints how long it took. When
// criuTimeout passes first, it reads the end of the step's CRIU log, kills
// the criu processes below the namespace's shims (found through them,
// never by name) and returns an error that names the CRIU version and
// shows that log; the demo then cleans up.
func (crs criuSteps) run(ctx context.Context, what string, step func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, criuTimeout+criuGrace)
	defer cancel()
	var diagnosis string
	hung := make(chan struct{})
	watchdog := time.AfterFunc(criuTimeout, func() {
		defer close(hung)
		diagnosis = criuLogTail(crs.d.Dir)
		diagnosis = fmt.Sprintf("killed criu pids %v; %s", crs.d.KillCRIU(crs.ns), diagnosis)
	})
	start := time.Now()
	err := step(ctx)
	took := time.Since(start).Round(time.Millisecond)
	if watchdog.Stop() {
		if err == nil {
			crs.con.ok("CRIU %s took %v", what, took)
		}
		return err
	}
	<-hung
	crs.con.info("CRIU %s did not end within %v (%s): %s", what, criuTimeout, crs.version, diagnosis)
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("CRIU %s hung (%s), killed after %v: %w", what, crs.version, criuTimeout, err)
}

// criuVersion returns what `criu --version` says.
func criuVersion(criu string) string {
	out, err := exec.Command(criu, "--version").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("criu --version: %v", err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return "CRIU " + strings.TrimSpace(strings.TrimPrefix(v, "Version:"))
}

// criuLogTail returns the last lines of the newest CRIU log (dump.log,
// restore.log) under dir, the daemon's directory, where its shims have runc
// keep them.
func criuLogTail(dir string) string {
	var newest string
	var newestTime time.Time
	_ = filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || (de.Name() != "dump.log" && de.Name() != "restore.log") {
			return nil
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = p, fi.ModTime()
		}
		return nil
	})
	if newest == "" {
		return "no CRIU log under " + dir
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "the end of " + newest + ":\n" + strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// workingCRIU returns the criu in PATH, the one the daemon's runc runs, if
// it passes `criu check`.
func workingCRIU() (string, error) {
	criu, err := exec.LookPath("criu")
	if err != nil {
		return "", fmt.Errorf("no criu in PATH (make tools provides one): %w", err)
	}
	if out, err := exec.Command(criu, "check").CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return "", fmt.Errorf("%s fails `criu check` (%v): %s", criu, err, lines[len(lines)-1])
	}
	return criu, nil
}
