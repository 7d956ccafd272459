package benchrun

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
)

// callCounter counts the requests made on the shared containerd client, by
// namespace and method, so that the arms of a phase can be compared by the
// round trips they make, not only by time. It sits on every call of every
// arm alike (a map increment under a mutex, far below a round trip). The
// library's event connection is its own and is not counted; it makes no
// request per process.
type callCounter struct {
	mu  sync.Mutex
	n   map[string]map[string]int       // namespace -> method -> calls
	dur map[string]map[string][]float64 // namespace -> unary method -> each call's ms
	rpc map[string]time.Duration        // namespace -> time in unary calls
}

func newCallCounter() *callCounter {
	return &callCounter{n: make(map[string]map[string]int), dur: make(map[string]map[string][]float64), rpc: make(map[string]time.Duration)}
}

func (c *callCounter) dialOpts() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			start := time.Now()
			err := invoker(ctx, method, req, reply, cc, opts...)
			c.addUnary(ctx, method, time.Since(start))
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(ctx, method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

func (c *callCounter) add(ctx context.Context, method string) {
	ns, _ := namespaces.Namespace(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(ns, method)
}

func (c *callCounter) addLocked(ns, method string) {
	m := c.n[ns]
	if m == nil {
		m = make(map[string]int)
		c.n[ns] = m
	}
	m[method]++
}

// addUnary counts a unary call when it returns, with its duration.
func (c *callCounter) addUnary(ctx context.Context, method string, d time.Duration) {
	ns, _ := namespaces.Namespace(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(ns, method)
	c.rpc[ns] += d
	if c.dur[ns] == nil {
		c.dur[ns] = make(map[string][]float64)
	}
	c.dur[ns][method] = append(c.dur[ns][method], ms(d))
}

// rpcTime returns the time namespace ns has spent in unary requests so
// far: what a lifecycle or exec waited for containerd, the rest of its
// time being the client's own (its code, its event path).
func (c *callCounter) rpcTime(ns string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rpc[ns]
}

// snapshot returns the counts of namespace ns so far.
func (c *callCounter) snapshot(ns string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n[ns])
}

// callsPer is what namespace ns asked containerd between snapshot before
// and now, per iteration of n, and the p50 duration of each unary method's
// calls.
type callsPer struct {
	total    float64
	byMethod map[string]float64
	p50      map[string]float64
}

func (c *callCounter) since(ns string, before map[string]int, n int) callsPer {
	now := c.snapshot(ns)
	per := callsPer{byMethod: make(map[string]float64), p50: make(map[string]float64)}
	c.mu.Lock()
	defer c.mu.Unlock()
	for m, v := range now {
		if d := v - before[m]; d > 0 {
			per.byMethod[m] = float64(d) / float64(n)
			per.total += float64(d) / float64(n)
			if ds := c.dur[ns][m]; len(ds) >= v {
				per.p50[m] = median(ds[before[m]:v])
			}
		}
	}
	return per
}

// String lists the methods, short names, with the p50 of their unary
// calls, e.g. "Containers.Create 1 (1.52 ms), Tasks.Create 1 (49.8 ms)".
func (p callsPer) String() string {
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(p.byMethod)) {
		name := m
		if i := strings.LastIndex(m, "."); i >= 0 {
			name = m[i+1:] // "/containerd.services.tasks.v1.Tasks/Create" -> "Tasks/Create"
		}
		part := fmt.Sprintf("%s %s", strings.Replace(name, "/", ".", 1), num(p.byMethod[m]))
		if d, ok := p.p50[m]; ok {
			part += fmt.Sprintf(" (%s ms)", num(d))
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}
