package libcontainerd

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ctrkit/libcontainerd/types"
)

// taskTopics selects the task events of the namespace, as moby does.
const taskTopics = "topic~=|^/tasks/|"

// Metrics is a snapshot of the client's event counters.
type Metrics struct {
	Received     uint64 // task events read from containerd, TaskDelete (never delivered) included
	Delivered    uint64 // ProcessEvent calls that succeeded
	Deduplicated uint64 // events not delivered: repeated exits, starts after an exit
	Synthesized  uint64 // exits made up by reconciliation after a reconnect
	Retried      uint64 // ProcessEvent calls repeated after an error
	Dropped      uint64 // events given up: retries exhausted or abandoned on Close
	Reconnects   uint64 // times the event stream was re-established after breaking
	QueueDepth   int    // events queued or being delivered now
}

type eventCounters struct {
	received, delivered, deduplicated, synthesized, retried, dropped, reconnects atomic.Uint64
}

// Metrics returns a snapshot of the client's event counters.
func (c *Client) Metrics() Metrics {
	m := &c.counters
	return Metrics{
		Received:     m.received.Load(),
		Delivered:    m.delivered.Load(),
		Deduplicated: m.deduplicated.Load(),
		Synthesized:  m.synthesized.Load(),
		Retried:      m.retried.Load(),
		Dropped:      m.dropped.Load(),
		Reconnects:   m.reconnects.Load(),
		QueueDepth:   c.eventQ.Len(),
	}
}

// taskEvent is a containerd task event in the Backend's terms.
type taskEvent struct {
	typ  types.EventType
	info types.EventInfo
	// deleted marks a TaskDelete: not delivered, but it ends the process
	// and carries its exit status.
	deleted bool
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

// handleEnvelope decodes one event from the stream and dispatches it.
func (c *Client) handleEnvelope(env *events.Envelope) {
	if env == nil || env.Event == nil {
		c.logger.WithField("event", env).Warn("invalid event")
		return
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		c.logger.WithError(err).WithField("topic", env.Topic).Warn("failed to unmarshal event")
		return
	}
	ev, ok := mapEvent(v)
	if !ok {
		c.logger.WithField("topic", env.Topic).Debug("ignoring event")
		return
	}
	if ev.info.ContainerID == "" {
		c.logger.WithField("topic", env.Topic).Warn("ignoring event without container id")
		return
	}
	c.counters.received.Add(1)
	c.dispatch(ev, false)
}

// dispatch runs an event through the exactly-once bookkeeping and queues it
// for its container. synthesized marks exits that did not come from a
// TaskExit: reconciliation, a TaskDelete, or a delete through this library.
// Stream events are dispatched from the event loop only, so that the
// bookkeeping sees them in stream order.
func (c *Client) dispatch(ev taskEvent, synthesized bool) {
	if ev.deleted {
		// A TaskDelete can overtake the TaskExit of its process (the shim
		// forwards exits asynchronously), and a TaskExit can be lost in a
		// containerd restart; the delete carries the same exit status, so
		// an exit not yet delivered is delivered from it, once.
		if !c.events.deleted(ev.info) {
			return
		}
		ev = taskEvent{typ: types.EventExit, info: ev.info}
		synthesized = true
	} else if !c.events.accept(ev.typ, ev.info) {
		c.counters.deduplicated.Add(1)
		return
	}
	if synthesized {
		c.counters.synthesized.Add(1)
	}
	c.eventQ.Append(ev.info.ContainerID, func() { c.deliver(ev) })
}

// deletedThroughAPI records the exit status a successful Task.Delete,
// Task.ForceDelete or Process.Delete returned, so that the exit of a started
// process reaches the Backend even when containerd's TaskExit was lost.
func (c *Client) deletedThroughAPI(containerID, processID string, pid uint32, st interface {
	ExitCode() uint32
	ExitTime() time.Time
}) {
	c.dispatch(taskEvent{deleted: true, info: types.EventInfo{
		ContainerID: containerID, ProcessID: processID, Pid: pid,
		ExitCode: st.ExitCode(), ExitedAt: st.ExitTime(),
	}}, true)
}

// deliver calls the Backend, retrying with backoff on error. Later events of
// the container wait in the queue meanwhile.
func (c *Client) deliver(ev taskEvent) {
	logger := c.logger.WithFields(log.Fields{"container": ev.info.ContainerID, "event": ev.typ, "process": ev.info.ProcessID})
	backoff := c.opts.retryMinBackoff
	for attempt := 1; ; attempt++ {
		if c.abandoned() {
			c.counters.dropped.Add(1)
			return
		}
		err := c.backend.ProcessEvent(ev.info.ContainerID, ev.typ, ev.info)
		if err == nil {
			c.counters.delivered.Add(1)
			return
		}
		if attempt >= c.opts.retryAttempts {
			c.counters.dropped.Add(1)
			logger.WithError(err).WithField("attempts", attempt).Error("failed to process event, dropping it")
			return
		}
		logger.WithError(err).WithField("attempt", attempt).Warn("failed to process event, retrying")
		c.counters.retried.Add(1)
		select {
		case <-time.After(jitter(backoff)):
		case <-c.abandonC:
		}
		backoff = min(2*backoff, c.opts.retryMaxBackoff)
	}
}

func (c *Client) abandoned() bool {
	select {
	case <-c.abandonC:
		return true
	default:
		return false
	}
}

// closeQueue stops the queue and drains it or abandons what is queued,
// according to the close policy and ctx.
func (c *Client) closeQueue(ctx context.Context) error {
	c.eventQ.Close()
	if c.opts.closePolicy == CloseAbandon {
		close(c.abandonC)
		return c.eventQ.Wait(context.WithoutCancel(ctx))
	}
	err := c.eventQ.Wait(ctx)
	if err != nil {
		// Out of time: drop the rest, then wait for the event in flight.
		close(c.abandonC)
		_ = c.eventQ.Wait(context.WithoutCancel(ctx))
	}
	return err
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// eventConnBackoff is the gRPC reconnect policy of the client's own event
// connection: containerd's default waits up to the dial timeout between
// attempts, too long to deliver missed exits promptly after a restart.
var eventConnBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// newEventClient returns the containerd client the event stream and
// reconciliation use: a connection of the library's own, with a short
// reconnect backoff, when cli talks to a unix socket, else cli itself. The
// second result closes what was opened here.
func newEventClient(cli *containerd.Client, ns string) (*containerd.Client, func()) {
	conn, ok := cli.Conn().(*grpc.ClientConn)
	if !ok {
		return cli, func() {}
	}
	path, ok := strings.CutPrefix(conn.Target(), "unix://")
	if !ok {
		return cli, func() {}
	}
	own, err := containerd.New(path,
		containerd.WithDefaultNamespace(ns),
		containerd.WithExtraDialOpts([]grpc.DialOption{grpc.WithConnectParams(eventConnBackoff)}))
	if err != nil {
		return cli, func() {}
	}
	return own, func() { own.Close() }
}

// processEventStream subscribes to the namespace's task events and keeps the
// subscription alive until ctx ends: when the stream breaks it re-subscribes
// with exponential backoff, logging once per outage, and after every
// (re)subscription reconciles the state of the processes it knows.
func (c *Client) processEventStream(ctx context.Context) {
	defer close(c.loopDone)
	defer c.closeEventClient()
	var (
		backoff     = c.opts.reconnectMin
		outageStart time.Time
		attempts    int
		probe       = &serveProbe{client: c.eventClient}
	)
	for {
		connected := false
		err := c.subscribe(ctx, func() {
			connected = true
			if !outageStart.IsZero() {
				c.counters.reconnects.Add(1)
				c.logger.WithFields(log.Fields{"outage": time.Since(outageStart).Round(time.Millisecond), "attempts": attempts}).Info("event stream restored")
			}
			outageStart, attempts, backoff = time.Time{}, 0, c.opts.reconnectMin
		})
		if ctx.Err() != nil {
			return
		}
		if connected || outageStart.IsZero() {
			outageStart = time.Now()
			c.logger.WithError(err).Warn("event stream interrupted, reconnecting")
		} else {
			c.logger.WithError(err).Debug("event stream still down")
		}
		attempts++
		if !probe.wait(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, c.opts.reconnectMax)
	}
}

// probeInterval is how often, between reconnect attempts, the client asks
// whether containerd serves again. Each probe is one health check (or one
// failed dial while containerd is down); it lets the client resubscribe,
// and deliver what it missed, soon after containerd is back instead of
// after a backoff that may have grown to seconds.
const probeInterval = 100 * time.Millisecond

// serveProbe watches for containerd to serve again during an outage.
type serveProbe struct {
	client  *containerd.Client
	sawDown bool // a probe of this outage found containerd not serving
}

// wait waits for delay, returning early when containerd serves again after
// a probe saw it down. It returns false when ctx ends.
func (p *serveProbe) wait(ctx context.Context, delay time.Duration) bool {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	ticker := time.NewTicker(probeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-ticker.C:
			if !p.serving(ctx) {
				p.sawDown = true
				continue
			}
			if p.sawDown {
				p.sawDown = false
				return true
			}
		}
	}
}

func (p *serveProbe) serving(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, probeInterval)
	defer cancel()
	ok, err := p.client.IsServing(ctx)
	return err == nil && ok
}

// subscribe runs one subscription until it breaks or ctx ends. To know when
// the subscription is live (containerd does not say), it publishes markers
// on a topic of this client's own until one comes back, then calls ready and
// reconciles: any event published after that marker is in the stream, and
// any exit before it is visible to reconciliation. A marker published
// before containerd registered the subscription is lost, hence the repeats.
func (c *Client) subscribe(ctx context.Context, ready func()) error {
	subCtx, cancel := context.WithCancel(c.withNamespace(ctx))
	defer cancel()
	evC, errC := c.eventClient.EventService().Subscribe(subCtx,
		"namespace=="+c.ns+","+taskTopics,
		"namespace=="+c.ns+",topic~=|^"+c.syncTopic+"$|",
	)
	markerErr := make(chan error, 1)
	stopMarkers := make(chan struct{})
	markersDone := make(chan struct{})
	go func() {
		defer close(markersDone)
		markerErr <- c.publishMarkers(subCtx, stopMarkers)
	}()
	defer func() {
		cancel()
		<-markersDone
	}()

	live := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errC:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return wrapError(err)
		case err := <-markerErr:
			if err != nil {
				return fmt.Errorf("publish subscription marker: %w", wrapError(err))
			}
		case env := <-evC:
			if env.Topic == c.syncTopic {
				if !live {
					live = true
					close(stopMarkers)
					ready()
					c.reconcile(subCtx)
				}
				continue
			}
			c.handleEnvelope(env)
		}
	}
}

// publishMarkers publishes a subscription marker now and again, more rarely
// each time, until stop is closed. It returns nil when stopped and the
// error of a publish that failed.
func (c *Client) publishMarkers(ctx context.Context, stop <-chan struct{}) error {
	delay := 10 * time.Millisecond
	for {
		if err := c.eventClient.EventService().Publish(ctx, c.syncTopic, &emptypb.Empty{}); err != nil {
			select {
			case <-stop:
				return nil
			default:
				return err
			}
		}
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// reconcile asks containerd for every process this client knows whose exit
// it has not delivered; for those that stopped, or are gone, while events
// could not reach it, it synthesizes the exit.
func (c *Client) reconcile(ctx context.Context) {
	for _, p := range c.events.pending() {
		req := &tasks.GetRequest{ContainerID: p.containerID}
		if p.processID != p.containerID {
			req.ExecID = p.processID
		}
		resp, err := c.eventClient.TaskService().Get(ctx, req)
		err = wrapError(err)
		switch {
		case ctx.Err() != nil:
			return
		case errdefs.IsNotFound(err):
			c.dispatch(taskEvent{typ: types.EventExit, info: types.EventInfo{
				ContainerID: p.containerID, ProcessID: p.processID, Pid: p.pid,
				ExitCode: 255, ExitedAt: time.Now().UTC(),
				Error: fmt.Errorf("exit status unknown: process was deleted while the event stream was down: %w", errdefs.ErrNotFound),
			}}, true)
		case err != nil:
			c.logger.WithError(err).WithField("container", p.containerID).WithField("process", p.processID).Warn("reconcile: cannot get process state")
		case resp.Process.Status == tasktypes.Status_STOPPED:
			info := types.EventInfo{
				ContainerID: p.containerID, ProcessID: p.processID, Pid: p.pid,
				ExitCode: resp.Process.ExitStatus, ExitedAt: resp.Process.ExitedAt.AsTime(),
			}
			if resp.Process.Pid != p.pid && resp.Process.Pid != 0 {
				// A different incarnation stopped: ours is gone, its status
				// unknown.
				info.ExitCode, info.ExitedAt = 255, time.Now().UTC()
				info.Error = fmt.Errorf("exit status unknown: process was replaced while the event stream was down: %w", errdefs.ErrNotFound)
			}
			c.dispatch(taskEvent{typ: types.EventExit, info: info}, true)
		}
	}
}

func newSyncTopic() string {
	b := make([]byte, 8)
	_, _ = crand.Read(b)
	return "/libcontainerd/sync/" + hex.EncodeToString(b)
}

// procKey names a process: the init process has its container's ID.
type procKey struct{ containerID, processID string }

// procState is what the client remembers of one process for exactly-once
// exits.
type procState struct {
	pid     uint32   // pid of the incarnation seen last; 0 if unknown
	started bool     // that incarnation was started
	exited  []uint32 // pids whose exit was accepted, newest last (bounded)
	gone    bool     // deleted: kept as a tombstone for late events
}

// setPid records a new incarnation unless its exit was accepted already.
func (p *procState) setPid(pid uint32, started bool) {
	if pid == 0 || p.hasExited(pid) {
		return
	}
	if pid != p.pid {
		p.pid, p.started = pid, false
	}
	p.started = p.started || started
	p.gone = false
}

func (p *procState) markExited(pid uint32) {
	p.exited = append(p.exited, pid)
	if len(p.exited) > maxExitedPids {
		p.exited = p.exited[1:]
	}
}

// maxExitedPids bounds the exit history of one process ID (an ID reused by
// successive tasks or execs).
const maxExitedPids = 8

func (p *procState) hasExited(pid uint32) bool {
	for _, e := range p.exited {
		if e == pid {
			return true
		}
	}
	return false
}

// eventState is the exactly-once bookkeeping of one client. Deleted
// processes stay as tombstones for a while, because on containerd 2.x a
// TaskExit can arrive after the TaskDelete of its task; the number and age
// of tombstones is bounded.
type eventState struct {
	mu         sync.Mutex
	procs      map[procKey]*procState
	tombstones []tombstone // oldest first
	ttl        time.Duration
	max        int
	now        func() time.Time
}

type tombstone struct {
	key procKey
	at  time.Time
}

type pendingProcess struct {
	containerID, processID string
	pid                    uint32
}

func newEventState(ttl time.Duration, max int) *eventState {
	return &eventState{procs: make(map[procKey]*procState), ttl: ttl, max: max, now: time.Now}
}

func (s *eventState) get(k procKey) *procState {
	p := s.procs[k]
	if p == nil {
		p = &procState{}
		s.procs[k] = p
	}
	return p
}

// observe records that process pid exists, from an API call (NewTask,
// Task, AttachTask, Exec), so that reconciliation covers it even if none of
// its events was seen. started says whether it runs (or ran).
func (s *eventState) observe(containerID, processID string, pid uint32, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(procKey{containerID, processID}).setPid(pid, started)
}

// known reports whether pid is the current incarnation of the process.
func (s *eventState) known(containerID, processID string, pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[procKey{containerID, processID}]
	return p != nil && p.pid == pid && pid != 0
}

// accept reports whether an event is to be delivered, and records it: an
// exit is accepted once per (container, process, pid), and a create or
// start for a pid whose exit was accepted is dropped.
func (s *eventState) accept(typ types.EventType, info types.EventInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	switch typ {
	case types.EventCreate, types.EventStart, types.EventExecStarted:
		p := s.get(procKey{info.ContainerID, info.ProcessID})
		if p.hasExited(info.Pid) {
			return false
		}
		p.setPid(info.Pid, typ != types.EventCreate)
	case types.EventExit:
		p := s.get(procKey{info.ContainerID, info.ProcessID})
		if p.hasExited(info.Pid) {
			return false
		}
		p.markExited(info.Pid)
	}
	return true
}

// deleted records the deletion of a process (a TaskDelete, or a delete
// through the API) and reports whether it carries an exit to deliver: that
// of a started process whose exit was not accepted yet (which it then
// accepts). A process that never started has no exit to report.
func (s *eventState) deleted(info types.EventInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := procKey{info.ContainerID, info.ProcessID}
	p := s.get(k)
	exit := info.Pid != 0 && info.Pid == p.pid && p.started && !p.hasExited(info.Pid)
	if exit {
		p.markExited(info.Pid)
	}
	s.bury(k, p)
	return exit
}

// forgetContainer marks every process of a deleted container as gone.
func (s *eventState) forgetContainer(containerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.procs {
		if k.containerID == containerID {
			s.bury(k, p)
		}
	}
}

func (s *eventState) bury(k procKey, p *procState) {
	if p.gone {
		return
	}
	p.gone = true
	s.tombstones = append(s.tombstones, tombstone{key: k, at: s.now()})
	s.prune()
}

// prune forgets tombstones that are older than the TTL or beyond the bound.
// A process revived since it was buried (same ID, new pid) is kept.
func (s *eventState) prune() {
	now := s.now()
	n := 0
	for n < len(s.tombstones) && (len(s.tombstones)-n > s.max || now.Sub(s.tombstones[n].at) > s.ttl) {
		if p := s.procs[s.tombstones[n].key]; p != nil && p.gone {
			delete(s.procs, s.tombstones[n].key)
		}
		n++
	}
	if n > 0 {
		s.tombstones = append(s.tombstones[:0], s.tombstones[n:]...)
	}
}

// pending returns the started processes whose exit was not accepted and
// that are not deleted: the ones reconciliation asks about.
func (s *eventState) pending() []pendingProcess {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pendingProcess
	for k, p := range s.procs {
		if p.pid != 0 && p.started && !p.gone && !p.hasExited(p.pid) {
			out = append(out, pendingProcess{k.containerID, k.processID, p.pid})
		}
	}
	return out
}

// size returns the number of processes remembered, for tests.
func (s *eventState) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.procs)
}
