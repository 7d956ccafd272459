package benchrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// recoveryContainers is how many containers exit while containerd is down.
const recoveryContainers = 20

// outcome is what one recovery round saw.
type outcome struct {
	took         time.Duration // from containerd serving again to the last exit known
	sinceRestart time.Duration // from containerd's start to the last exit known
	withError    int           // exits delivered with EventInfo.Error set (status unknown)
	codes        map[uint32]int
}

// recoveryPhase kills containerd, lets recoveryContainers containers exit
// (SIGKILL) while it is down, starts it again and measures the time from
// containerd serving again to the last of those exits reaching the Backend.
// The baseline is a raw client that, once containerd is back, asks the
// status of every task (on its existing connection) until each is stopped
// or gone. Rounds alternate (ABBA).
func (e *env) recoveryPhase(ctx context.Context) error {
	rounds := e.n(3, 1)
	var lib, raw, libRestart, rawRestart []float64
	var libOut []outcome
	for i := range rounds {
		for _, isLib := range []bool{abba(i), !abba(i)} {
			var o outcome
			var err error
			if isLib {
				o, err = e.libRecovery(ctx)
			} else {
				o, err = e.rawRecovery(ctx)
			}
			if err != nil {
				return err
			}
			if isLib {
				lib = append(lib, ms(o.took))
				libRestart = append(libRestart, ms(o.sinceRestart))
				libOut = append(libOut, o)
			} else {
				raw = append(raw, ms(o.took))
				rawRestart = append(rawRestart, ms(o.sinceRestart))
			}
		}
		e.progress("   round %d/%d: library %.0f ms, raw %.0f ms", i+1, rounds, lib[len(lib)-1], raw[len(raw)-1])
	}
	e.add(Row{Metric: fmt.Sprintf("%d missed exits: containerd serving → last delivered, worst round", recoveryContainers), Unit: "ms",
		Lib: slicesMax(lib), Base: slicesMax(raw), BaseName: "raw status poll", Target: Target{AtMost, 2000}})
	e.add(Row{Metric: fmt.Sprintf("%d missed exits: containerd started → last delivered, worst round", recoveryContainers), Unit: "ms",
		Lib: slicesMax(libRestart), Base: slicesMax(rawRestart), BaseName: "raw status poll"})
	withError, codes := 0, map[uint32]int{}
	for _, o := range libOut {
		withError += o.withError
		for c, k := range o.codes {
			codes[c] += k
		}
	}
	e.note("Recovery: %d rounds each (ABBA); per round %d sleeping containers are SIGKILLed while containerd is down (SIGKILL to the daemon); "+
		"time from containerd serving again (its health check answers) to the last missed exit at the Backend; "+
		"baseline = a raw client that polls every task's status on its existing connection every 10 ms, from before the crash on, until each is stopped or gone. "+
		"Rounds from serving: library %v ms, raw %v ms (0: all delivered before the harness's health check, polled every 20 ms with a new connection, saw containerd serving; "+
		"the second row, from the start of the containerd process, has no such blind spot but includes containerd's own start-up). Exit codes the library delivered: %v; %d of %d with EventInfo.Error set (exit status lost by containerd).",
		rounds, recoveryContainers, roundMs(lib), roundMs(raw), codes, withError, rounds*recoveryContainers)
	return nil
}

func roundMs(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}

// clocks are the moments of a restart.
type clocks struct {
	restart time.Time // containerd is started again
	serving time.Time // its health check answers (polled every 20 ms)
}

// crash kills containerd, SIGKILLs pids while it is down, starts it again
// and returns when it serves.
func (e *env) crash(pids []uint32) (clocks, error) {
	if err := e.d.Kill(); err != nil {
		return clocks{}, err
	}
	for _, pid := range pids {
		if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
			return clocks{}, fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	for _, pid := range pids {
		if err := waitGone(pid); err != nil {
			return clocks{}, err
		}
	}
	restart := time.Now()
	if err := e.d.Start(); err != nil {
		return clocks{}, err
	}
	return clocks{restart: restart, serving: time.Now()}, nil
}

// sleeper is the task of a sleeping container, the library's or the raw
// client's.
type sleeper interface {
	Start(ctx context.Context) error
	Pid() uint32
}

// startSleepers starts recoveryContainers containers sleeping forever, each
// with a new ID, its spec from spec and its task from newTask, which
// records what it made for the caller's clean-up, started with ctx. It
// returns the pids of their inits.
func (e *env) startSleepers(ctx context.Context, spec func(id string, args ...string) (*specs.Spec, error),
	newTask func(id string, spec *specs.Spec) (sleeper, error)) ([]uint32, error) {
	var pids []uint32
	for range recoveryContainers {
		id := e.id("rec")
		sp, err := spec(id, sleepForever...)
		if err != nil {
			return nil, err
		}
		task, err := newTask(id, sp)
		if err != nil {
			return nil, err
		}
		if err := task.Start(ctx); err != nil {
			return nil, err
		}
		pids = append(pids, task.Pid())
	}
	return pids, nil
}

func (e *env) libRecovery(ctx context.Context) (outcome, error) {
	o := outcome{codes: map[uint32]int{}}
	type started struct {
		ctr   types.Container
		task  types.Task
		exitC <-chan exit
	}
	var all []*started
	defer func() {
		// Containerd may have deleted the tasks already (2.x does when it
		// finds their shims' processes dead at restart).
		for _, s := range all {
			if s.task != nil {
				_ = retryUnavailable(ctx, func() error { _, err := s.task.Delete(ctx); return notFoundOK(err) })
			}
			_ = retryUnavailable(ctx, func() error { return notFoundOK(s.ctr.Delete(ctx)) })
		}
	}()
	pids, err := e.startSleepers(ctx, e.libSpec, func(id string, spec *specs.Spec) (sleeper, error) {
		s := &started{}
		if err := retryUnavailable(ctx, func() (err error) { s.ctr, err = e.libContainer(ctx, id, spec); return err }); err != nil {
			return nil, err
		}
		all = append(all, s)
		s.exitC = e.be.expectExit(id, id)
		var err error
		if s.task, err = s.ctr.NewTask(ctx, "", false, discardStdio); err != nil {
			return nil, err
		}
		return s.task, nil
	})
	if err != nil {
		return o, err
	}
	c, err := e.crash(pids)
	if err != nil {
		return o, err
	}
	var last time.Time
	for _, s := range all {
		ex, err := waitExit(ctx, s.exitC, "missed exit")
		if err != nil {
			return o, err
		}
		if ex.at.After(last) {
			last = ex.at
		}
		if ex.info.Error != nil {
			o.withError++
		}
		o.codes[ex.info.ExitCode]++
	}
	o.took, o.sinceRestart = max(0, last.Sub(c.serving)), last.Sub(c.restart)
	return o, nil
}

func (e *env) rawRecovery(ctx context.Context) (outcome, error) {
	o := outcome{codes: map[uint32]int{}}
	rctx := e.rawCtx
	type started struct {
		ctr  containerd.Container
		task containerd.Task
	}
	var all []*started
	defer func() {
		for _, s := range all {
			if s.task != nil {
				err := retryUnavailable(ctx, func() error { _, err := s.task.Delete(rctx); return err })
				if err != nil && s.task.IO() != nil {
					// Gone with its task: the copy loops end here.
					s.task.IO().Cancel()
					_ = s.task.IO().Close()
				}
			}
			_ = retryUnavailable(ctx, func() error { return notFoundOK(s.ctr.Delete(rctx)) })
		}
	}()
	pids, err := e.startSleepers(rctx, e.rawSpec, func(id string, spec *specs.Spec) (sleeper, error) {
		s := &started{}
		if err := retryUnavailable(ctx, func() (err error) { s.ctr, err = e.rawContainer(id, spec); return err }); err != nil {
			return nil, err
		}
		all = append(all, s)
		var err error
		if s.task, err = s.ctr.NewTask(rctx, e.rawIO); err != nil {
			return nil, err
		}
		return s.task, nil
	})
	if err != nil {
		return o, err
	}
	tasks := make([]containerd.Task, len(all))
	for i, s := range all {
		tasks[i] = s.task
	}
	// The poller, like an engine, is not told when containerd is back: it
	// polls from before the crash on.
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	polled := make(chan pollResult, 1)
	go func() { polled <- pollStopped(pollCtx, rctx, tasks) }()
	c, err := e.crash(pids)
	if err != nil {
		return o, err
	}
	var r pollResult
	select {
	case r = <-polled:
	case <-time.After(waitTimeout):
		return o, fmt.Errorf("raw client: tasks not stopped %v after the restart", waitTimeout)
	}
	if r.err != nil {
		return o, r.err
	}
	o.codes, o.withError = r.codes, r.gone
	o.took, o.sinceRestart = max(0, r.at.Sub(c.serving)), r.at.Sub(c.restart)
	return o, nil
}

type pollResult struct {
	at    time.Time // when the last task was found stopped or gone
	codes map[uint32]int
	gone  int
	err   error
}

// pollStopped asks the status of every task in turn, every 10 ms, until
// each is stopped or gone.
func pollStopped(ctx, rctx context.Context, pending []containerd.Task) pollResult {
	r := pollResult{codes: map[uint32]int{}}
	for len(pending) > 0 {
		var still []containerd.Task
		for _, t := range pending {
			st, err := t.Status(rctx)
			switch {
			case errdefs.IsNotFound(err):
				r.gone++
			case err == nil && st.Status == containerd.Stopped:
				r.codes[st.ExitStatus]++
			default:
				still = append(still, t)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			r.err = ctx.Err()
			return r
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.at = time.Now()
	return r
}

func notFoundOK(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// waitGone waits until process pid has exited: it is gone or a zombie its
// parent has not reaped yet.
func waitGone(pid uint32) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) == 0 || fields[0] == "Z" || fields[0] == "X" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("process still alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
