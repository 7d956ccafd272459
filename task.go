package libcontainerd

import (
	"context"
	"fmt"
	goruntime "runtime"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ctrkit/libcontainerd/types"
)

// execCleanupTimeout bounds the deletion of an exec whose start failed. It
// is independent of the caller's context, which may be what failed.
const execCleanupTimeout = 45 * time.Second

type task struct {
	c8dTask containerd.Task
	ctr     *container
	io      *taskIO // nil for a task loaded without attaching
}

var _ types.Task = (*task)(nil)

func (t *task) ctx(ctx context.Context) context.Context { return t.ctr.client.withNamespace(ctx) }

func (t *task) errorf(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s task %s: %w", op, t.c8dTask.ID(), wrapError(err))
}

// Pid returns the pid of the task's init process.
func (t *task) Pid() uint32 { return t.c8dTask.Pid() }

// Start starts the task's init process.
func (t *task) Start(ctx context.Context) (retErr error) {
	ctx, end := startSpan(t.ctx(ctx), "libcontainerd.task.Start", attribute.String("container.id", t.c8dTask.ID()))
	defer end(&retErr)
	// containerd's Task.Start closes the task's IO on any error, removing
	// the FIFOs of a task that may well be running (a Start while
	// containerd restarts, or a second Start); the IO is closed by Delete.
	if t.io != nil {
		t.io.hold()
		defer t.io.release()
	}
	if err := t.c8dTask.Start(ctx); err != nil {
		if cerr := contextEnded(ctx); cerr != nil {
			// containerd 1.6's shim answers a start (a restore) that ran
			// past the deadline it was given without a class.
			return fmt.Errorf("start task %s: %w: %v", t.c8dTask.ID(), cerr, err)
		}
		return t.errorf("start", err)
	}
	t.ctr.client.events.store.observeStart(t.c8dTask.ID(), t.c8dTask.ID(), t.c8dTask.Pid())
	return nil
}

// Kill sends signal to the task's init process.
func (t *task) Kill(ctx context.Context, signal syscall.Signal) error {
	return t.errorf("kill", t.c8dTask.Kill(t.ctx(ctx), signal))
}

// Resize changes the size of the init process's terminal.
func (t *task) Resize(ctx context.Context, width, height uint32) error {
	return t.errorf("resize", t.c8dTask.Resize(t.ctx(ctx), width, height))
}

// Pause freezes the task.
func (t *task) Pause(ctx context.Context) error {
	return t.errorf("pause", t.c8dTask.Pause(t.ctx(ctx)))
}

// Resume thaws the task.
func (t *task) Resume(ctx context.Context) error {
	return t.errorf("resume", t.c8dTask.Resume(t.ctx(ctx)))
}

// Stats returns the task's cgroup metrics, decoded (see types.Stats).
func (t *task) Stats(ctx context.Context) (*types.Stats, error) {
	m, err := t.c8dTask.Metrics(t.ctx(ctx))
	if err != nil {
		return nil, t.errorf("stats of", err)
	}
	if m.Data == nil {
		return nil, fmt.Errorf("stats of task %s: no metrics: %w", t.c8dTask.ID(), errdefs.ErrNotFound)
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, fmt.Errorf("stats of task %s: decode %s: %w", t.c8dTask.ID(), m.Data.GetTypeUrl(), err)
	}
	return types.InterfaceToStats(m.Timestamp.AsTime(), v), nil
}

// Pids lists the processes of the task.
func (t *task) Pids(ctx context.Context) ([]containerd.ProcessInfo, error) {
	pids, err := t.c8dTask.Pids(t.ctx(ctx))
	return pids, t.errorf("pids of", err)
}

// Summary returns one entry per process of the task.
func (t *task) Summary(ctx context.Context) ([]types.Summary, error) {
	pids, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	// Filled in place: on Windows a Summary is a protobuf message, which
	// must not be copied.
	summaries := make([]types.Summary, len(pids))
	for i, p := range pids {
		if err := fillSummary(&summaries[i], p); err != nil {
			return nil, fmt.Errorf("summary of task %s: %w", t.c8dTask.ID(), err)
		}
	}
	return summaries, nil
}

// ForceDelete kills the task's processes and deletes the task.
//
// The engine has the exit status from here on: no exit event follows for
// this incarnation. When containerd is unavailable the error is returned
// and the client completes the delete once containerd serves again.
func (t *task) ForceDelete(ctx context.Context) error {
	_, err := t.delete(ctx, "force delete", containerd.WithProcessKill)
	return err
}

// forceDeleteStale kills and deletes the task of a container that
// ReplaceContainer replaces. The engine gets no exit status from it, so the
// exit is delivered as an event, as with moby.
func (t *task) forceDeleteStale(ctx context.Context) error {
	st, err := t.c8dTask.Delete(t.ctx(ctx), containerd.WithProcessKill)
	if err != nil {
		return t.errorf("force delete", err)
	}
	id := t.c8dTask.ID()
	t.ctr.client.events.deletedUnseen(id, id, t.c8dTask.Pid(), st)
	if t.io != nil {
		t.io.markDeleted()
	}
	return nil
}

// Status returns the task's status.
func (t *task) Status(ctx context.Context) (containerd.Status, error) {
	s, err := t.c8dTask.Status(t.ctx(ctx))
	if err == nil && s.Status == containerd.Created {
		t.ctr.client.events.store.observeCreatedStatus(t.c8dTask.ID(), t.c8dTask.Pid())
	}
	return s, t.errorf("status of", err)
}

// Delete deletes the stopped task, closing its IO, and returns its exit
// status. The engine has the exit status from here on: no exit event
// follows for this incarnation (an exit delivered before is not taken
// back). When containerd is unavailable the error is returned and the
// client completes the delete once containerd serves again.
func (t *task) Delete(ctx context.Context) (*containerd.ExitStatus, error) {
	return t.delete(ctx, "delete")
}

func (t *task) delete(ctx context.Context, op string, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	var status *containerd.ExitStatus
	err := t.ctr.client.events.deleteThroughAPI(t.c8dTask.ID(), t.c8dTask, func() error {
		s, err := t.deleteInContainerd(t.ctx(ctx), opts...)
		status = s
		return wrapError(err)
	}, opts...)
	if err != nil {
		return nil, t.errorf(op, err)
	}
	if t.io != nil {
		t.io.markDeleted()
	}
	return status, nil
}

// deleteInContainerd deletes the task in containerd. containerd's client
// asks for the task's status first, only to refuse a task that is not
// stopped. A task whose exit the engine had as an event is stopped: its
// delete goes straight to the task service, saving that round trip (one of
// the twelve of a container's life), with the IO handled in the order
// containerd's client handles it. Windows, whose runtime closes the IO
// differently, and a delete with options keep containerd's path.
func (t *task) deleteInContainerd(ctx context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	id := t.c8dTask.ID()
	if len(opts) > 0 || goruntime.GOOS == "windows" || !t.ctr.client.events.store.exitDelivered(id, id, t.c8dTask.Pid()) {
		return t.c8dTask.Delete(ctx, opts...)
	}
	if t.io != nil {
		// Stop an IO still opening its FIFOs and let the copying end:
		// the shim has closed its side of the pipes.
		t.io.Cancel()
		t.io.Wait()
	}
	r, err := t.ctr.client.c8dClient.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	if t.io != nil {
		_ = t.io.Close()
	}
	return containerd.NewExitStatus(r.ExitStatus, protobuf.FromTimestamp(r.ExitedAt), nil), nil
}

// Exec creates and starts exec processID in the task with FIFOs in the
// container's bundle directory, handed to attachStdio.
func (t *task) Exec(ctx context.Context, processID string, spec *specs.Process, withStdin bool, attachStdio types.StdioCallback) (_ types.Process, retErr error) {
	ctrID := t.c8dTask.ID()
	ctx, end := startSpan(t.ctx(ctx), "libcontainerd.task.Exec",
		attribute.String("container.id", ctrID), attribute.String("exec.id", processID), attribute.Bool("stdin", withStdin))
	defer end(&retErr)

	if err := validateID("exec", processID); err != nil {
		return nil, err
	}
	switch {
	case spec == nil:
		return nil, fmt.Errorf("exec %s: process spec is nil: %w", processID, errdefs.ErrInvalidArgument)
	case attachStdio == nil:
		return nil, fmt.Errorf("exec %s: stdio callback is nil: %w", processID, errdefs.ErrInvalidArgument)
	case processID == ctrID:
		// The init process's FIFOs have this name.
		return nil, fmt.Errorf("exec %s: id of the container's init process: %w", processID, errdefs.ErrConflict)
	}
	if err := ctx.Err(); err != nil {
		// Before the stdio callback runs: containerd's client calls it
		// before its first request.
		return nil, fmt.Errorf("exec %s: %w", processID, err)
	}
	md, err := t.ctr.c8dCtr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", processID, wrapError(err))
	}
	bundle, err := t.ctr.bundle(md)
	if err != nil {
		return nil, err
	}

	release, err := t.ctr.client.reserve(ctrID, processID)
	if err != nil {
		return nil, err
	}
	defer release()
	// A process that exists owns the FIFOs at our paths: asked only when a
	// FIFO is in the way, so that the common path costs no round trip.
	execExists := func() error {
		if _, err := t.c8dTask.LoadProcess(ctx, processID, nil); err == nil {
			return fmt.Errorf("exec %s: id already in use: %w", processID, errdefs.ErrConflict)
		} else if !errdefs.IsNotFound(wrapError(err)) {
			return fmt.Errorf("exec %s: %w", processID, wrapError(err))
		}
		return nil
	}

	handoff := newProcessHandoff()
	defer handoff.abandon()
	fifoCfg := fifoPaths(bundle, processID, withStdin, spec.Terminal)
	var pio cio.IO
	createdAt := time.Now()
	p, err := t.c8dTask.Exec(ctx, processID, spec, func(string) (cio.IO, error) {
		fifos, err := newFIFOSet(fifoOwner{t.ctr.client.logger, ctrID, processID}, fifoCfg, execExists)
		if err != nil {
			return nil, err
		}
		pio, err = t.ctr.client.processIO(ctx, fifos, handoff, attachStdio)
		return pio, err
	})
	if err != nil {
		// containerd closes the IO (removing the FIFOs) itself.
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("exec %s: id already in use: %w", processID, errdefs.ErrConflict)
		}
		return nil, fmt.Errorf("exec %s: %w", processID, wrapError(err))
	}
	// The shim opens an exec's stdin at start, so CloseIO is only possible
	// from then on.
	if err := p.Start(ctx); err != nil {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execCleanupTimeout)
		defer cancel()
		if _, derr := p.Delete(cleanupCtx); derr != nil && !errdefs.IsNotFound(wrapError(derr)) {
			t.ctr.client.logger.WithError(derr).WithField("container", ctrID).WithField("exec", processID).Warn("failed to delete exec that did not start")
		} else {
			// containerd publishes no TaskDelete of an exec: without this
			// its record would stay, one per failed start.
			t.ctr.client.events.store.execStartFailed(ctrID, processID, time.Now())
		}
		return nil, fmt.Errorf("start exec %s: %w", processID, wrapError(err))
	}
	handoff.created(p)
	t.ctr.client.events.store.observeCreate(ctrID, processID, p.Pid(), createdAt)
	t.ctr.client.events.store.observeStart(ctrID, processID, p.Pid())
	return &process{c8dProc: p, ctr: t.ctr, io: pio}, nil
}

// CreateCheckpoint checkpoints the task into checkpointDir (see
// checkpoint.go).
func (t *task) CreateCheckpoint(ctx context.Context, checkpointDir string, exit bool) (retErr error) {
	ctx, end := startSpan(t.ctx(ctx), "libcontainerd.task.CreateCheckpoint",
		attribute.String("container.id", t.c8dTask.ID()), attribute.Bool("exit", exit))
	defer end(&retErr)
	return t.ctr.client.downloadCheckpoint(ctx, t, checkpointDir, exit)
}
