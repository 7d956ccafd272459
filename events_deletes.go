package libcontainerd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// deferredDeleteInterval is how often deletes that containerd could not
// serve are retried while the event stream has not noticed an outage
// (after a reconnect they are retried at once).
const deferredDeleteInterval = 5 * time.Second

// deferredDeletes completes deletes (of a task, exec or container) that the
// engine asked for while containerd was unavailable. The engine logs such a
// failure and moves on; nobody would retry it, and the shim and its
// container would stay behind. Each entry is retried once containerd
// serves again; an entry whose object is gone or running again is done.
type deferredDeletes struct {
	logger   *log.Entry
	counters *eventCounters

	mu      sync.Mutex
	pending map[deleteTarget]func(context.Context) error // by what is deleted
	kickC   chan struct{}
	before  func(context.Context) // clientOptions.beforeDeferredDeletes
}

func newDeferredDeletes(logger *log.Entry, counters *eventCounters, before func(context.Context)) *deferredDeletes {
	return &deferredDeletes{
		logger:   logger,
		counters: counters,
		before:   before,
		pending:  make(map[deleteTarget]func(context.Context) error),
		kickC:    make(chan struct{}, 1),
	}
}

// deferIfUnavailable takes over a delete that failed with err when err says
// containerd was unavailable. retry repeats it: it returns nil when the
// object is deleted or must not be (gone, running again).
func (d *deferredDeletes) deferIfUnavailable(what deleteTarget, err error, retry func(context.Context) error) {
	if !errdefs.IsUnavailable(err) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pending[what]; ok {
		return
	}
	d.pending[what] = retry
	d.counters.deletesDeferred.Add(1)
	d.logger.WithError(err).WithField("object", what.String()).Warn("containerd unavailable: delete will be completed when it serves again")
}

// kick asks for a retry now: containerd serves again.
func (d *deferredDeletes) kick() {
	select {
	case d.kickC <- struct{}{}:
	default:
	}
}

// run retries the pending deletes when kicked and now and then, until ctx
// ends; a retry in progress is abandoned then.
func (d *deferredDeletes) run(ctx context.Context) {
	ticker := time.NewTicker(deferredDeleteInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kickC:
		case <-ticker.C:
		}
		d.retry(ctx)
	}
}

func (d *deferredDeletes) retry(ctx context.Context) {
	if d.before != nil {
		d.before(ctx)
	}
	d.mu.Lock()
	batch := make(map[deleteTarget]func(context.Context) error, len(d.pending))
	for what, f := range d.pending {
		batch[what] = f
	}
	d.mu.Unlock()
	// Tasks and execs first: a container with a task cannot be deleted.
	for _, containers := range []bool{false, true} {
		for what, f := range batch {
			if what.container != containers {
				continue
			}
			err := f(ctx)
			if ctx.Err() != nil {
				return
			}
			if errdefs.IsUnavailable(err) {
				continue // still down: next round
			}
			d.mu.Lock()
			delete(d.pending, what)
			d.mu.Unlock()
			if err != nil {
				d.logger.WithError(err).WithField("object", what.String()).Warn("not completing deferred delete")
				continue
			}
			d.counters.deletesCompleted.Add(1)
			d.logger.WithField("object", what.String()).Info("completed delete deferred while containerd was unavailable")
		}
	}
}

// abandon gives up the deletes still waiting, once the client is closed:
// each is logged, as the engine's own failure was, and counted
// (Metrics.DeletesAbandoned); containerd keeps those objects.
func (d *deferredDeletes) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for what := range d.pending {
		d.counters.deletesAbandoned.Add(1)
		d.logger.WithField("object", what.String()).Warn("client closed: not completing delete deferred while containerd was unavailable")
	}
	clear(d.pending)
}

// len returns the number of deletes waiting for containerd.
func (d *deferredDeletes) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// deleteTarget names what a deferred delete deletes: a task (processID
// empty), an exec, or a container.
type deleteTarget struct {
	container   bool
	containerID string
	processID   string
}

func (t deleteTarget) String() string {
	switch {
	case t.container:
		return "container " + t.containerID
	case t.processID == "":
		return "task " + t.containerID
	default:
		return "exec " + t.processID + " of container " + t.containerID
	}
}

// retryDelete completes a delete of incarnation p (a task, or an exec of
// container containerID) that failed while containerd was unavailable. It
// returns the exit status of the delete it made (nil: none). The process
// is deleted unless it is gone, or the ID names a newer run now (another
// pid: it is not the engine's to delete), or it runs again and the delete
// was not forced: a ForceDelete (opts) kills it first, as it would have.
func (m *eventMonitor) retryDelete(ctx context.Context, containerID string, p containerd.Process, force bool, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	req := &tasks.GetRequest{ContainerID: containerID}
	if p.ID() != containerID {
		req.ExecID = p.ID()
	}
	resp, err := m.conn.TaskService().Get(ctx, req)
	switch err = wrapError(err); {
	case errdefs.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case p.Pid() != 0 && resp.Process.Pid != 0 && resp.Process.Pid != p.Pid():
		return nil, fmt.Errorf("%s is a newer run (pid %d, the deleted one %d): %w", p.ID(), resp.Process.Pid, p.Pid(), errdefs.ErrFailedPrecondition)
	case !force && (resp.Process.Status == tasktypes.Status_RUNNING || resp.Process.Status == tasktypes.Status_PAUSED || resp.Process.Status == tasktypes.Status_PAUSING):
		return nil, fmt.Errorf("%s is %s again: %w", p.ID(), resp.Process.Status, errdefs.ErrFailedPrecondition)
	}
	exit, err := p.Delete(ctx, opts...)
	if err = wrapError(err); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return exit, nil
}
