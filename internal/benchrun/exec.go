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

// libExec runs `true` as an exec through the library: Exec (which starts
// it), the exit event at the Backend, Delete.
func (e *env) libExec(ctx context.Context, h *host) (exit, time.Duration, error) {
	id := e.id("x")
	start := time.Now()
	exitC := e.be.expectExit(h.libID, id)
	p, err := h.libTask.Exec(ctx, id, &h.libProc, false, discardStdio)
	if err != nil {
		return exit{}, 0, err
	}
	ex, err := waitExit(ctx, exitC, h.libID+"/"+id)
	if err != nil {
		return exit{}, 0, err
	}
	if _, err := p.Delete(ctx); err != nil {
		return exit{}, 0, err
	}
	return ex, time.Since(start), nil
}

// rawExec does the same with the containerd client: Exec with cio FIFOs,
// Wait, Start, the exit from Wait, Delete.
func (e *env) rawExec(h *host) (time.Duration, error) {
	ctx := e.rawCtx
	id := e.id("x")
	start := time.Now()
	p, err := h.rawTask.Exec(ctx, id, &h.rawProc, e.rawIO)
	if err != nil {
		return 0, err
	}
	statusC, err := p.Wait(ctx)
	if err != nil {
		return 0, err
	}
	if err := p.Start(ctx); err != nil {
		return 0, err
	}
	select {
	case s := <-statusC:
		if s.Error() != nil {
			return 0, s.Error()
		}
	case <-time.After(waitTimeout):
		return 0, fmt.Errorf("no exit for exec %s within %v", id, waitTimeout)
	}
	if _, err := p.Delete(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// execPhase times exec round trips, alternating library and raw one by one
// (ABBA).
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
	var lib, raw []float64
	for i := range warm + n {
		for _, isLib := range []bool{abba(i), !abba(i)} {
			var d time.Duration
			var err error
			if isLib {
				_, d, err = e.libExec(ctx, h)
			} else {
				d, err = e.rawExec(h)
			}
			if err != nil {
				return err
			}
			if i < warm {
				continue
			}
			if isLib {
				lib = append(lib, ms(d))
			} else {
				raw = append(raw, ms(d))
			}
		}
		if i >= warm && (i-warm+1)%50 == 0 {
			e.progress("   %d/%d: p50 library %.2f ms, raw %.2f ms", i-warm+1, n, median(lib), median(raw))
		}
	}
	e.add(Row{Metric: "exec round trip of `true`, p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: "exec round trip of `true`, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	e.note("Exec: %d execs of `true` each in a sleeping container, alternating (ABBA) after %d warm-ups; library = Task.Exec, exit event, Process.Delete; "+
		"raw = Exec with cio FIFOs, Wait, Start, exit from Wait, Delete.", n, warm)
	return nil
}
