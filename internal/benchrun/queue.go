package benchrun

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/ctrkit/libcontainerd/internal/chainqueue"
	"github.com/ctrkit/libcontainerd/queue"
)

// appender is what both queues offer.
type appender interface {
	Append(id string, f func())
}

func newLibQueue() appender   { return new(queue.Queue) }
func newChainQueue() appender { return new(chainqueue.Queue) }

func keyNames(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("container-%04d", i)
	}
	return ids
}

// queuePhase measures the throughput of draining 1M trivial callbacks over
// 1000 keys, appended from one goroutine as the event loop does, and the
// goroutines and heap a backlog of 100 keys x 1000 blocked callbacks costs.
func (e *env) queuePhase(ctx context.Context) error {
	const keys = 1000
	callbacks := e.n(1_000_000, 100_000)
	rounds := e.n(3, 2)
	ids := keyNames(keys)
	// Warm-up: grow the heap and the scheduler's pools for both.
	drainOnce(newLibQueue(), ids, callbacks/10)
	drainOnce(newChainQueue(), ids, callbacks/10)
	var lib, chain []float64
	for i := range rounds {
		order := []bool{true, false}
		if !abba(i) {
			order = []bool{false, true}
		}
		for _, isLib := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isLib {
				lib = append(lib, float64(callbacks)/drainOnce(newLibQueue(), ids, callbacks).Seconds())
			} else {
				chain = append(chain, float64(callbacks)/drainOnce(newChainQueue(), ids, callbacks).Seconds())
			}
		}
		e.progress("   drain round %d/%d: queue %.2f M/s, chain %.2f M/s", i+1, rounds, lib[len(lib)-1]/1e6, chain[len(chain)-1]/1e6)
	}
	e.add(Row{
		Metric: fmt.Sprintf("queue drain, %s callbacks over %d keys", countName(callbacks), keys), Unit: "M callbacks/s",
		Lib: median(lib) / 1e6, Base: median(chain) / 1e6, BaseName: "goroutine chain",
		Target: Target{RatioAtLeast, 2},
	})

	const blockedKeys, perKey = 100, 1000
	var libG, libH, chainG, chainH []float64
	for i := range e.n(2, 1) {
		order := []bool{true, false}
		if !abba(i) {
			order = []bool{false, true}
		}
		for _, isLib := range order {
			if isLib {
				g, h := backlog(newLibQueue(), keyNames(blockedKeys), perKey)
				libG, libH = append(libG, g), append(libH, h)
			} else {
				g, h := backlog(newChainQueue(), keyNames(blockedKeys), perKey)
				chainG, chainH = append(chainG, g), append(chainH, h)
			}
		}
	}
	e.add(Row{
		Metric: fmt.Sprintf("blocked backlog %d keys x %d: goroutines", blockedKeys, perKey), Unit: "count",
		Lib: slicesMax(libG), Base: slicesMax(chainG), BaseName: "goroutine chain",
		Target: Target{AtMost, blockedKeys + 1},
	})
	e.add(Row{
		Metric: "blocked backlog: heap", Unit: "MiB",
		Lib: slicesMax(libH), Base: slicesMax(chainH), BaseName: "goroutine chain",
		Target: Target{AtMost, 10},
	})
	return nil
}

// drainOnce appends n callbacks round-robin over ids and waits for all of
// them to have run.
func drainOnce(q appender, ids []string, n int) time.Duration {
	runtime.GC()
	var done sync.WaitGroup
	cb := func() { done.Done() }
	done.Add(n)
	start := time.Now()
	for i := range n {
		q.Append(ids[i%len(ids)], cb)
	}
	done.Wait()
	return time.Since(start)
}

// backlog blocks every key in its first callback, queues perKey-1 more
// behind each and returns the goroutines and heap (MiB) the backlog added
// while blocked; then it releases the keys and waits for the drain.
func backlog(q appender, ids []string, perKey int) (goroutines, heapMiB float64) {
	var started, done sync.WaitGroup
	release := make(chan struct{})
	sink := make([]int, len(ids)) // per-key state the callbacks update

	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	started.Add(len(ids))
	done.Add(len(ids) * perKey)
	for _, id := range ids {
		q.Append(id, func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	for i := 1; i < perKey; i++ {
		for k, id := range ids {
			// A closure per callback, as an event handler captures its
			// event.
			q.Append(id, func() {
				sink[k] += i
				done.Done()
			})
		}
	}
	started.Wait()
	g1 := runtime.NumGoroutine()
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(release)
	done.Wait()
	runtime.KeepAlive(q)
	heap := math.Max(0, float64(int64(during.HeapAlloc)-int64(before.HeapAlloc)))
	return float64(g1 - g0), heap / (1 << 20)
}

func slicesMax(xs []float64) float64 {
	m := math.NaN()
	for _, x := range xs {
		if math.IsNaN(m) || x > m {
			m = x
		}
	}
	return m
}

func countName(n int) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
