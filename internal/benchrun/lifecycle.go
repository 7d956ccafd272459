package benchrun

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
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

// clientLifecycle runs /bin/true through a types.Client, the library's or
// moby's: create the container (newCtr) and its task (FIFOs handed to a
// copy loop), start it, wait for its exit event at the Backend be, delete
// the task and the container. Besides each step's time it returns the
// time of each step spent in containerd requests, from rpc (the client's
// namespace's cumulative request time).
func clientLifecycle(ctx context.Context, newCtr func() (types.Container, error), be *backend, id string, rpc func() time.Duration) (st, rs steps, _ error) {
	t, r := time.Now(), rpc()
	lap := func(i int) {
		now, nr := time.Now(), rpc()
		st[i], rs[i] = now.Sub(t), nr-r
		t, r = now, nr
	}
	ctr, err := newCtr()
	if err != nil {
		return st, rs, err
	}
	lap(0)
	exitC := be.expectExit(id, id)
	task, err := ctr.NewTask(ctx, "", false, discardStdio)
	if err != nil {
		return st, rs, err
	}
	lap(1)
	if err := task.Start(ctx); err != nil {
		return st, rs, err
	}
	lap(2)
	if _, err := waitExit(ctx, exitC, id); err != nil {
		return st, rs, err
	}
	lap(3)
	if _, err := task.Delete(ctx); err != nil {
		return st, rs, err
	}
	lap(4)
	if err := ctr.Delete(ctx); err != nil {
		return st, rs, err
	}
	lap(5)
	return st, rs, nil
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

// lifecycle runs one lifecycle of /bin/true on arm a (armLib, armRaw,
// armRawAgain or armMoby) with a new ID; the spec is made before the
// clock starts. It returns each step's time and, for the library and
// moby's client, each step's time in containerd requests (zero for the
// raw arms, whose Wait request runs alongside the others).
func (e *env) lifecycle(ctx context.Context, a int) (st, rs steps, _ error) {
	switch a {
	case armLib:
		id := e.id("lib")
		spec, err := e.libSpec(id, "true")
		if err != nil {
			return st, rs, err
		}
		return clientLifecycle(ctx, func() (types.Container, error) { return e.libContainer(ctx, id, spec) }, e.be, id, e.rpcClock(a))
	case armMoby:
		id := e.id("moby")
		spec, err := e.mobySpec(id, "true")
		if err != nil {
			return st, rs, err
		}
		return clientLifecycle(e.mobyCtx, func() (types.Container, error) { return e.mobyContainer(id, spec) }, e.mobyBe, id, e.rpcClock(a))
	}
	id := e.id("raw")
	spec, err := e.rawSpec(id, "true")
	if err != nil {
		return st, rs, err
	}
	st, err = e.rawLifecycle(id, spec)
	return st, rs, err
}

// rpcClock returns the cumulative time arm a's namespace has spent in
// containerd requests.
func (e *env) rpcClock(a int) func() time.Duration {
	ns := e.armNS(a)
	return func() time.Duration { return e.calls.rpcTime(ns) }
}

// Arms of the sequential measurements: the library, the raw client, the
// raw client again as an A/A control whose distance from the raw arm shows
// the noise a library-vs-raw ratio has to be read against, and, with
// Config.MobyClient, moby's client (lifecycle and exec only).
const (
	armLib = iota
	armRaw
	armRawAgain
	arms // the arms every sequential measurement has
)

// armMoby is moby's client's arm; allArms counts it.
const (
	armMoby = arms
	allArms = arms + 1
)

// williams4 is a balanced Latin square of four arms: each arm runs in each
// position once, and follows each other arm once, per four rounds.
var williams4 = [4][allArms]int{{0, 1, 3, 2}, {1, 2, 0, 3}, {2, 3, 1, 0}, {3, 0, 2, 1}}

// rotation returns the orders the sequential arms take turns in: the six
// orders of the three arms, or, with moby's client, williams4.
func (e *env) rotation() [][]int {
	var rot [][]int
	if e.moby != nil {
		for _, o := range williams4 {
			rot = append(rot, o[:])
		}
		return rot
	}
	for _, o := range orders {
		rot = append(rot, o[:])
	}
	return rot
}

// armCounts reports the sequential arms' p50s so far, for progress lines.
func (e *env) armCounts(totals *[allArms][]float64, format string) string {
	s := fmt.Sprintf("p50 library "+format+" ms, raw "+format+" ms, raw again "+format+" ms",
		median(totals[armLib]), median(totals[armRaw]), median(totals[armRawAgain]))
	if e.moby != nil {
		s += fmt.Sprintf(", moby "+format+" ms", median(totals[armMoby]))
	}
	return s
}

// lifecyclePhase times sequential lifecycles, the arms taking turns one
// lifecycle at a time in rotating order (see rotation).
func (e *env) lifecyclePhase(ctx context.Context) error {
	rot := e.rotation()
	warm := e.n(6, 2)
	for i := range warm {
		for _, a := range rot[i%len(rot)] {
			if _, _, err := e.lifecycle(ctx, a); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	n := e.n(120, 10)
	before := e.callSnapshots()
	var totals [allArms][]float64
	var cpu [allArms]cpuUse
	var outside [allArms][]float64
	var perStep, perStepOutside [allArms][][]float64
	for a := range perStep {
		perStep[a] = make([][]float64, len(stepNames))
		perStepOutside[a] = make([][]float64, len(stepNames))
	}
	for i := range n {
		for _, a := range rot[i%len(rot)] {
			c0 := cpuTime()
			st, rs, err := e.lifecycle(ctx, a)
			if err != nil {
				return err
			}
			cpu[a] = cpu[a].add(cpuTime().sub(c0))
			outside[a] = append(outside[a], ms(st.total()-rs.total()))
			totals[a] = append(totals[a], ms(st.total()))
			for j, d := range st {
				perStep[a][j] = append(perStep[a][j], ms(d))
				perStepOutside[a][j] = append(perStepOutside[a][j], ms(d-rs[j]))
			}
		}
		if (i+1)%20 == 0 {
			e.progress("   %d/%d: %s", i+1, n, e.armCounts(&totals, "%.1f"))
		}
	}
	// The two raw arms are the same treatment: pooled, they make the
	// baseline with twice the samples.
	lib, raw := totals[armLib], slices.Concat(totals[armRaw], totals[armRawAgain])
	e.add(Row{Metric: "lifecycle of /bin/true, p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: "lifecycle of /bin/true, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	if e.moby != nil {
		moby := totals[armMoby]
		e.add(Row{Metric: "lifecycle of /bin/true vs moby's client, p50", Unit: "ms", Lib: median(lib), Base: median(moby), BaseName: "moby",
			Target: Target{RatioAtMost, 1.00}})
		e.add(Row{Metric: "lifecycle of /bin/true vs moby's client, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(moby, 90), BaseName: "moby"})
	}
	e.add(Row{Metric: "lifecycle A/A control: raw arm 2 vs arm 1, p50", Unit: "ms",
		Lib: median(totals[armRawAgain]), Base: median(totals[armRaw]), BaseName: "raw arm 1"})
	e.addPaired("lifecycle", &totals)
	calls := e.addCalls("lifecycle", before, n)
	cpuLine := e.addCPU("lifecycle", &cpu, n)
	outsideLine := e.addOutside("lifecycle", &outside, &perStepOutside, stepNames)
	for j, name := range stepNames {
		e.res.Steps = append(e.res.Steps, e.stepRow(name, &perStep, j))
	}
	e.note("Lifecycle: %d sequential lifecycles of `/bin/true` per arm (%s) taking turns one by one in rotating order, "+
		"after %d warm-ups each; the baseline pools both raw arms; library = NewContainer, NewTask (FIFOs copied into a sink), Start, exit event at the Backend, Task.Delete, Container.Delete; "+
		"raw = NewContainer, NewTask with cio FIFOs, Wait, Start, exit from Wait, Delete, Delete%s.", n, e.armNames(), warm, e.mobyNote())
	e.note("%s", calls)
	e.note("%s", cpuLine)
	if outsideLine != "" {
		e.note("%s", outsideLine)
	}
	return nil
}

// addPaired reports, with moby's client, the library/moby and the A/A
// ratios paired by round, each with its 95 % confidence interval: the
// yardstick for a p50 ratio close to 1.
func (e *env) addPaired(what string, totals *[allArms][]float64) {
	if e.moby == nil {
		return
	}
	for _, p := range []struct {
		name string
		a, b int
	}{{"library/moby", armLib, armMoby}, {"A/A raw arm 2/arm 1", armRawAgain, armRaw}} {
		med, lo, hi := pairedRatio(totals[p.a], totals[p.b])
		e.add(Row{Metric: fmt.Sprintf("%s %s, median of per-round ratios (95 %% CI %.3f–%.3f)", what, p.name, lo, hi),
			Lib: med, Base: math.NaN()})
	}
}

// addCPU reports the benchmark process's mean CPU time per iteration of
// the library's arm against moby's (or the raw client's) arm: what the
// client side costs, work on other goroutines included (event loops, copy
// loops), apart from the wait for containerd. It returns every arm's, the
// two raw arms' distance being the noise, for a note.
func (e *env) addCPU(what string, cpu *[allArms]cpuUse, n int) string {
	per := func(a int) float64 { return ms(cpu[a].total()) / float64(n) }
	arm := func(name string, a int) string {
		return fmt.Sprintf("%s %.3f ms (user %.3f, system %.3f; %.0f KiB in %.0f heap objects)", name, per(a),
			ms(cpu[a].user)/float64(n), ms(cpu[a].sys)/float64(n),
			float64(cpu[a].allocs)/1024/float64(n), float64(cpu[a].objects)/float64(n))
	}
	base, baseName := (per(armRaw)+per(armRawAgain))/2, "raw client"
	line := fmt.Sprintf("Client CPU per %s (user and system time of the benchmark process while the arm ran, mean): %s, %s, %s",
		what, arm("library", armLib), arm("raw", armRaw), arm("raw again", armRawAgain))
	if e.moby != nil {
		base, baseName = per(armMoby), "moby"
		line += ", " + arm("moby", armMoby)
	}
	e.add(Row{Metric: "client CPU per " + what + ", mean", Unit: "ms", Lib: per(armLib), Base: base, BaseName: baseName})
	return line + "."
}

// armNS is the namespace arm a works in.
func (e *env) armNS(a int) string {
	switch a {
	case armLib:
		return e.libNS
	case armMoby:
		return e.mobyNS
	}
	return e.rawNS
}

// addOutside reports, with moby's client, the p50 of the time a lifecycle
// or exec spent outside containerd requests on the library's and on
// moby's arm: the client's own share of the round trip (its code, FIFOs,
// the wait for the exit event), without containerd's and the shim's
// variance. The raw arms have no such figure: their Wait request runs
// alongside the others. It returns the same per step, for a note.
func (e *env) addOutside(what string, outside *[allArms][]float64, perStep *[allArms][][]float64, names []string) string {
	if e.moby == nil {
		return ""
	}
	e.add(Row{Metric: what + " time outside containerd requests, p50", Unit: "ms",
		Lib: median(outside[armLib]), Base: median(outside[armMoby]), BaseName: "moby"})
	parts := make([]string, len(names))
	for j, name := range names {
		parts[j] = fmt.Sprintf("%s %.3f / %.3f", name, median(perStep[armLib][j]), median(perStep[armMoby][j]))
	}
	return fmt.Sprintf("Time outside containerd requests per %s step, p50 in ms, library / moby: %s.", what, strings.Join(parts, ", "))
}

// callSnapshots returns the request counts of the arms' namespaces so far.
func (e *env) callSnapshots() [allArms]map[string]int {
	var s [allArms]map[string]int
	s[armLib] = e.calls.snapshot(e.libNS)
	s[armRaw] = e.calls.snapshot(e.rawNS)
	if e.moby != nil {
		s[armMoby] = e.calls.snapshot(e.mobyNS)
	}
	return s
}

// addCalls reports the containerd requests per iteration (lifecycle,
// exec) each arm made since before, n iterations per arm: a row against
// moby's client (or the raw client without it); it returns the breakdown
// by method, for a note.
func (e *env) addCalls(what string, before [allArms]map[string]int, n int) string {
	lib := e.calls.since(e.libNS, before[armLib], n)
	raw := e.calls.since(e.rawNS, before[armRaw], 2*n) // raw and raw again share the namespace
	base, baseName := raw, "raw client"
	line := fmt.Sprintf("Containerd requests per %s (on the shared client, by method, with the p50 of each method's calls): library %s (%s); raw %s (%s)",
		what, num(lib.total), lib, num(raw.total), raw)
	if e.moby != nil {
		moby := e.calls.since(e.mobyNS, before[armMoby], n)
		base, baseName = moby, "moby"
		line += fmt.Sprintf("; moby %s (%s)", num(moby.total), moby)
	}
	e.add(Row{Metric: "containerd requests per " + what, Lib: lib.total, Base: base.total, BaseName: baseName})
	return line + "."
}

// stepRow is the p50 of step j on each arm, the raw arms pooled.
func (e *env) stepRow(name string, perStep *[allArms][][]float64, j int) StepRow {
	r := StepRow{Step: name, Lib: median(perStep[armLib][j]),
		Base: median(slices.Concat(perStep[armRaw][j], perStep[armRawAgain][j]))}
	if e.moby != nil {
		r.Moby = median(perStep[armMoby][j])
	}
	return r
}

func (e *env) armNames() string {
	if e.moby != nil {
		return "library, raw, raw again as A/A control, moby's client; four orders of a balanced Latin square"
	}
	return "library, raw, raw again as A/A control"
}

func (e *env) mobyNote() string {
	if e.moby == nil {
		return ""
	}
	return "; moby = the same calls as the library through moby v28.5.2's libcontainerd/remote client, in a namespace and state directory of its own, its exit events at a Backend of its own"
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
				if _, _, err := e.lifecycle(ctx, a); err != nil {
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
