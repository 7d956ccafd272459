package benchrun

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p, want float64
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of no samples is not NaN")
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		want string
	}{
		{"ratio at most, ok", Row{Lib: 104, Base: 100, Target: Target{RatioAtMost, 1.05}}, "ok"},
		{"ratio at most, miss", Row{Lib: 110, Base: 100, Target: Target{RatioAtMost, 1.05}}, "MISS: +10.0 % vs baseline"},
		{"ratio at least, miss", Row{Lib: 90, Base: 100, Target: Target{RatioAtLeast, 0.95}}, "MISS: ratio 0.900"},
		{"at most, miss", Row{Lib: 2.2, Base: math.NaN(), Target: Target{AtMost, 2}}, "MISS: +10 % over"},
		{"no target", Row{Lib: 1, Base: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.Verdict(); got != tc.want {
				t.Errorf("Verdict() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestUpdateDoc checks that a flavor's section is appended once, then
// replaced in place, leaving the rest of the file alone.
func TestUpdateDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.md")
	if err := os.WriteFile(path, []byte("# Title\n\nintro\n\n<!-- lcdbench:v2:begin -->\nold\n<!-- lcdbench:v2:end -->\n\n## After\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := &Result{Flavor: "v2", Daemon: "containerd X", Rows: []Row{{Metric: "m", Lib: 1, Base: 2, BaseName: "raw"}}}
	for range 2 {
		if err := res.UpdateDoc(path); err != nil {
			t.Fatal(err)
		}
	}
	deb := &Result{Flavor: "debian", Daemon: "containerd Y", Rows: []Row{{Metric: "m", Lib: 1, Base: math.NaN()}}}
	if err := deb.UpdateDoc(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{"# Title\n\nintro\n\n<!-- lcdbench:v2:begin -->\n### containerd X", "<!-- lcdbench:v2:end -->\n\n## After\n", "### containerd Y"} {
		if !strings.Contains(doc, want) {
			t.Errorf("doc lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "old") || strings.Count(doc, "lcdbench:v2:begin") != 1 || strings.Index(doc, "containerd Y") < strings.Index(doc, "## After") {
		t.Errorf("sections not replaced in place or appended at the end:\n%s", doc)
	}
}

func TestPairedRatio(t *testing.T) {
	a := make([]float64, 100)
	b := make([]float64, 100)
	for i := range a {
		a[i], b[i] = float64(100+i), float64(100+i)/1.02 // a constant 2 % apart under drift
	}
	med, lo, hi := pairedRatio(a, b)
	if math.Abs(med-1.02) > 1e-9 || math.Abs(lo-1.02) > 1e-9 || math.Abs(hi-1.02) > 1e-9 {
		t.Errorf("pairedRatio = %v [%v, %v], want 1.02 throughout", med, lo, hi)
	}
	for i := range a {
		a[i] = float64(i + 1) // ratios 1..100
		b[i] = 1
	}
	med, lo, hi = pairedRatio(a, b)
	if med != 50 || lo != 40 || hi != 60 {
		t.Errorf("pairedRatio of 1..100 = %v [%v, %v], want 50 [40, 60]", med, lo, hi)
	}
}
