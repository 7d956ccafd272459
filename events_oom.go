package libcontainerd

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
)

// oomCheckTimeout bounds the memory cgroup check an exit waits for. The
// check runs on the event loop, so every container's events wait with it;
// an answer that does not come in time counts as no OOM kill.
const oomCheckTimeout = 500 * time.Millisecond

// checkOOM sets ev.oomKilled when the store says exit ev may owe the
// engine an EventOOM (its TaskOOM was lost: containerd was down, or the
// shim missed the cgroup's notification) and the container's memory
// cgroup recorded an OOM kill, as containerd's CRI checks at exit. What
// cannot be known (the task or its cgroup is gone, containerd does not
// answer in time) counts as no OOM kill: nothing is invented.
func (m *eventMonitor) checkOOM(ctx context.Context, ev *taskEvent) {
	if !m.store.oomCheckDue(*ev) {
		return
	}
	killed, err := m.oomKilled(ctx, ev.info.ContainerID)
	if err != nil {
		logger := m.logger.WithError(err).WithFields(log.Fields{"container": ev.info.ContainerID, "pid": ev.info.Pid})
		if errdefs.IsNotFound(err) {
			logger.Debug("exit 137: no memory cgroup to check for an OOM kill")
		} else {
			logger.Warn("exit 137: cannot check the memory cgroup for an OOM kill")
		}
		return
	}
	if killed {
		m.logger.WithFields(log.Fields{"container": ev.info.ContainerID, "pid": ev.info.Pid}).Debug("exit 137: the memory cgroup recorded an OOM kill")
	}
	ev.oomKilled = killed
}

// oomKilled reports whether the memory cgroup of containerID's task
// recorded an OOM kill, from containerd's task metrics. The task is
// stopped but not deleted when its exit is checked: the engine deletes it
// only once it has the exit, and its cgroup, with the counter, lives until
// then.
func (m *eventMonitor) oomKilled(ctx context.Context, containerID string) (bool, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, m.ns), oomCheckTimeout)
	defer cancel()
	resp, err := m.conn.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + containerID}})
	if err != nil {
		return false, fmt.Errorf("metrics of task %s: %w", containerID, wrapError(err))
	}
	for _, mt := range resp.Metrics {
		if mt.ID != containerID || mt.Data == nil {
			continue
		}
		v, err := typeurl.UnmarshalAny(mt.Data)
		if err != nil {
			return false, fmt.Errorf("metrics of task %s: decode %s: %w", containerID, mt.Data.GetTypeUrl(), err)
		}
		killed, ok := oomKillRecorded(v)
		if !ok {
			return false, fmt.Errorf("metrics of task %s: no OOM kill counter in %T: %w", containerID, v, errdefs.ErrNotImplemented)
		}
		return killed, nil
	}
	return false, fmt.Errorf("metrics of task %s: %w", containerID, errdefs.ErrNotFound)
}
