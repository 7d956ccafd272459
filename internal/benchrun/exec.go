package benchrun

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// host is a long-running container that execs run in, one per side.
type host struct {
	libTask  types.Task
	libCtr   types.Container
	libID    string
	rawTask  containerd.Task
	rawCtr   containerd.Container
	libProc  specs.Process // spec of an exec of `true`
	rawProc  specs.Process
	rawExitC <-chan containerd.ExitStatus
	// moby's client's, started by startMobyHost
	mobyTask types.Task
	mobyCtr  types.Container
	mobyID   string
	mobyProc specs.Process
}

var sleepForever = []string{"sleep", "1000000"}

// startHosts starts a sleeping container through the library and one
// through the raw client.
func (e *env) startHosts(ctx context.Context) (*host, error) {
	h := &host{libID: e.id("exec-host")}
	spec, err := e.libSpec(h.libID, sleepForever...)
	if err != nil {
		return nil, err
	}
	if h.libCtr, err = e.libContainer(ctx, h.libID, spec); err != nil {
		return nil, err
	}
	if h.libTask, err = h.libCtr.NewTask(ctx, "", false, discardStdio); err != nil {
		return h, err
	}
	if err := h.libTask.Start(ctx); err != nil {
		return h, err
	}
	h.libProc = *spec.Process
	h.libProc.Args = []string{"true"}

	rawID := e.id("exec-host")
	rspec, err := e.rawSpec(rawID, sleepForever...)
	if err != nil {
		return h, err
	}
	if h.rawCtr, err = e.rawContainer(rawID, rspec); err != nil {
		return h, err
	}
	if h.rawTask, err = h.rawCtr.NewTask(e.rawCtx, e.rawIO); err != nil {
		return h, err
	}
	if h.rawExitC, err = h.rawTask.Wait(e.rawCtx); err != nil {
		return h, err
	}
	if err := h.rawTask.Start(e.rawCtx); err != nil {
		return h, err
	}
	h.rawProc = *rspec.Process
	h.rawProc.Args = []string{"true"}
	return h, nil
}

// startMobyHost starts a sleeping container through moby's client.
func (e *env) startMobyHost(h *host) error {
	h.mobyID = e.id("exec-host-moby")
	spec, err := e.mobySpec(h.mobyID, sleepForever...)
	if err != nil {
		return err
	}
	if h.mobyCtr, err = e.mobyContainer(h.mobyID, spec); err != nil {
		return err
	}
	if h.mobyTask, err = h.mobyCtr.NewTask(e.mobyCtx, "", false, discardStdio); err != nil {
		return err
	}
	if err := h.mobyTask.Start(e.mobyCtx); err != nil {
		return err
	}
	h.mobyProc = *spec.Process
	h.mobyProc.Args = []string{"true"}
	return nil
}

// stopClientHost kills and deletes a host container of the library or of
// moby's client.
func stopClientHost(ctx context.Context, be *backend, id string, ctr types.Container, task types.Task) error {
	var errs []error
	if task != nil {
		exitC := be.expectExit(id, id)
		if err := task.Kill(ctx, syscall.SIGKILL); err == nil {
			_, err = waitExit(ctx, exitC, id)
			errs = append(errs, err)
		}
		_, err := task.Delete(ctx)
		errs = append(errs, err)
	}
	if ctr != nil {
		errs = append(errs, ctr.Delete(ctx))
	}
	return errors.Join(errs...)
}

// stop kills and deletes the host containers.
func (h *host) stop(ctx context.Context, e *env) error {
	errs := []error{stopClientHost(ctx, e.be, h.libID, h.libCtr, h.libTask)}
	if h.mobyCtr != nil {
		errs = append(errs, stopClientHost(context.WithoutCancel(e.mobyCtx), e.mobyBe, h.mobyID, h.mobyCtr, h.mobyTask))
	}
	if h.rawTask != nil {
		if err := h.rawTask.Kill(e.rawCtx, syscall.SIGKILL); err == nil {
			<-h.rawExitC
		}
		_, err := h.rawTask.Delete(e.rawCtx)
		errs = append(errs, err)
	}
	if h.rawCtr != nil {
		errs = append(errs, h.rawCtr.Delete(e.rawCtx))
	}
	return errors.Join(errs...)
}

// execStepNames are the steps of an exec round trip, timed separately.
var execStepNames = []string{"exec (create and start)", "exit seen", "delete"}

// libExec runs `true` as an exec through the library: Exec (which starts
// it), the exit event at the Backend, Delete.
func (e *env) libExec(ctx context.Context, h *host) (exit, error) {
	ex, _, err := e.clientExec(ctx, e.be, h.libID, h.libTask, &h.libProc, e.rpcClock(armLib))
	return ex, err
}

// clientExec runs `true` as an exec of task (container hostID) through a
// types.Client's Task, the library's or moby's, with be its Backend. Its
// laps count the time in containerd requests, from rpc (the client's
// namespace's cumulative request time).
func (e *env) clientExec(ctx context.Context, be *backend, hostID string, task types.Task, proc *specs.Process, rpc func() time.Duration) (ex exit, _ laps, _ error) {
	id := e.id("x")
	var (
		p     types.Process
		exitC <-chan exit
	)
	l, err := timeSteps(rpc,
		func() (err error) {
			exitC = be.expectExit(hostID, id)
			p, err = task.Exec(ctx, id, proc, false, discardStdio)
			return err
		},
		func() (err error) { ex, err = waitExit(ctx, exitC, hostID+"/"+id); return err },
		func() error { _, err := p.Delete(ctx); return err },
	)
	return ex, l, err
}

// rawExec does the same with the containerd client: Exec with cio FIFOs,
// Wait, Start, the exit from Wait, Delete.
func (e *env) rawExec(h *host) (laps, error) {
	ctx := e.rawCtx
	id := e.id("x")
	var p containerd.Process
	var statusC <-chan containerd.ExitStatus
	return timeSteps(nil,
		func() (err error) {
			if p, err = h.rawTask.Exec(ctx, id, &h.rawProc, e.rawIO); err != nil {
				return err
			}
			if statusC, err = p.Wait(ctx); err != nil {
				return err
			}
			return p.Start(ctx)
		},
		func() error { return waitStatus(statusC, id) },
		func() error { _, err := p.Delete(ctx); return err },
	)
}

// exec runs `true` as an exec in h on arm a (armLib, armRaw, armRawAgain
// or armMoby).
func (e *env) exec(ctx context.Context, h *host, a int) (laps, error) {
	switch a {
	case armLib:
		_, l, err := e.clientExec(ctx, e.be, h.libID, h.libTask, &h.libProc, e.rpcClock(a))
		return l, err
	case armMoby:
		_, l, err := e.clientExec(e.mobyCtx, e.mobyBe, h.mobyID, h.mobyTask, &h.mobyProc, e.rpcClock(a))
		return l, err
	}
	return e.rawExec(h)
}

// withHosts starts the host containers, runs f with them and stops them,
// also after a failure.
func (e *env) withHosts(ctx context.Context, f func(context.Context, *host) error) (retErr error) {
	h, err := e.startHosts(ctx)
	defer func() {
		if h != nil {
			retErr = errors.Join(retErr, h.stop(context.WithoutCancel(ctx), e))
		}
	}()
	if err != nil {
		return err
	}
	return f(ctx, h)
}

// execPhase times exec round trips, the arms (library, raw, raw again,
// and moby's client if there is one) taking turns one exec at a time in
// rotating order.
func (e *env) execPhase(ctx context.Context) error {
	return e.withHosts(ctx, e.execRoundTrips)
}

// execRoundTrips runs the exec phase in h, starting moby's host first if
// there is moby's client.
func (e *env) execRoundTrips(ctx context.Context, h *host) error {
	if e.moby != nil {
		if err := e.startMobyHost(h); err != nil {
			return err
		}
	}
	warm, n := e.n(10, 3), e.n(200, 20)
	steps, err := e.runArms(armRuns{
		what: "exec", metric: "exec round trip of `true`", steps: execStepNames,
		warm: warm, n: n, every: 50, format: "%.2f",
		note: fmt.Sprintf("Exec: %d execs of `true` per arm (%s) in a sleeping container of each, taking turns in rotating order after %d warm-ups; the baseline pools both raw arms; "+
			"library = Task.Exec, exit event, Process.Delete; raw = Exec with cio FIFOs, Wait, Start, exit from Wait, Delete%s.", n, e.armNames(), warm, e.mobyNote()),
		run: func(a int) (laps, error) { return e.exec(ctx, h, a) },
	})
	if err != nil {
		return err
	}
	e.res.ExecSteps = append(e.res.ExecSteps, steps...)
	return nil
}
