package benchrun

import (
	"math"
	"runtime/metrics"
	"slices"
	"syscall"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method; NaN for no samples.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func median(xs []float64) float64 { return percentile(xs, 50) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuUse is CPU time used, in user space and in the kernel, and heap
// allocated (bytes, objects).
type cpuUse struct {
	user, sys       time.Duration
	allocs, objects uint64
}

func (c cpuUse) total() time.Duration { return c.user + c.sys }

func (c cpuUse) add(d cpuUse) cpuUse {
	return cpuUse{c.user + d.user, c.sys + d.sys, c.allocs + d.allocs, c.objects + d.objects}
}

func (c cpuUse) sub(d cpuUse) cpuUse {
	return cpuUse{c.user - d.user, c.sys - d.sys, c.allocs - d.allocs, c.objects - d.objects}
}

// cpuTime returns the CPU time the process has used so far, the client
// side's own work, which the machine's other load does not inflate the way
// it does wall-clock time, and what it has allocated, which drives the
// garbage collector's share of that time.
func cpuTime() cpuUse {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return cpuUse{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), s[0].Value.Uint64(), s[1].Value.Uint64()}
}

// abba reports whether round i runs the library first: rounds go library,
// baseline, baseline, library, library, ... so that each side runs first
// and last equally often.
func abba(i int) bool { return i%2 == 0 }

// pairedRatio returns the median of a[i]/b[i], samples a and b taken in
// the same round i, and a distribution-free 95 % confidence interval for
// that median (the order statistics n/2 ± 0.98·√n). Pairing by round
// cancels drift in the machine's load that is slower than a round.
func pairedRatio(a, b []float64) (med, lo, hi float64) {
	n := min(len(a), len(b))
	if n == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	r := make([]float64, n)
	for i := range n {
		r[i] = a[i] / b[i]
	}
	slices.Sort(r)
	half := 0.98 * math.Sqrt(float64(n))
	j := max(int(math.Floor(float64(n)/2-half)), 1)
	k := min(int(math.Ceil(float64(n)/2+half)), n)
	return percentile(r, 50), r[j-1], r[k-1]
}
