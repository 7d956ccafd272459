package libcontainerd

import (
	"context"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/ctrkit/libcontainerd/types"
)

// eventMonitor is the client's event machinery: one subscription to the
// namespace's task events kept alive across containerd restarts
// (events_stream.go), the exactly-once process store that decides what
// reaches the engine (events_store.go), delivery to the Backend through the
// per-container queue (events_delivery.go), and the deletes it completes
// after an outage (events_deletes.go). start runs it; close stops it and
// returns when none of its goroutines runs any more.
type eventMonitor struct {
	ns        string
	syncTopic string
	logger    *log.Entry
	opts      clientOptions

	// conn carries the event stream, reconciliation and deferred deletes
	// (see newEventClient); closeConn releases it when the loop ends.
	conn      *containerd.Client
	closeConn func()
	// engine is the engine's own client (the one it handed to New), on
	// which its calls run: see engineServing.
	engine *containerd.Client

	counters    eventCounters
	store       *processStore
	delivery    *delivery
	deletes     *deferredDeletes
	oomCounters *oomCounters

	runCtx    context.Context // the loop's; ends with close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the stream loop and the deferred-delete worker
	closeOnce sync.Once
	closeErr  error
}

func newEventMonitor(cli *containerd.Client, ns string, b types.Backend, logger *log.Entry, opts clientOptions) *eventMonitor {
	m := &eventMonitor{
		ns:        ns,
		syncTopic: newSyncTopic(),
		logger:    logger,
		opts:      opts,
	}
	m.delivery = newDelivery(b, logger, opts, &m.counters)
	m.store = newProcessStore(opts.tombstoneTTL, opts.tombstoneMax, &m.counters, m.delivery.enqueue)
	m.deletes = newDeferredDeletes(logger, &m.counters, opts.beforeDeferredDeletes)
	m.oomCounters = newOOMCounters(opts.tombstoneMax)
	m.conn, m.closeConn = newEventClient(cli, ns)
	m.engine = cli
	return m
}

// start runs the event loop until ctx ends or close is called: the loop
// ends with the engine's ctx, as with moby.
func (m *eventMonitor) start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.runCtx = ctx
	m.store.checkOOM = m.startOOMCheck
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		defer m.closeConn()
		m.run(ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.deletes.run(ctx)
	}()
}

// close stops the subscription and the deferred deletes, then delivers or
// abandons the queued events according to the close policy and ctx.
func (m *eventMonitor) close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.deletes.abandon()
		m.closeErr = m.delivery.close(ctx)
	})
	return m.closeErr
}

// taskEvent is a containerd task event in the Backend's terms.
type taskEvent struct {
	typ  types.EventType
	info types.EventInfo
	// deleted marks a TaskDelete: not delivered, but it ends the process
	// and carries its exit status.
	deleted bool
	// synthesized marks an exit that did not come from a TaskExit
	// (reconciliation, or a TaskDelete), or an EventOOM of the client's
	// making.
	synthesized bool
	// oomKilled marks an exit whose container's memory cgroup recorded an
	// OOM kill, checked because processStore.oomCheckDue asked for it.
	oomKilled bool
	// at is when containerd published the event; zero when unknown.
	at time.Time
}

// mapEvent translates a decoded containerd event. ok is false for events
// the Backend does not receive.
func mapEvent(v any) (ev taskEvent, ok bool) {
	switch e := v.(type) {
	case *apievents.TaskCreate:
		return taskEvent{typ: types.EventCreate, info: types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ContainerID, Pid: e.Pid}}, true
	case *apievents.TaskStart:
		return taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ContainerID, Pid: e.Pid}}, true
	case *apievents.TaskExit:
		return taskEvent{typ: types.EventExit, info: types.EventInfo{
			ContainerID: e.ContainerID, ProcessID: processIDOf(e.ContainerID, e.ID), Pid: e.Pid,
			ExitCode: e.ExitStatus, ExitedAt: e.ExitedAt.AsTime(),
		}}, true
	case *apievents.TaskOOM:
		return taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: e.ContainerID}}, true
	case *apievents.TaskExecAdded:
		return taskEvent{typ: types.EventExecAdded, info: types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ExecID}}, true
	case *apievents.TaskExecStarted:
		return taskEvent{typ: types.EventExecStarted, info: types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ExecID, Pid: e.Pid}}, true
	case *apievents.TaskPaused:
		return taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: e.ContainerID}}, true
	case *apievents.TaskResumed:
		return taskEvent{typ: types.EventResumed, info: types.EventInfo{ContainerID: e.ContainerID}}, true
	case *apievents.TaskDelete:
		return taskEvent{deleted: true, info: types.EventInfo{
			ContainerID: e.ContainerID, ProcessID: processIDOf(e.ContainerID, e.ID), Pid: e.Pid,
			ExitCode: e.ExitStatus, ExitedAt: e.ExitedAt.AsTime(),
		}}, true
	}
	return taskEvent{}, false
}

// processIDOf names the process of an event: containerd leaves the ID empty
// or sets it to the container ID for the init process.
func processIDOf(containerID, id string) string {
	if id == "" {
		return containerID
	}
	return id
}

// handleEnvelope decodes one event from the stream and hands it to the
// store. It runs on the event loop only, so that the store sees the
// stream's events in the stream's order.
func (m *eventMonitor) handleEnvelope(env *events.Envelope) {
	if env == nil || env.Event == nil {
		m.logger.WithField("event", env).Warn("invalid event")
		return
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		m.logger.WithError(err).WithField("topic", env.Topic).Warn("failed to unmarshal event")
		return
	}
	ev, ok := mapEvent(v)
	if !ok {
		m.logger.WithField("topic", env.Topic).Debug("ignoring event")
		return
	}
	if ev.info.ContainerID == "" {
		m.logger.WithField("topic", env.Topic).Warn("ignoring event without container id")
		return
	}
	ev.at = env.Timestamp
	if m.opts.loseStreamEvent != nil && m.opts.loseStreamEvent(ev) {
		return
	}
	m.counters.received.Add(1)
	m.store.handle(ev)
}

// deleteThroughAPI runs del, a delete the engine asked for of p, the task
// or an exec of container containerID, so that the exit status it returns
// counts as delivered: the container's events wait while it runs, and on
// success that incarnation gets no exit event from any source. A delete
// that failed because containerd was unavailable is completed later (with
// opts), once containerd serves again; nobody gets the status of that
// one, which delivers the exit if it is still owed.
func (m *eventMonitor) deleteThroughAPI(containerID string, p containerd.Process, del func() error, opts ...containerd.ProcessDeleteOpts) error {
	processID, pid := p.ID(), p.Pid() // a task's ID is its container's
	hold := m.store.deleteStarted(containerID)
	err := del()
	m.store.deleteDone(hold, containerID, processID, pid, err == nil)
	if err == nil {
		return nil
	}
	what := deleteTarget{containerID: containerID}
	if processID != containerID {
		what.processID = processID
	}
	m.deletes.deferIfUnavailable(what, err, func(ctx context.Context) error {
		// The client's only delete option is ForceDelete's kill.
		st, err := m.retryDelete(namespaces.WithNamespace(ctx, m.ns), containerID, p, len(opts) > 0, opts...)
		m.deletedUnseen(containerID, processID, pid, st)
		return err
	})
	return err
}

// deletedUnseen records a delete of incarnation pid of (containerID,
// processID) that the client made on its own behalf (ReplaceContainer's, a
// deferred delete completed), which returned st. Nobody receives that
// status, so the exit is delivered from it unless it was delivered
// already: the TaskExit and TaskDelete that would carry it can be lost
// (containerd 2.x drops the events of a shim that shuts down right after
// the delete).
func (m *eventMonitor) deletedUnseen(containerID, processID string, pid uint32, st *containerd.ExitStatus) {
	if st == nil || pid == 0 {
		return
	}
	m.store.handle(taskEvent{deleted: true, info: types.EventInfo{
		ContainerID: containerID, ProcessID: processID, Pid: pid,
		ExitCode: st.ExitCode(), ExitedAt: st.ExitTime(),
	}})
}
