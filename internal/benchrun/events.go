package benchrun

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
)

// published is a TaskExit as a raw subscriber saw it.
type published struct {
	at       time.Time // envelope timestamp: when the shim published the event
	received time.Time // when the raw subscriber read it
}

// rawExits is a raw subscription to the library's namespace's TaskExit
// events, recorded by container/process/pid.
type rawExits struct {
	mu      sync.Mutex
	seen    map[string]published
	changed chan struct{}
	done    chan struct{}
}

func pubKey(containerID, processID string, pid uint32) string {
	return fmt.Sprintf("%s/%s/%d", containerID, processID, pid)
}

// subscribeExits subscribes to the TaskExit events of the library's
// namespace until ctx ends; done is closed when the reader has stopped.
func (e *env) subscribeExits(ctx context.Context) *rawExits {
	r := &rawExits{seen: make(map[string]published), changed: make(chan struct{}, 1), done: make(chan struct{})}
	envC, errC := e.cli.EventService().Subscribe(ctx, fmt.Sprintf("namespace==%s,topic~=|^/tasks/exit$|", e.libNS))
	go func() {
		defer close(r.done)
		for {
			select {
			case env := <-envC:
				received := time.Now()
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				te, ok := v.(*apievents.TaskExit)
				if !ok {
					continue
				}
				id := te.ID
				if id == "" {
					id = te.ContainerID
				}
				r.mu.Lock()
				r.seen[pubKey(te.ContainerID, id, te.Pid)] = published{at: env.Timestamp, received: received}
				r.mu.Unlock()
				select {
				case r.changed <- struct{}{}:
				default:
				}
			case <-errC:
				return
			}
		}
	}()
	return r
}

// wait waits until the exit of key has been seen, for at most timeout.
func (r *rawExits) wait(key string, timeout time.Duration) (published, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		p, ok := r.seen[key]
		r.mu.Unlock()
		if ok {
			return p, true
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			return published{}, false
		}
	}
}

// eventsPhase measures how long exits take to reach the Backend: n execs of
// `true`, one after another, in a sleeping container, while a raw
// subscription records when each TaskExit was published and when it, too,
// received it.
func (e *env) eventsPhase(ctx context.Context) (retErr error) {
	h, err := e.startHosts(ctx)
	defer func() {
		if h != nil {
			retErr = errors.Join(retErr, h.stop(context.WithoutCancel(ctx), e))
		}
	}()
	if err != nil {
		return err
	}
	subCtx, cancel := context.WithCancel(e.libCtx)
	raw := e.subscribeExits(subCtx)
	defer func() {
		cancel()
		<-raw.done
	}()
	// The subscription is live once it has seen an exit; containerd does
	// not say when it registered it.
	live := false
	for range 20 {
		ex, _, err := e.libExec(ctx, h)
		if err != nil {
			return err
		}
		if _, ok := raw.wait(pubKey(ex.info.ContainerID, ex.info.ProcessID, ex.info.Pid), 500*time.Millisecond); ok {
			live = true
			break
		}
	}
	if !live {
		return errors.New("raw subscription saw no exit")
	}
	for range e.n(20, 5) {
		if _, _, err := e.libExec(ctx, h); err != nil {
			return err
		}
	}

	n := e.n(1000, 100)
	exits := make([]exit, 0, n)
	for i := range n {
		ex, _, err := e.libExec(ctx, h)
		if err != nil {
			return err
		}
		exits = append(exits, ex)
		if (i+1)%250 == 0 {
			e.progress("   %d/%d exits", i+1, n)
		}
	}
	var libLat, rawLat, libExited, rawExited, overhead []float64
	missing := 0
	for _, ex := range exits {
		p, ok := raw.wait(pubKey(ex.info.ContainerID, ex.info.ProcessID, ex.info.Pid), 5*time.Second)
		if !ok {
			missing++
			continue
		}
		libLat = append(libLat, ms(ex.at.Sub(p.at)))
		rawLat = append(rawLat, ms(p.received.Sub(p.at)))
		libExited = append(libExited, ms(ex.at.Sub(ex.info.ExitedAt)))
		rawExited = append(rawExited, ms(p.received.Sub(ex.info.ExitedAt)))
		overhead = append(overhead, ms(ex.at.Sub(p.received)))
	}
	if len(libLat) == 0 {
		return errors.New("no exit matched between the library and the raw subscription")
	}
	e.add(Row{Metric: "event latency publish → Backend, p50", Unit: "ms", Lib: median(libLat), Base: median(rawLat), BaseName: "raw subscriber"})
	e.add(Row{Metric: "event latency publish → Backend, p99", Unit: "ms", Lib: percentile(libLat, 99), Base: percentile(rawLat, 99), BaseName: "raw subscriber",
		Target: Target{AtMost, 2}})
	e.add(Row{Metric: "library's own share (Backend − raw receive, same event), p50", Unit: "ms", Lib: median(overhead), Base: math.NaN()})
	e.add(Row{Metric: "library's own share (Backend − raw receive, same event), p99", Unit: "ms", Lib: percentile(overhead, 99), Base: math.NaN()})
	e.add(Row{Metric: "exit (ExitedAt) → Backend, p50", Unit: "ms", Lib: median(libExited), Base: median(rawExited), BaseName: "raw subscriber"})
	e.add(Row{Metric: "exit (ExitedAt) → Backend, p99", Unit: "ms", Lib: percentile(libExited, 99), Base: percentile(rawExited, 99), BaseName: "raw subscriber"})
	e.note("Event latency: %d execs of `true`, one after another; \"publish\" is the TaskExit envelope's timestamp (set by the shim when it publishes "+
		"the exit; the Backend does not get it, so a raw subscription to the same namespace records it), \"Backend\" the moment ProcessEvent is called; "+
		"the baseline is that raw subscription's own receive time. ExitedAt is the shim's reaping time. %d of %d exits matched.",
		n, len(libLat), n)
	if missing > 0 {
		e.note("Event latency: %d exits delivered to the Backend were never seen by the raw subscription.", missing)
	}
	return nil
}
