package benchrun

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Result is the outcome of one Run.
type Result struct {
	Flavor  string
	Daemon  string // containerd version and revision as the daemon reports it
	Runc    string
	Machine Machine
	Started time.Time
	Elapsed time.Duration
	Scale   float64
	Rows    []Row
	// Steps and ExecSteps break the lifecycle and the exec round trip
	// down per step (p50 in ms).
	Steps     []StepRow
	ExecSteps []StepRow
	Notes     []string
	// Moby is the version of the docker module whose libcontainerd ran as
	// the moby arm, "" if none did.
	Moby string
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int
	CPUModel   string
	MemoryMiB  int
	Kernel     string
	Cgroup     string
	Go         string
	Client     string // containerd client module version
	LoadBefore string // /proc/loadavg at the start and the end: other work on the machine
	LoadAfter  string
}

// Row is one line of the table: a metric measured for the library and its
// baseline, and the target the design sets, if any.
type Row struct {
	Metric   string
	Unit     string
	Lib      float64
	Base     float64 // NaN without a baseline
	BaseName string
	Target   Target
}

// StepRow is the p50 of one lifecycle step, library and raw, and moby's
// client when Result.Moby is set.
type StepRow struct {
	Step      string
	Lib, Base float64
	Moby      float64
}

// Target is a goal from DESIGN.md.
type Target struct {
	Kind  TargetKind
	Value float64
}

// TargetKind says how a Target is checked.
type TargetKind int

// Target kinds: none, a bound on the library/baseline ratio, or a bound on
// the library's own value.
const (
	NoTarget TargetKind = iota
	RatioAtMost
	RatioAtLeast
	AtMost
)

func (t Target) String() string {
	switch t.Kind {
	case RatioAtMost:
		return fmt.Sprintf("ratio ≤ %.2f", t.Value)
	case RatioAtLeast:
		return fmt.Sprintf("ratio ≥ %.2f", t.Value)
	case AtMost:
		return fmt.Sprintf("≤ %s", num(t.Value))
	}
	return "—"
}

// Ratio is library over baseline.
func (r Row) Ratio() float64 { return r.Lib / r.Base }

// Verdict is "ok", "MISS (...)" with how far off, or "" without a target.
func (r Row) Verdict() string {
	switch r.Target.Kind {
	case RatioAtMost:
		if r.Ratio() <= r.Target.Value {
			return "ok"
		}
		return fmt.Sprintf("MISS: %+.1f %% vs baseline", (r.Ratio()-1)*100)
	case RatioAtLeast:
		if r.Ratio() >= r.Target.Value {
			return "ok"
		}
		return fmt.Sprintf("MISS: ratio %.3f", r.Ratio())
	case AtMost:
		if r.Lib <= r.Target.Value {
			return "ok"
		}
		return fmt.Sprintf("MISS: %+.0f %% over", (r.Lib/r.Target.Value-1)*100)
	}
	return ""
}

func (e *env) add(r Row) { e.res.Rows = append(e.res.Rows, r) }

func (e *env) note(format string, args ...any) {
	e.res.Notes = append(e.res.Notes, fmt.Sprintf(format, args...))
}

// num formats a measurement with three significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// Table renders the rows as an aligned Markdown table, readable in a
// terminal and in docs/benchmarks.md alike.
func (res *Result) Table() string {
	rows := [][]string{{"metric", "libcontainerd", "baseline", "ratio", "target", "result"}}
	for _, r := range res.Rows {
		metric := r.Metric
		if r.Unit != "" {
			metric += " (" + r.Unit + ")"
		}
		base, ratio := "—", "—"
		if !math.IsNaN(r.Base) {
			base = num(r.Base) + " " + r.BaseName
			ratio = fmt.Sprintf("%.3f", r.Ratio())
		}
		rows = append(rows, []string{metric, num(r.Lib), base, ratio, r.Target.String(), r.Verdict()})
	}
	return markdownTable(rows)
}

// StepTable renders the lifecycle and exec breakdowns.
func (res *Result) StepTable() string {
	if len(res.Steps)+len(res.ExecSteps) == 0 {
		return ""
	}
	rows := [][]string{{"step, p50 (ms)", "libcontainerd", "raw client", "difference (ms)"}}
	if res.Moby != "" {
		rows[0] = append(rows[0], "moby's client", "library − moby (ms)")
	}
	row := func(prefix string, s StepRow) []string {
		r := []string{prefix + s.Step, num(s.Lib), num(s.Base), fmt.Sprintf("%+.2f", s.Lib-s.Base)}
		if res.Moby != "" {
			r = append(r, num(s.Moby), fmt.Sprintf("%+.2f", s.Lib-s.Moby))
		}
		return r
	}
	for _, s := range res.Steps {
		rows = append(rows, row("lifecycle: ", s))
	}
	for _, s := range res.ExecSteps {
		rows = append(rows, row("exec: ", s))
	}
	return markdownTable(rows)
}

func markdownTable(rows [][]string) string {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	return b.String()
}

// Markdown is the section of docs/benchmarks.md for this run.
func (res *Result) Markdown() string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "### %s\n\n", res.Daemon)
	fmt.Fprintf(&b, "Run %s, %v, scale %g.  \n", res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Elapsed.Round(time.Second), res.Scale)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %d MiB memory, kernel %s, %s.  \n", m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "Software: %s, %s, containerd client %s, %s", res.Daemon, res.Runc, m.Client, m.Go)
	if res.Moby != "" {
		fmt.Fprintf(&b, ", moby's libcontainerd from github.com/docker/docker %s", res.Moby)
	}
	b.WriteString(".  \n")
	fmt.Fprintf(&b, "Load average before / after: %s / %s.\n\n", m.LoadBefore, m.LoadAfter)
	b.WriteString(res.Table())
	if st := res.StepTable(); st != "" {
		b.WriteString("\n")
		b.WriteString(st)
	}
	if len(res.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// UpdateDoc replaces this flavor's section of the Markdown file at path
// (between its begin and end markers), appending it if there is none, and
// leaves the rest of the file as it is.
func (res *Result) UpdateDoc(path string) error {
	begin := fmt.Sprintf("<!-- lcdbench:%s:begin -->", res.Flavor)
	end := fmt.Sprintf("<!-- lcdbench:%s:end -->", res.Flavor)
	section := begin + "\n" + res.Markdown() + end + "\n"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Benchmarks\n\nWritten by `make bench` (internal/cmd/lcdbench).\n\n")
	}
	var out []byte
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	if i >= 0 && j > i {
		rest := old[j+len(end):]
		rest = bytes.TrimPrefix(rest, []byte("\n"))
		out = append(append(append([]byte{}, old[:i]...), section...), rest...)
	} else {
		out = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), section...)
	}
	return os.WriteFile(path, out, 0o644)
}

func readMachine() Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		Go:         runtime.Version(),
		Kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		LoadBefore: readLoadavg(),
		Client:     "(unknown)",
	}
	for _, line := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			m.CPUModel = strings.TrimSpace(v)
			break
		}
	}
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		var kb int
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb / 1024
		}
	}
	m.Cgroup = "cgroup v1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		m.Cgroup = "cgroup v2"
	} else if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		m.Cgroup = "cgroup v1 (hybrid)"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/containerd/containerd/v2" {
				m.Client = dep.Version
			}
		}
	}
	return m
}

func readLoadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func runcVersion() string {
	out, err := exec.Command("runc", "--version").Output()
	if err != nil {
		out, err = exec.Command("/usr/sbin/runc", "--version").Output()
	}
	if err != nil {
		return "runc (unknown)"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}
