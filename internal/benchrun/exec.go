package benchrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// execSteps are the steps of an exec round trip, timed separately.
var execStepNames = []string{"exec (create and start)", "exit seen", "delete"}

type execSteps [3]time.Duration

func (s execSteps) total() time.Duration { return s[0] + s[1] + s[2] }

// libExec runs `true` as an exec through the library: Exec (which starts
// it), the exit event at the Backend, Delete.
func (e *env) libExec(ctx context.Context, h *host) (exit, execSteps, error) {
	ex, st, _, err := e.clientExec(ctx, e.be, h.libID, h.libTask, &h.libProc, e.rpcClock(armLib))
	return ex, st, err
}

// clientExec runs `true` as an exec of task (container hostID) through a
// types.Client's Task, the library's or moby's, with be its Backend. Besides
// each step's time it returns each step's time in containerd requests, from
// rpc (the client's namespace's cumulative request time).
func (e *env) clientExec(ctx context.Context, be *backend, hostID string, task types.Task, proc *specs.Process, rpc func() time.Duration) (_ exit, st, rs execSteps, _ error) {
	id := e.id("x")
	t0, r0 := time.Now(), rpc()
	exitC := be.expectExit(hostID, id)
	p, err := task.Exec(ctx, id, proc, false, discardStdio)
	if err != nil {
		return exit{}, st, rs, err
	}
	t1, r1 := time.Now(), rpc()
	ex, err := waitExit(ctx, exitC, hostID+"/"+id)
	if err != nil {
		return exit{}, st, rs, err
	}
	t2, r2 := time.Now(), rpc()
	if _, err := p.Delete(ctx); err != nil {
		return exit{}, st, rs, err
	}
	st = execSteps{t1.Sub(t0), t2.Sub(t1), time.Since(t2)}
	rs = execSteps{r1 - r0, r2 - r1, rpc() - r2}
	return ex, st, rs, nil
}

// rawExec does the same with the containerd client: Exec with cio FIFOs,
// Wait, Start, the exit from Wait, Delete.
func (e *env) rawExec(h *host) (execSteps, error) {
	var st execSteps
	ctx := e.rawCtx
	id := e.id("x")
	t0 := time.Now()
	p, err := h.rawTask.Exec(ctx, id, &h.rawProc, e.rawIO)
	if err != nil {
		return st, err
	}
	statusC, err := p.Wait(ctx)
	if err != nil {
		return st, err
	}
	if err := p.Start(ctx); err != nil {
		return st, err
	}
	t1 := time.Now()
	select {
	case s := <-statusC:
		if s.Error() != nil {
			return st, s.Error()
		}
	case <-time.After(waitTimeout):
		return st, fmt.Errorf("no exit for exec %s within %v", id, waitTimeout)
	}
	t2 := time.Now()
	if _, err := p.Delete(ctx); err != nil {
		return st, err
	}
	st = execSteps{t1.Sub(t0), t2.Sub(t1), time.Since(t2)}
	return st, nil
}

// execPhase times exec round trips, the arms (library, raw, raw again,
// and moby's client if there is one) taking turns one exec at a time in
// rotating order.
func (e *env) execPhase(ctx context.Context) (retErr error) {
	h, err := e.startHosts(ctx)
	defer func() {
		if h != nil {
			retErr = errors.Join(retErr, h.stop(context.WithoutCancel(ctx), e))
		}
	}()
	if err != nil {
		return err
	}
	if e.moby != nil {
		if err := e.startMobyHost(h); err != nil {
			return err
		}
	}
	rot := e.rotation()
	warm, n := e.n(10, 3), e.n(200, 20)
	var before [allArms]map[string]int
	var totals [allArms][]float64
	var cpu [allArms]cpuUse
	var outside [allArms][]float64
	var perStep, perStepOutside [allArms][][]float64
	for a := range perStep {
		perStep[a] = make([][]float64, len(execStepNames))
		perStepOutside[a] = make([][]float64, len(execStepNames))
	}
	for i := range warm + n {
		if i == warm {
			before = e.callSnapshots()
		}
		for _, a := range rot[i%len(rot)] {
			var st, rs execSteps
			var err error
			c0 := cpuTime()
			switch a {
			case armLib:
				_, st, rs, err = e.clientExec(ctx, e.be, h.libID, h.libTask, &h.libProc, e.rpcClock(a))
			case armMoby:
				_, st, rs, err = e.clientExec(e.mobyCtx, e.mobyBe, h.mobyID, h.mobyTask, &h.mobyProc, e.rpcClock(a))
			default:
				st, err = e.rawExec(h)
			}
			if err != nil {
				return err
			}
			if i < warm {
				continue
			}
			cpu[a] = cpu[a].add(cpuTime().sub(c0))
			outside[a] = append(outside[a], ms(st.total()-rs.total()))
			totals[a] = append(totals[a], ms(st.total()))
			for j, d := range st {
				perStep[a][j] = append(perStep[a][j], ms(d))
				perStepOutside[a][j] = append(perStepOutside[a][j], ms(d-rs[j]))
			}
		}
		if i >= warm && (i-warm+1)%50 == 0 {
			e.progress("   %d/%d: %s", i-warm+1, n, e.armCounts(&totals, "%.2f"))
		}
	}
	for j, name := range execStepNames {
		e.res.ExecSteps = append(e.res.ExecSteps, e.stepRow(name, &perStep, j))
	}
	lib, raw := totals[armLib], slices.Concat(totals[armRaw], totals[armRawAgain])
	e.add(Row{Metric: "exec round trip of `true`, p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: "exec round trip of `true`, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	if e.moby != nil {
		moby := totals[armMoby]
		e.add(Row{Metric: "exec round trip of `true` vs moby's client, p50", Unit: "ms", Lib: median(lib), Base: median(moby), BaseName: "moby",
			Target: Target{RatioAtMost, 1.00}})
		e.add(Row{Metric: "exec round trip of `true` vs moby's client, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(moby, 90), BaseName: "moby"})
	}
	e.add(Row{Metric: "exec A/A control: raw arm 2 vs arm 1, p50", Unit: "ms",
		Lib: median(totals[armRawAgain]), Base: median(totals[armRaw]), BaseName: "raw arm 1"})
	e.addPaired("exec", &totals)
	calls := e.addCalls("exec", before, n)
	cpuLine := e.addCPU("exec", &cpu, n)
	outsideLine := e.addOutside("exec", &outside, &perStepOutside, execStepNames)
	e.note("Exec: %d execs of `true` per arm (%s) in a sleeping container of each, taking turns in rotating order after %d warm-ups; the baseline pools both raw arms; "+
		"library = Task.Exec, exit event, Process.Delete; raw = Exec with cio FIFOs, Wait, Start, exit from Wait, Delete%s.", n, e.armNames(), warm, e.mobyNote())
	e.note("%s", calls)
	e.note("%s", cpuLine)
	if outsideLine != "" {
		e.note("%s", outsideLine)
	}
	return nil
}
