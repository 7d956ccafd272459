package benchrun

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// stepNames are the steps of a lifecycle, timed separately.
var stepNames = []string{"create container", "create task", "start", "exit seen", "delete task", "delete container"}

type steps [6]time.Duration

func (s steps) total() time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

// libLifecycle runs /bin/true through the library: create the container
// and its task (FIFOs handed to a copy loop), start it, wait for its exit
// event at the Backend, delete the task and the container.
func (e *env) libLifecycle(ctx context.Context, id string, spec *specs.Spec) (st steps, _ error) {
	t := time.Now()
	lap := func(i int) {
		now := time.Now()
		st[i] = now.Sub(t)
		t = now
	}
	ctr, err := e.libContainer(ctx, id, spec)
	if err != nil {
		return st, err
	}
	lap(0)
	exitC := e.be.expectExit(id, id)
	task, err := ctr.NewTask(ctx, "", false, discardStdio)
	if err != nil {
		return st, err
	}
	lap(1)
	if err := task.Start(ctx); err != nil {
		return st, err
	}
	lap(2)
	if _, err := waitExit(ctx, exitC, id); err != nil {
		return st, err
	}
	lap(3)
	if _, err := task.Delete(ctx); err != nil {
		return st, err
	}
	lap(4)
	if err := ctr.Delete(ctx); err != nil {
		return st, err
	}
	lap(5)
	return st, nil
}

// rawLifecycle does the same with the containerd client: NewContainer,
// NewTask with cio FIFOs copied into nowhere, Wait, Start, the exit from
// Wait, Delete, Delete.
func (e *env) rawLifecycle(id string, spec *specs.Spec) (st steps, _ error) {
	ctx := e.rawCtx
	t := time.Now()
	lap := func(i int) {
		now := time.Now()
		st[i] = now.Sub(t)
		t = now
	}
	ctr, err := e.rawContainer(id, spec)
	if err != nil {
		return st, err
	}
	lap(0)
	task, err := ctr.NewTask(ctx, e.rawIO)
	if err != nil {
		return st, err
	}
	lap(1)
	statusC, err := task.Wait(ctx)
	if err != nil {
		return st, err
	}
	if err := task.Start(ctx); err != nil {
		return st, err
	}
	lap(2)
	select {
	case s := <-statusC:
		if s.Error() != nil {
			return st, s.Error()
		}
	case <-time.After(waitTimeout):
		return st, fmt.Errorf("no exit for %s within %v", id, waitTimeout)
	}
	lap(3)
	if _, err := task.Delete(ctx); err != nil {
		return st, err
	}
	lap(4)
	if err := ctr.Delete(ctx); err != nil {
		return st, err
	}
	lap(5)
	return st, nil
}

// lifecycle runs one lifecycle of /bin/true, library or raw, with a new
// ID; the spec is made before the clock starts.
func (e *env) lifecycle(ctx context.Context, isLib bool) (steps, error) {
	if isLib {
		id := e.id("lib")
		spec, err := e.libSpec(id, "true")
		if err != nil {
			return steps{}, err
		}
		return e.libLifecycle(ctx, id, spec)
	}
	id := e.id("raw")
	spec, err := e.rawSpec(id, "true")
	if err != nil {
		return steps{}, err
	}
	return e.rawLifecycle(id, spec)
}

// Arms of the sequential measurements: the library, the raw client, and
// the raw client again as an A/A control whose distance from the raw arm
// shows the noise a library-vs-raw ratio has to be read against.
const (
	armLib = iota
	armRaw
	armRawAgain
	arms
)

// lifecyclePhase times sequential lifecycles, the three arms taking turns
// one lifecycle at a time in rotating order (see orders).
func (e *env) lifecyclePhase(ctx context.Context) error {
	warm := e.n(6, 2)
	for i := range warm {
		for _, isLib := range []bool{abba(i), !abba(i)} {
			if _, err := e.lifecycle(ctx, isLib); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	n := e.n(120, 10)
	var totals [arms][]float64
	var perStep [arms][][]float64
	for a := range perStep {
		perStep[a] = make([][]float64, len(stepNames))
	}
	for i := range n {
		for _, a := range orders[i%len(orders)] {
			st, err := e.lifecycle(ctx, a == armLib)
			if err != nil {
				return err
			}
			totals[a] = append(totals[a], ms(st.total()))
			for j, d := range st {
				perStep[a][j] = append(perStep[a][j], ms(d))
			}
		}
		if (i+1)%20 == 0 {
			e.progress("   %d/%d: p50 library %.1f ms, raw %.1f ms, raw again %.1f ms", i+1, n,
				median(totals[armLib]), median(totals[armRaw]), median(totals[armRawAgain]))
		}
	}
	// The two raw arms are the same treatment: pooled, they make the
	// baseline with twice the samples.
	lib, raw := totals[armLib], slices.Concat(totals[armRaw], totals[armRawAgain])
	e.add(Row{Metric: "lifecycle of /bin/true, p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: "lifecycle of /bin/true, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	e.add(Row{Metric: "lifecycle A/A control: raw arm 2 vs arm 1, p50", Unit: "ms",
		Lib: median(totals[armRawAgain]), Base: median(totals[armRaw]), BaseName: "raw arm 1"})
	for j, name := range stepNames {
		e.res.Steps = append(e.res.Steps, StepRow{Step: name, Lib: median(perStep[armLib][j]),
			Base: median(slices.Concat(perStep[armRaw][j], perStep[armRawAgain][j]))})
	}
	e.note("Lifecycle: %d sequential lifecycles of `/bin/true` per arm (library, raw, raw again as A/A control) taking turns one by one in rotating order, "+
		"after %d warm-ups each; the baseline pools both raw arms; library = NewContainer, NewTask (FIFOs copied into a sink), Start, exit event at the Backend, Task.Delete, Container.Delete; "+
		"raw = NewContainer, NewTask with cio FIFOs, Wait, Start, exit from Wait, Delete, Delete.", n, warm)
	return nil
}

// parallelPhase runs lifecycles 8 at a time and reports lifecycles per
// second over all rounds of each side, alternating library and raw rounds
// (ABBA).
func (e *env) parallelPhase(ctx context.Context) error {
	const workers = 8
	perRound := e.n(48, 16)
	rounds := e.n(5, 1)
	for _, isLib := range []bool{true, false} {
		if _, err := e.parallel(ctx, isLib, workers, workers); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var lib, raw time.Duration
	for i := range rounds {
		var round [2]time.Duration
		for _, isLib := range []bool{abba(i), !abba(i)} {
			d, err := e.parallel(ctx, isLib, workers, perRound)
			if err != nil {
				return err
			}
			if isLib {
				lib += d
				round[0] = d
			} else {
				raw += d
				round[1] = d
			}
		}
		e.progress("   round %d/%d: library %.1f/s, raw %.1f/s", i+1, rounds,
			float64(perRound)/round[0].Seconds(), float64(perRound)/round[1].Seconds())
	}
	total := float64(perRound * rounds)
	e.add(Row{Metric: fmt.Sprintf("%d-way parallel lifecycles", workers), Unit: "per s",
		Lib: total / lib.Seconds(), Base: total / raw.Seconds(), BaseName: "raw client"})
	e.note("Parallel: %d workers share %d lifecycles per round, %d rounds each side (ABBA); lifecycles over the time of all rounds.", workers, perRound, rounds)
	return nil
}

// parallel runs n lifecycles on workers goroutines and returns the time
// they took.
func (e *env) parallel(ctx context.Context, isLib bool, workers, n int) (time.Duration, error) {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := e.lifecycle(ctx, isLib); err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return time.Since(start), nil
}
