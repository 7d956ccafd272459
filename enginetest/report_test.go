//go:build enginetest && linux

package enginetest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// kind says how an observation is judged.
type kind int

const (
	same     kind = iota // ours must show what stock shows
	recorded             // written beside each other, not compared (a known difference)
	required             // ours must meet a requirement; stock's value is recorded
)

type observation struct {
	key  string
	kind kind
	val  string
	ok   bool   // for required: whether this build met the requirement
	want string // for required: the requirement, in words
}

// result is what one scenario observed on one build, in order.
type result struct {
	obs   []observation
	index map[string]int
}

// Paths and IDs differ between the two builds' runs by construction.
var (
	runPath = regexp.MustCompile(`/tmp/lcd-engine-[0-9]+/v[0-9]+/[a-z0-9]+/[a-z0-9-]+-(stock|ours)`)
	hexID   = regexp.MustCompile(`\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b`)
)

func (r *result) add(o observation) {
	o.val = hexID.ReplaceAllString(runPath.ReplaceAllString(o.val, "<dir>"), "<id>")
	if r.index == nil {
		r.index = map[string]int{}
	}
	if i, ok := r.index[o.key]; ok {
		r.obs[i] = o
		return
	}
	r.index[o.key] = len(r.obs)
	r.obs = append(r.obs, o)
}

// same records a value ours must share with stock.
func (r *result) same(key string, format string, args ...any) {
	r.add(observation{key: key, kind: same, val: fmt.Sprintf(format, args...)})
}

// record records a value shown beside stock's, not compared.
func (r *result) record(key string, format string, args ...any) {
	r.add(observation{key: key, kind: recorded, val: fmt.Sprintf(format, args...)})
}

// require records a value and whether it meets want, which ours must.
func (r *result) require(key string, ok bool, want string, format string, args ...any) {
	r.add(observation{key: key, kind: required, val: fmt.Sprintf(format, args...), ok: ok, want: want})
}

func (r *result) get(key string) (observation, bool) {
	i, ok := r.index[key]
	if !ok {
		return observation{}, false
	}
	return r.obs[i], true
}

// row is one line of the side-by-side table.
type row struct {
	flavor, scenario, key string
	stock, ours           string
	verdict               string
}

var report struct {
	mu    sync.Mutex
	rows  []row
	times []string
}

// compare judges ours against stock for one scenario, fails t for every
// difference and unmet requirement, and adds the rows to the report.
func compare(t *testing.T, flavor, scenario string, stock, ours *result) {
	t.Helper()
	keys := []string{}
	seen := map[string]bool{}
	for _, r := range []*result{stock, ours} {
		for _, o := range r.obs {
			if !seen[o.key] {
				seen[o.key] = true
				keys = append(keys, o.key)
			}
		}
	}
	report.mu.Lock()
	defer report.mu.Unlock()
	for _, k := range keys {
		s, sok := stock.get(k)
		o, ook := ours.get(k)
		rw := row{flavor: flavor, scenario: scenario, key: k, stock: s.val, ours: o.val}
		if !sok {
			rw.stock = "(none)"
		}
		if !ook {
			rw.ours = "(none)"
		}
		kd := s.kind
		if ook {
			kd = o.kind
		}
		switch kd {
		case same:
			if sok && ook && s.val == o.val {
				rw.verdict = "same"
			} else {
				rw.verdict = "**DIFF**"
				t.Errorf("%s: stock %q, ours %q", k, rw.stock, rw.ours)
			}
		case recorded:
			rw.verdict = "recorded"
		case required:
			switch {
			case !ook:
				rw.verdict = "**FAIL**"
				t.Errorf("%s: ours did not get this far (%s)", k, o.want)
			case !o.ok:
				rw.verdict = "**FAIL**: " + o.want
				t.Errorf("%s: ours %q, want %s (stock %q)", k, o.val, o.want, rw.stock)
			default:
				rw.verdict = "ok: " + o.want
			}
			if sok && !s.ok {
				rw.stock += " (fails it)"
			}
		}
		report.rows = append(report.rows, rw)
	}
}

func addTiming(format string, args ...any) {
	report.mu.Lock()
	defer report.mu.Unlock()
	report.times = append(report.times, fmt.Sprintf(format, args...))
}

// writeReport writes the table as Markdown to ENGINE_REPORT, one row per
// observation and a stock and an ours column per engine and containerd. With
// ENGINE_DOC set it also replaces the part of that file between the
// engine-test markers (docs/engine.md).
func writeReport(t *testing.T) {
	report.mu.Lock()
	defer report.mu.Unlock()
	var flavors []string
	type cellKey struct{ scenario, key string }
	var order []cellKey
	rows := map[cellKey]map[string]row{}
	for _, r := range report.rows {
		if !slices.Contains(flavors, r.flavor) {
			flavors = append(flavors, r.flavor)
		}
		k := cellKey{r.scenario, r.key}
		if rows[k] == nil {
			rows[k] = map[string]row{}
			order = append(order, k)
		}
		rows[k][r.flavor] = r
	}
	// A row only some engines have (v29's exit filter) stays with its
	// scenario, not after every row of the engine that ran first.
	var byScenario []string
	for _, k := range order {
		if !slices.Contains(byScenario, k.scenario) {
			byScenario = append(byScenario, k.scenario)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		return slices.Index(byScenario, order[i].scenario) < slices.Index(byScenario, order[j].scenario)
	})
	// Columns in a fixed order, whichever daemon finished first.
	sort.SliceStable(flavors, func(i, j int) bool { return columnRank(flavors[i]) < columnRank(flavors[j]) })
	sort.Strings(report.times)
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| scenario | observation |")
	for _, f := range flavors {
		fmt.Fprintf(&b, " %s stock | %s ours |", flavorTitle(f), flavorTitle(f))
	}
	b.WriteString(" verdict |\n|---|---|")
	for range flavors {
		b.WriteString("---|---|")
	}
	b.WriteString("---|\n")
	for _, k := range order {
		fmt.Fprintf(&b, "| %s | %s |", k.scenario, cell(k.key))
		var verdicts []string
		for _, f := range flavors {
			r, ok := rows[k][f]
			if !ok {
				b.WriteString(" | |")
				continue
			}
			fmt.Fprintf(&b, " %s | %s |", cell(r.stock), cell(r.ours))
			if !slices.Contains(verdicts, r.verdict) {
				verdicts = append(verdicts, r.verdict)
			}
		}
		fmt.Fprintf(&b, " %s |\n", strings.Join(verdicts, "; "))
	}
	if len(report.times) > 0 {
		b.WriteString("\nWall time per scenario and build (setup, daemons and teardown included):\n\n")
		for _, s := range report.times {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	path := envOr("ENGINE_REPORT", filepath.Join(run.buildDir, "report.md"))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Error(err)
		return
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
		return
	}
	t.Logf("report written to %s", path)
	// Repeated last, where a truncated log still shows them.
	for _, r := range report.rows {
		if strings.HasPrefix(r.verdict, "**") {
			t.Logf("%s %s %s: stock %q, ours %q: %s", r.flavor, r.scenario, r.key, r.stock, r.ours, r.verdict)
		}
	}
	if doc := os.Getenv("ENGINE_DOC"); doc != "" {
		if !filepath.IsAbs(doc) {
			// Relative to the repository, where make runs; go test runs
			// in the package directory.
			doc = filepath.Join("..", doc)
		}
		if err := replaceBetweenMarkers(doc, b.String()); err != nil {
			t.Error(err)
			return
		}
		t.Logf("table written into %s", doc)
	}
}

const (
	beginMarker = "<!-- engine-test:begin -->"
	endMarker   = "<!-- engine-test:end -->"
)

func replaceBetweenMarkers(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s markers", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + body + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// columnRank orders column groups: engines, then containerd 2.4 before 1.6.
func columnRank(f string) string {
	eng, ctrd, _ := strings.Cut(f, "/")
	if ctrd == "v2" {
		ctrd = "0"
	}
	return eng + "/" + ctrd
}

// flavorTitle names a column group: "v29/debian" is "v29 1.6".
func flavorTitle(f string) string {
	eng, ctrd, _ := strings.Cut(f, "/")
	switch ctrd {
	case "v2":
		ctrd = "2.4"
	case "debian":
		ctrd = "1.6"
	}
	return eng + " " + ctrd
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "<br>")
}
