package libcontainerd

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ctrkit/libcontainerd/types"
)

// taskTopics selects the task events of the namespace, as moby does.
const taskTopics = "topic~=|^/tasks/|"

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

// run subscribes to the namespace's task events and keeps the
// subscription alive until ctx ends: when the stream breaks it re-subscribes
// with exponential backoff, logging once per outage, and after every
// (re)subscription reconciles the state of the processes it knows.
func (m *eventMonitor) run(ctx context.Context) {
	var (
		backoff     = m.opts.reconnectMin
		outageStart time.Time
		attempts    int
		probe       = &serveProbe{client: m.conn}
	)
	for {
		connected := false
		err := m.subscribe(ctx, func() {
			connected = true
			if !outageStart.IsZero() {
				m.counters.reconnects.Add(1)
				m.logger.WithFields(log.Fields{"outage": time.Since(outageStart).Round(time.Millisecond), "attempts": attempts}).Info("event stream restored")
			}
			outageStart, attempts, backoff = time.Time{}, 0, m.opts.reconnectMin
		})
		if ctx.Err() != nil {
			return
		}
		if connected || outageStart.IsZero() {
			outageStart = time.Now()
			m.logger.WithError(err).Warn("event stream interrupted, reconnecting")
		} else {
			m.logger.WithError(err).Debug("event stream still down")
		}
		attempts++
		if !probe.wait(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, m.opts.reconnectMax)
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
func (m *eventMonitor) subscribe(ctx context.Context, ready func()) error {
	subCtx, cancel := context.WithCancel(namespaces.WithNamespace(ctx, m.ns))
	defer cancel()
	evC, errC := m.conn.EventService().Subscribe(subCtx,
		"namespace=="+m.ns+","+taskTopics,
		"namespace=="+m.ns+",topic~=|^"+m.syncTopic+"$|",
	)
	markerErr := make(chan error, 1)
	stopMarkers := make(chan struct{})
	markersDone := make(chan struct{})
	go func() {
		defer close(markersDone)
		markerErr <- m.publishMarkers(subCtx, stopMarkers)
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
			if env.Topic == m.syncTopic {
				if !live {
					live = true
					close(stopMarkers)
					ready()
					m.engineServing(subCtx)
					m.reconcile(subCtx)
					m.deletes.kick()
				}
				continue
			}
			m.handleEnvelope(env)
		}
	}
}

// publishMarkers publishes a subscription marker now and again, more rarely
// each time, until stop is closed. It returns nil when stopped and the
// error of a publish that failed.
func (m *eventMonitor) publishMarkers(ctx context.Context, stop <-chan struct{}) error {
	delay := 10 * time.Millisecond
	for {
		if err := m.conn.EventService().Publish(ctx, m.syncTopic, &emptypb.Empty{}); err != nil {
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

// engineServingTimeout bounds how long, after a (re)subscription, the
// client waits for the engine's own connection before it delivers what it
// missed.
const engineServingTimeout = 5 * time.Second

// engineServing waits until the engine's own connection to containerd
// serves, when it is not the client's. The client's connection reconnects
// within a probe interval of containerd's return, the engine's can be in
// gRPC's reconnect backoff for seconds more. The exits reconciliation
// finds, and the deletes deferred during the outage, would reach the
// engine while its calls (the Delete and the restart its exit handler
// makes) still fail fast with Unavailable: the restart policy of a
// container would fail where, with moby's client, whose events come over
// the engine's connection, it does not. So the engine's connection is
// told to retry now, and waited for (bounded: events are not held for
// good by a connection that does not come back).
func (m *eventMonitor) engineServing(ctx context.Context) {
	if m.engine == m.conn {
		return
	}
	if cc, ok := m.engine.Conn().(*grpc.ClientConn); ok {
		cc.ResetConnectBackoff()
	}
	ctx, cancel := context.WithTimeout(ctx, engineServingTimeout)
	defer cancel()
	if ok, err := m.engine.IsServing(ctx); !ok || err != nil {
		m.logger.WithError(err).Warn("the engine's containerd connection does not serve yet: delivering what was missed anyway")
	}
}

// reconcile asks containerd about every process whose exit is owed to the
// engine; for those that stopped, or are gone, while events could not
// reach this client, it synthesizes the exit.
func (m *eventMonitor) reconcile(ctx context.Context) {
	for _, p := range m.store.pending() {
		req := &tasks.GetRequest{ContainerID: p.containerID}
		if p.processID != p.containerID {
			req.ExecID = p.processID
		}
		resp, err := m.conn.TaskService().Get(ctx, req)
		err = wrapError(err)
		info := types.EventInfo{ContainerID: p.containerID, ProcessID: p.processID, Pid: p.pid}
		switch {
		case ctx.Err() != nil:
			return
		case errdefs.IsNotFound(err):
			info.ExitCode, info.ExitedAt = 255, time.Now().UTC()
			info.Error = fmt.Errorf("exit status unknown: process was deleted while the event stream was down: %w", errdefs.ErrNotFound)
		case err != nil:
			m.logger.WithError(err).WithFields(log.Fields{"container": p.containerID, "process": p.processID}).Warn("reconcile: cannot get process state")
			continue
		case resp.Process.Pid != p.pid && resp.Process.Pid != 0:
			// A different incarnation: ours is gone, its status unknown.
			info.ExitCode, info.ExitedAt = 255, time.Now().UTC()
			info.Error = fmt.Errorf("exit status unknown: process was replaced while the event stream was down: %w", errdefs.ErrNotFound)
		case resp.Process.Status != tasktypes.Status_STOPPED:
			continue
		default:
			info.ExitCode, info.ExitedAt = resp.Process.ExitStatus, resp.Process.ExitedAt.AsTime()
		}
		// A stopped task is not deleted: its cgroup is still there for the
		// OOM check the store may ask for.
		m.store.handle(taskEvent{typ: types.EventExit, info: info, synthesized: true})
	}
}

func newSyncTopic() string {
	b := make([]byte, 8)
	_, _ = crand.Read(b)
	return "/libcontainerd/sync/" + hex.EncodeToString(b)
}
