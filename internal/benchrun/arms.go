package benchrun

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

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

// rpcClock returns the cumulative time arm a's namespace has spent in
// containerd requests.
func (e *env) rpcClock(a int) func() time.Duration {
	ns := e.armNS(a)
	return func() time.Duration { return e.calls.rpcTime(ns) }
}

// maxSteps bounds the steps of an iteration: a lifecycle has six.
const maxSteps = 6

// laps are the times of an iteration's steps (see timeSteps). They are a
// value, so that timing allocates nothing the arm's CPU measurement would
// count.
type laps struct {
	st, rs [maxSteps]time.Duration // per step: its time, and its time in containerd requests
}

// timeSteps runs the steps of one iteration (a lifecycle, an exec), at
// most maxSteps, one after another until one fails, timing each. rpc is
// the arm's rpcClock, for each step's time in containerd requests; nil
// for the raw arms, whose Wait request runs alongside the others, so that
// theirs stays zero.
func timeSteps(rpc func() time.Duration, steps ...func() error) (l laps, _ error) {
	t := time.Now()
	var r time.Duration
	if rpc != nil {
		r = rpc()
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return l, err
		}
		now := time.Now()
		l.st[i], t = now.Sub(t), now
		if rpc != nil {
			nr := rpc()
			l.rs[i], r = nr-r, nr
		}
	}
	return l, nil
}

// samples are the measured iterations of one arm, in ms: each one's time,
// its time outside containerd requests, the same per step, and the CPU
// time the benchmark process used while the arm ran.
type samples struct {
	total, outside      []float64
	steps, stepsOutside [][]float64 // by step
	cpu                 cpuUse
}

// add records a measured iteration.
func (s *samples) add(l laps, cpu cpuUse) {
	var st, rs time.Duration
	for j := range s.steps {
		st, rs = st+l.st[j], rs+l.rs[j]
		s.steps[j] = append(s.steps[j], ms(l.st[j]))
		s.stepsOutside[j] = append(s.stepsOutside[j], ms(l.st[j]-l.rs[j]))
	}
	s.total = append(s.total, ms(st))
	s.outside = append(s.outside, ms(st-rs))
	s.cpu = s.cpu.add(cpu)
}

// armRuns is a sequential measurement: iterations of the same work on
// every arm, the arms taking turns one iteration at a time in rotating
// order (see rotation), each iteration timed per step.
type armRuns struct {
	what    string   // "lifecycle", "exec": in the names of rows and notes
	metric  string   // the name of the rows of a whole iteration
	steps   []string // the steps' names, in the order run laps them
	warm, n int      // rounds before the measurement, and measured
	every   int      // measured rounds between progress lines
	format  string   // of a p50 in ms in progress lines
	note    string   // what the measurement does, the first of its notes
	// run runs one iteration on arm a and returns its laps.
	run func(a int) (laps, error)
}

// runArms runs r and reports it: the p50 and p90 of an iteration against
// the raw arms pooled and against moby's client, the A/A control, the
// paired ratios, the containerd requests, the client CPU and the time
// outside containerd requests per iteration, and their notes. It returns
// the p50 of each step.
func (e *env) runArms(r armRuns) ([]StepRow, error) {
	rot := e.rotation()
	var s [allArms]samples
	for a := range s {
		s[a].steps = make([][]float64, len(r.steps))
		s[a].stepsOutside = make([][]float64, len(r.steps))
	}
	var before [allArms]map[string]int
	for i := range r.warm + r.n {
		if i == r.warm {
			before = e.callSnapshots()
		}
		for _, a := range rot[i%len(rot)] {
			c0 := cpuTime()
			l, err := r.run(a)
			switch {
			case err != nil && i < r.warm:
				return nil, fmt.Errorf("warm-up: %w", err)
			case err != nil:
				return nil, err
			case i >= r.warm:
				s[a].add(l, cpuTime().sub(c0))
			}
		}
		if m := i - r.warm + 1; m > 0 && m%r.every == 0 {
			e.progress("   %d/%d: %s", m, r.n, e.armCounts(&s, r.format))
		}
	}
	// The two raw arms are the same treatment: pooled, they make the
	// baseline with twice the samples.
	lib, raw := s[armLib].total, slices.Concat(s[armRaw].total, s[armRawAgain].total)
	e.add(Row{Metric: r.metric + ", p50", Unit: "ms", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtMost, 1.05}})
	e.add(Row{Metric: r.metric + ", p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(raw, 90), BaseName: "raw client"})
	if e.moby != nil {
		moby := s[armMoby].total
		e.add(Row{Metric: r.metric + " vs moby's client, p50", Unit: "ms", Lib: median(lib), Base: median(moby), BaseName: "moby",
			Target: Target{RatioAtMost, 1.00}})
		e.add(Row{Metric: r.metric + " vs moby's client, p90", Unit: "ms", Lib: percentile(lib, 90), Base: percentile(moby, 90), BaseName: "moby"})
	}
	e.add(Row{Metric: r.what + " A/A control: raw arm 2 vs arm 1, p50", Unit: "ms",
		Lib: median(s[armRawAgain].total), Base: median(s[armRaw].total), BaseName: "raw arm 1"})
	e.addPaired(r.what, &s)
	calls := e.addCalls(r.what, before, r.n)
	cpuLine := e.addCPU(r.what, &s, r.n)
	outsideLine := e.addOutside(r.what, &s, r.steps)
	e.note("%s", r.note)
	e.note("%s", calls)
	e.note("%s", cpuLine)
	if outsideLine != "" {
		e.note("%s", outsideLine)
	}
	steps := make([]StepRow, len(r.steps))
	for j, name := range r.steps {
		steps[j] = e.stepRow(name, &s, j)
	}
	return steps, nil
}

// armCounts reports the sequential arms' p50s so far, for progress lines.
func (e *env) armCounts(s *[allArms]samples, format string) string {
	line := fmt.Sprintf("p50 library "+format+" ms, raw "+format+" ms, raw again "+format+" ms",
		median(s[armLib].total), median(s[armRaw].total), median(s[armRawAgain].total))
	if e.moby != nil {
		line += fmt.Sprintf(", moby "+format+" ms", median(s[armMoby].total))
	}
	return line
}

// addPaired reports, with moby's client, the library/moby and the A/A
// ratios paired by round, each with its 95 % confidence interval: the
// yardstick for a p50 ratio close to 1.
func (e *env) addPaired(what string, s *[allArms]samples) {
	if e.moby == nil {
		return
	}
	for _, p := range []struct {
		name string
		a, b int
	}{{"library/moby", armLib, armMoby}, {"A/A raw arm 2/arm 1", armRawAgain, armRaw}} {
		med, lo, hi := pairedRatio(s[p.a].total, s[p.b].total)
		e.add(Row{Metric: fmt.Sprintf("%s %s, median of per-round ratios (95 %% CI %.3f–%.3f)", what, p.name, lo, hi),
			Lib: med, Base: math.NaN()})
	}
}

// addCPU reports the benchmark process's mean CPU time per iteration of
// the library's arm against moby's (or the raw client's) arm: what the
// client side costs, work on other goroutines included (event loops, copy
// loops), apart from the wait for containerd. It returns every arm's, the
// two raw arms' distance being the noise, for a note.
func (e *env) addCPU(what string, s *[allArms]samples, n int) string {
	per := func(a int) float64 { return ms(s[a].cpu.total()) / float64(n) }
	arm := func(name string, a int) string {
		cpu := s[a].cpu
		return fmt.Sprintf("%s %.3f ms (user %.3f, system %.3f; %.0f KiB in %.0f heap objects)", name, per(a),
			ms(cpu.user)/float64(n), ms(cpu.sys)/float64(n),
			float64(cpu.allocs)/1024/float64(n), float64(cpu.objects)/float64(n))
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

// addOutside reports, with moby's client, the p50 of the time a lifecycle
// or exec spent outside containerd requests on the library's and on
// moby's arm: the client's own share of the round trip (its code, FIFOs,
// the wait for the exit event), without containerd's and the shim's
// variance. The raw arms have no such figure: their Wait request runs
// alongside the others. It returns the same per step, for a note.
func (e *env) addOutside(what string, s *[allArms]samples, names []string) string {
	if e.moby == nil {
		return ""
	}
	e.add(Row{Metric: what + " time outside containerd requests, p50", Unit: "ms",
		Lib: median(s[armLib].outside), Base: median(s[armMoby].outside), BaseName: "moby"})
	parts := make([]string, len(names))
	for j, name := range names {
		parts[j] = fmt.Sprintf("%s %.3f / %.3f", name, median(s[armLib].stepsOutside[j]), median(s[armMoby].stepsOutside[j]))
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
func (e *env) stepRow(name string, s *[allArms]samples, j int) StepRow {
	r := StepRow{Step: name, Lib: median(s[armLib].steps[j]),
		Base: median(slices.Concat(s[armRaw].steps[j], s[armRawAgain].steps[j]))}
	if e.moby != nil {
		r.Moby = median(s[armMoby].steps[j])
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
