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

// eventsPhase measures how long exits take to reach the Backend.
func (e *env) eventsPhase(ctx context.Context) error {
	return e.withHosts(ctx, e.eventLatency)
}

// eventLatency runs n execs of `true`, one after another, in h's sleeping
// container of the library, while a raw subscription records when each
// TaskExit was published and when it, too, received it.
func (e *env) eventLatency(ctx context.Context, h *host) error {
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
		ex, err := e.libExec(ctx, h)
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
		if _, err := e.libExec(ctx, h); err != nil {
			return err
		}
	}

	n := e.n(1000, 100)
	exits := make([]exit, 0, n)
	for i := range n {
		ex, err := e.libExec(ctx, h)
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
	return e.oomCheckArms(ctx, raw)
}

// Arms of the OOM check measurement, containers whose init exits at once:
// with 137, the status of an OOM kill, whose exit has the library check
// the memory cgroup for an OOM kill before it delivers it, reading the
// cgroup's counter (the spec names the cgroup) or, when the cgroup path is
// relative to the shim's, asking containerd for the task's metrics; and
// with 1, which is not checked. Everything else is the same.
const (
	armCgroupCheck = iota
	armMetricsCheck
	armNoCheck
	checkArms
)

var checkArmNames = [checkArms]string{"exit 137, cgroup counter read", "exit 137, task metrics", "exit 1, not checked"}

// oomCheckArms measures what the OOM check costs on the exit path: n
// containers per arm, the arms taking turns in rotating order, timed from
// the TaskExit's publication (as the raw subscription saw it) to the
// Backend.
func (e *env) oomCheckArms(ctx context.Context, raw *rawExits) error {
	warm, n := e.n(6, 2), e.n(200, 20)
	var lat, share [checkArms][]float64
	for i := range warm + n {
		for _, a := range orders[i%len(orders)] {
			l, sh, err := e.initExit(ctx, raw, a)
			if err != nil {
				return fmt.Errorf("%s: %w", checkArmNames[a], err)
			}
			if i >= warm {
				lat[a] = append(lat[a], l)
				share[a] = append(share[a], sh)
			}
		}
		if i >= warm && (i-warm+1)%50 == 0 {
			e.progress("   %d/%d init exits per arm: p50 %.2f ms (cgroup), %.2f ms (metrics), %.2f ms (not checked)", i-warm+1, n,
				median(lat[armCgroupCheck]), median(lat[armMetricsCheck]), median(lat[armNoCheck]))
		}
	}
	base := checkArmNames[armNoCheck]
	for _, a := range []int{armCgroupCheck, armMetricsCheck} {
		e.add(Row{Metric: "init " + checkArmNames[a] + ": publish → Backend, p50", Unit: "ms", Lib: median(lat[a]), Base: median(lat[armNoCheck]), BaseName: base})
		e.add(Row{Metric: "init " + checkArmNames[a] + ": publish → Backend, p99", Unit: "ms", Lib: percentile(lat[a], 99), Base: percentile(lat[armNoCheck], 99), BaseName: base,
			Target: Target{AtMost, 2}})
		// The library's own share (Backend − raw receive) can be below 0:
		// the two subscriptions race for each event. What the check adds
		// is the difference from the unchecked arm's.
		e.add(Row{Metric: "init " + checkArmNames[a] + ": added to the library's own share, p50", Unit: "ms",
			Lib: median(share[a]) - median(share[armNoCheck]), Base: math.NaN()})
		e.add(Row{Metric: "init " + checkArmNames[a] + ": added to the library's own share, p99", Unit: "ms",
			Lib: percentile(share[a], 99) - percentile(share[armNoCheck], 99), Base: math.NaN()})
	}
	e.note("OOM check: %d containers per arm whose init exits at once, with 137 (the library checks the memory cgroup for an OOM kill before it delivers the exit: "+
		"it reads the cgroup's counter when the spec names the cgroup, as with every container NewContainer made here; it asks containerd for the task's metrics "+
		"when the cgroup path is relative to the shim's) or with 1 (not checked), taking turns in rotating order after %d warm-ups; "+
		"latency from the TaskExit's publication; the library's own share is from the raw subscription's receipt of the same event to the Backend, "+
		"and what the check adds to it the difference of that share's percentile from the unchecked arm's.", n, warm)
	return nil
}

// initExit runs a container of arm a through the library and returns how
// long its exit took from its publication to the Backend, and from the raw
// subscription's receipt to the Backend.
func (e *env) initExit(ctx context.Context, raw *rawExits, a int) (lat, share float64, retErr error) {
	id := e.id("exit")
	code := "137"
	if a == armNoCheck {
		code = "1"
	}
	spec, err := e.libSpec(id, "sh", "-c", "exit "+code)
	if err != nil {
		return 0, 0, err
	}
	if a == armMetricsCheck {
		// runc puts a relative path under the shim's own cgroup.
		spec.Linux.CgroupsPath = e.libNS + "_" + id
	}
	ctr, err := e.libContainer(ctx, id, spec)
	if err != nil {
		return 0, 0, err
	}
	defer func() { retErr = errors.Join(retErr, ctr.Delete(ctx)) }()
	exitC := e.be.expectExit(id, id)
	task, err := ctr.NewTask(ctx, "", false, discardStdio)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		_, err := task.Delete(ctx)
		retErr = errors.Join(retErr, err)
	}()
	if err := task.Start(ctx); err != nil {
		return 0, 0, err
	}
	ex, err := waitExit(ctx, exitC, id)
	if err != nil {
		return 0, 0, err
	}
	p, ok := raw.wait(pubKey(id, id, ex.info.Pid), 5*time.Second)
	if !ok {
		return 0, 0, fmt.Errorf("raw subscription saw no exit of %s", id)
	}
	return ms(ex.at.Sub(p.at)), ms(ex.at.Sub(p.received)), nil
}
