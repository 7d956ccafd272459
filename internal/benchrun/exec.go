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

// stop kills and deletes both containers.
func (h *host) stop(ctx context.Context, e *env) error {
	var errs []error
	if h.libTask != nil {
		exitC := e.be.expectExit(h.libID, h.libID)
		if err := h.libTask.Kill(ctx, syscall.SIGKILL); err == nil {
			_, err = waitExit(ctx, exitC, h.libID)
			errs = append(errs, err)
		}
		_, err := h.libTask.Delete(ctx)
		errs = append(errs, err)
	}
	if h.libCtr != nil {
		errs = append(errs, h.libCtr.Delete(ctx))
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
	var st execSteps
	id := e.id("x")
	t0 := time.Now()
	exitC := e.be.expectExit(h.libID, id)
	p, err := h.libTask.Exec(ctx, id, &h.libProc, false, discardStdio)
	if err != nil {
		return exit{}, st, err
	}
	t1 := time.Now()
	ex, err := waitExit(ctx, exitC, h.libID+"/"+id)
	if err != nil {
		return exit{}, st, err
	}
	t2 := time.Now()
	if _, err := p.Delete(ctx); err != nil {
		return exit{}, st, err
	}
	st = execSteps{t1.Sub(t0), t2.Sub(t1), time.Since(t2)}
	return ex, st, nil
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

// execPhase times exec round trips, the three arms (library, raw, raw
// again) taking turns one exec at a time in rotating order.
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
	warm, n := e.n(10, 3), e.n(200, 20)
	var totals [arms][]float64
	var perStep [arms][][]float64
	for a := range perStep {
		perStep[a] = make([][]float64, len(execStepNames))
	}
	for i := range warm + n {
		for _, a := range orders[i%len(orders)] {
			var st execSteps
			var err error
			if a == armLib {
				_, st, err = e.libExec(ctx, h)
			} else {
				st, err = e.rawExec(h)
			}
			if err != nil {
				return err
			}
			if i < warm {
				continue
			}
			totals[a] = append(totals[a], ms(st.total()))
			for j, d := range st {
				perStep[a][j] = append(perStep[a][j], ms(d))
			}
		}
		if i >= warm && (i-warm+1)%50 == 0 {
			e.progress("   %d/%d: p50 library %.2f ms, raw %.2f ms, raw again %.2f ms", i-warm+1, n,
				median(totals[armLib]), median(totals[armRaw]), median(totals[armRawAgain]))
		}
	}
	for j, name := range execStepNames {
		e.res.ExecSteps = append(e.res.ExecSteps, StepRow{Step: name, Lib: median(perStep[armLib][j]),
			Base: median(slices.Concat(perStep[armRaw][j], perStep[armRawAgain][j]))})
	}
	lib, raw := totals[armLib], slices.Concat(totals[armRaw], totals[armRawAgain])
	e.add(Row{Metric: "exec round trip of `true`, p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: "exec round trip of `true`, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	e.add(Row{Metric: "exec A/A control: raw arm 2 vs arm 1, p50", Unit: "ms",
		Lib: median(totals[armRawAgain]), Base: median(totals[armRaw]), BaseName: "raw arm 1"})
	e.note("Exec: %d execs of `true` per arm (library, raw, raw again) in a sleeping container, taking turns in rotating order after %d warm-ups; the baseline pools both raw arms; "+
		"library = Task.Exec, exit event, Process.Delete; raw = Exec with cio FIFOs, Wait, Start, exit from Wait, Delete.", n, warm)
	return nil
}
