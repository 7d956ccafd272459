package queue_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/ctrkit/libcontainerd/internal/chainqueue"
	"github.com/ctrkit/libcontainerd/queue"
)

// appender is what the benchmarks drive: the Queue and the baseline below.
type appender interface {
	Append(id string, f func())
}

var implementations = []struct {
	name string
	new  func() appender
}{
	{"queue", func() appender { return new(queue.Queue) }},
	// The baseline: moby's goroutine-per-callback design.
	{"goroutine-chain", func() appender { return new(chainqueue.Queue) }},
}

func keyNames(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("container-%04d", i)
	}
	return ids
}

// BenchmarkDrain measures throughput: each iteration appends 1,000,000
// trivial callbacks spread round-robin over 1000 keys from one goroutine,
// as libcontainerd does with its event stream, and waits until all have run.
func BenchmarkDrain(b *testing.B) {
	const (
		keys      = 1000
		callbacks = 1_000_000
	)
	ids := keyNames(keys)
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			q := impl.new()
			var done sync.WaitGroup
			cb := func() { done.Done() }
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				done.Add(callbacks)
				for i := range callbacks {
					q.Append(ids[i%keys], cb)
				}
				done.Wait()
			}
			b.StopTimer()
			n := float64(b.N) * callbacks
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/callback")
			b.ReportMetric(n/b.Elapsed().Seconds(), "callbacks/s")
		})
	}
}

// BenchmarkBlockedBacklog measures the cost of a backlog: 100 keys whose
// first callback blocks, each with 1000 callbacks queued behind it. While
// everything is blocked it reports the goroutines and heap (and, for
// information, goroutine stack) memory the backlog added, then releases
// the keys and waits for the backlog to drain.
func BenchmarkBlockedBacklog(b *testing.B) {
	const (
		keys   = 100
		perKey = 1000
	)
	ids := keyNames(keys)
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			sink := make([]int, keys) // per-key state the callbacks update
			var goroutines, heap, stack float64
			for range b.N {
				q := impl.new()
				var started, done sync.WaitGroup
				release := make(chan struct{})

				runtime.GC()
				var before, during runtime.MemStats
				runtime.ReadMemStats(&before)
				g0 := runtime.NumGoroutine()

				started.Add(keys)
				done.Add(keys * perKey)
				for _, id := range ids {
					q.Append(id, func() {
						started.Done()
						<-release
						done.Done()
					})
				}
				for i := 1; i < perKey; i++ {
					for k, id := range ids {
						// A distinct closure per callback, as real event
						// handlers capture their event.
						q.Append(id, func() {
							sink[k] += i
							done.Done()
						})
					}
				}
				started.Wait() // every key is now blocked in its first callback

				g1 := runtime.NumGoroutine()
				runtime.GC()
				runtime.ReadMemStats(&during)
				goroutines += float64(g1 - g0)
				heap += float64(int64(during.HeapAlloc) - int64(before.HeapAlloc))
				stack += float64(int64(during.StackInuse) - int64(before.StackInuse))

				close(release)
				done.Wait()
				runtime.KeepAlive(q)
			}
			n := float64(b.N)
			b.ReportMetric(goroutines/n, "goroutines")
			b.ReportMetric(heap/n/(1<<20), "heap-MiB")
			b.ReportMetric(heap/(n*keys*perKey), "heap-B/callback")
			b.ReportMetric(stack/n/(1<<20), "stack-MiB")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(n*keys*perKey), "ns/callback")
		})
	}
}
