package benchrun

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// stepNames are the steps of a lifecycle, timed separately.
var stepNames = []string{"create container", "create task", "start", "exit seen", "delete task", "delete container"}

// clientLifecycle runs /bin/true through a types.Client, the library's or
// moby's: create the container (newCtr) and its task (FIFOs handed to a
// copy loop), start it, wait for its exit event at the Backend be, delete
// the task and the container. Its laps count the time in containerd
// requests, from rpc (the client's namespace's cumulative request time).
func clientLifecycle(ctx context.Context, newCtr func() (types.Container, error), be *backend, id string, rpc func() time.Duration) (laps, error) {
	var (
		ctr   types.Container
		task  types.Task
		exitC <-chan exit
	)
	return timeSteps(rpc,
		func() (err error) { ctr, err = newCtr(); return err },
		func() (err error) {
			exitC = be.expectExit(id, id)
			task, err = ctr.NewTask(ctx, "", false, discardStdio)
			return err
		},
		func() error { return task.Start(ctx) },
		func() error { _, err := waitExit(ctx, exitC, id); return err },
		func() error { _, err := task.Delete(ctx); return err },
		func() error { return ctr.Delete(ctx) },
	)
}

// rawLifecycle does the same with the containerd client: NewContainer,
// NewTask with cio FIFOs copied into nowhere, Wait, Start, the exit from
// Wait, Delete, Delete.
func (e *env) rawLifecycle(id string, spec *specs.Spec) (laps, error) {
	ctx := e.rawCtx
	var (
		ctr     containerd.Container
		task    containerd.Task
		statusC <-chan containerd.ExitStatus
	)
	return timeSteps(nil,
		func() (err error) { ctr, err = e.rawContainer(id, spec); return err },
		func() (err error) { task, err = ctr.NewTask(ctx, e.rawIO); return err },
		func() (err error) {
			if statusC, err = task.Wait(ctx); err != nil {
				return err
			}
			return task.Start(ctx)
		},
		func() error { return waitStatus(statusC, id) },
		func() error { _, err := task.Delete(ctx); return err },
		func() error { return ctr.Delete(ctx) },
	)
}

// waitStatus waits for the exit status on statusC, which the raw client's
// Wait for process what returned, and returns its error.
func waitStatus(statusC <-chan containerd.ExitStatus, what string) error {
	select {
	case s := <-statusC:
		return s.Error()
	case <-time.After(waitTimeout):
		return fmt.Errorf("no exit for %s within %v", what, waitTimeout)
	}
}

// lifecycle runs one lifecycle of /bin/true on arm a (armLib, armRaw,
// armRawAgain or armMoby) with a new ID; the spec is made before the
// clock starts.
func (e *env) lifecycle(ctx context.Context, a int) (laps, error) {
	switch a {
	case armLib:
		id := e.id("lib")
		spec, err := e.libSpec(id, "true")
		if err != nil {
			return laps{}, err
		}
		return clientLifecycle(ctx, func() (types.Container, error) { return e.libContainer(ctx, id, spec) }, e.be, id, e.rpcClock(a))
	case armMoby:
		id := e.id("moby")
		spec, err := e.mobySpec(id, "true")
		if err != nil {
			return laps{}, err
		}
		return clientLifecycle(e.mobyCtx, func() (types.Container, error) { return e.mobyContainer(id, spec) }, e.mobyBe, id, e.rpcClock(a))
	}
	id := e.id("raw")
	spec, err := e.rawSpec(id, "true")
	if err != nil {
		return laps{}, err
	}
	return e.rawLifecycle(id, spec)
}

// lifecyclePhase times sequential lifecycles, the arms taking turns one
// lifecycle at a time in rotating order (see rotation).
func (e *env) lifecyclePhase(ctx context.Context) error {
	warm, n := e.n(6, 2), e.n(120, 10)
	steps, err := e.runArms(armRuns{
		what: "lifecycle", metric: "lifecycle of /bin/true", steps: stepNames,
		warm: warm, n: n, every: 20, format: "%.1f",
		note: fmt.Sprintf("Lifecycle: %d sequential lifecycles of `/bin/true` per arm (%s) taking turns one by one in rotating order, "+
			"after %d warm-ups each; the baseline pools both raw arms; library = NewContainer, NewTask (FIFOs copied into a sink), Start, exit event at the Backend, Task.Delete, Container.Delete; "+
			"raw = NewContainer, NewTask with cio FIFOs, Wait, Start, exit from Wait, Delete, Delete%s.", n, e.armNames(), warm, e.mobyNote()),
		run: func(a int) (laps, error) { return e.lifecycle(ctx, a) },
	})
	if err != nil {
		return err
	}
	e.res.Steps = append(e.res.Steps, steps...)
	return nil
}

// parallelPhase runs lifecycles 8 at a time and reports lifecycles per
// second over all rounds of each side. The library and the raw client
// alternate rounds (ABBA); with moby's client, the three sides rotate
// through the six orders.
func (e *env) parallelPhase(ctx context.Context) error {
	const workers = 8
	perRound := e.n(48, 16)
	rounds := e.n(5, 1)
	sides := []int{armLib, armRaw}
	if e.moby != nil {
		sides = append(sides, armMoby)
	}
	order := func(i int) []int {
		if e.moby != nil {
			o := orders[i%len(orders)]
			return []int{sides[o[0]], sides[o[1]], sides[o[2]]}
		}
		if abba(i) {
			return []int{armLib, armRaw}
		}
		return []int{armRaw, armLib}
	}
	for _, a := range sides {
		if _, err := e.parallel(ctx, a, workers, workers); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var sum [allArms]time.Duration
	for i := range rounds {
		var round [allArms]time.Duration
		for _, a := range order(i) {
			d, err := e.parallel(ctx, a, workers, perRound)
			if err != nil {
				return err
			}
			sum[a] += d
			round[a] = d
		}
		line := fmt.Sprintf("   round %d/%d: library %.1f/s, raw %.1f/s", i+1, rounds,
			float64(perRound)/round[armLib].Seconds(), float64(perRound)/round[armRaw].Seconds())
		if e.moby != nil {
			line += fmt.Sprintf(", moby %.1f/s", float64(perRound)/round[armMoby].Seconds())
		}
		e.progress("%s", line)
	}
	total := float64(perRound * rounds)
	e.add(Row{Metric: fmt.Sprintf("%d-way parallel lifecycles", workers), Unit: "per s",
		Lib: total / sum[armLib].Seconds(), Base: total / sum[armRaw].Seconds(), BaseName: "raw client"})
	if e.moby != nil {
		e.add(Row{Metric: fmt.Sprintf("%d-way parallel lifecycles vs moby's client", workers), Unit: "per s",
			Lib: total / sum[armLib].Seconds(), Base: total / sum[armMoby].Seconds(), BaseName: "moby"})
		e.note("Parallel: %d workers share %d lifecycles per round, %d rounds each side (library, raw, moby's client rotating through the six orders); lifecycles over the time of all rounds.", workers, perRound, rounds)
		return nil
	}
	e.note("Parallel: %d workers share %d lifecycles per round, %d rounds each side (ABBA); lifecycles over the time of all rounds.", workers, perRound, rounds)
	return nil
}

// parallel runs n lifecycles of arm a on workers goroutines and returns
// the time they took.
func (e *env) parallel(ctx context.Context, a, workers, n int) (time.Duration, error) {
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
				if _, err := e.lifecycle(ctx, a); err != nil {
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
