package libcontainerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ctrkit/libcontainerd/types"
)

// envNoClean keeps bundle directories after Container.Delete, for
// debugging, as in moby.
const envNoClean = "LIBCONTAINERD_NOCLEAN"

type container struct {
	client *Client
	c8dCtr containerd.Container

	// runcOptions are the runtime options the container was created with
	// by this client; nil for loaded containers, whose options are read
	// from containerd when a task is created.
	runcOptions *runcoptions.Options
}

var _ types.Container = (*container)(nil)

// NewTask creates the container's task with FIFOs in its bundle directory
// and hands them to attachStdio; it does not start it.
func (c *container) NewTask(ctx context.Context, checkpointDir string, withStdin bool, attachStdio types.StdioCallback) (_ types.Task, retErr error) {
	id := c.c8dCtr.ID()
	ctx, end := startSpan(c.client.withNamespace(ctx), "libcontainerd.NewTask",
		attribute.String("container.id", id), attribute.Bool("stdin", withStdin), attribute.Bool("checkpoint", checkpointDir != ""))
	defer end(&retErr)

	if attachStdio == nil {
		return nil, fmt.Errorf("new task %s: stdio callback is nil: %w", id, errdefs.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		// Before the stdio callback runs: containerd's client calls it
		// before its first request.
		return nil, fmt.Errorf("new task %s: %w", id, err)
	}
	md, spec, err := c.info(ctx)
	if err != nil {
		return nil, err
	}
	bundle, err := c.bundle(md)
	if err != nil {
		return nil, err
	}
	runcOpts, err := c.taskRuncOptions(md, spec)
	if err != nil {
		return nil, err
	}

	release, err := c.client.reserve(id, id)
	if err != nil {
		return nil, err
	}
	defer release()
	// A task that exists owns the FIFOs at our paths: asked only when a
	// FIFO is in the way, so that the common path costs no round trip.
	taskExists := func() error {
		if _, err := c.c8dCtr.Task(ctx, nil); err == nil {
			return fmt.Errorf("new task %s: task already exists: %w", id, errdefs.ErrConflict)
		} else if !errdefs.IsNotFound(wrapError(err)) {
			return fmt.Errorf("new task %s: %w", id, wrapError(err))
		}
		return nil
	}

	taskOpts := []containerd.NewTaskOpts{func(_ context.Context, _ *containerd.Client, info *containerd.TaskInfo) error {
		if runcOpts != nil {
			info.Options = runcOpts
		}
		return nil
	}}
	if checkpointDir != "" {
		opt, cleanup, err := c.client.uploadCheckpoint(ctx, checkpointDir)
		if err != nil {
			return nil, fmt.Errorf("new task %s: %w", id, err)
		}
		defer cleanup()
		taskOpts = append(taskOpts, opt)
	}

	handoff := newProcessHandoff()
	defer handoff.abandon()
	fifoCfg := fifoPaths(bundle, id, withStdin, spec.Process.Terminal)
	var tio *taskIO
	createdAt := time.Now()
	t, err := c.c8dCtr.NewTask(ctx, func(string) (cio.IO, error) {
		fifos, err := newFIFOSet(fifoOwner{c.client.logger, id, ""}, fifoCfg, taskExists)
		if err != nil {
			return nil, err
		}
		rio, err := c.client.processIO(ctx, fifos, handoff, attachStdio)
		if err != nil {
			return nil, err
		}
		tio = &taskIO{IO: rio, client: c.client}
		return tio, nil
	}, taskOpts...)
	if err != nil {
		// containerd cancels and closes the IO (removing the FIFOs) itself.
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("new task %s: task already exists: %w", id, errdefs.ErrConflict)
		}
		return nil, fmt.Errorf("new task %s: %w", id, wrapError(err))
	}
	handoff.created(t)
	// A task created from a checkpoint is restored, and runs, only when
	// started (runc restores at Start): until then it is created, like any
	// other, and Task.Start records its start.
	c.client.events.store.observeCreate(id, id, t.Pid(), createdAt)
	return &task{c8dTask: t, ctr: c, io: tio}, nil
}

// Task returns the container's task without attaching to its IO.
func (c *container) Task(ctx context.Context) (types.Task, error) {
	loadedAt := time.Now()
	t, err := c.c8dCtr.Task(c.client.withNamespace(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("task of container %s: %w", c.c8dCtr.ID(), wrapError(err))
	}
	c.client.events.store.observeLoaded(c.c8dCtr.ID(), t.Pid(), loadedAt)
	return &task{c8dTask: t, ctr: c}, nil
}

// AttachTask opens the running task's FIFOs again for a new reader, the
// case of an engine that restarted while its containers kept running. A
// failed attach leaves the FIFOs to the task, for the next AttachTask.
func (c *container) AttachTask(ctx context.Context, attachStdio types.StdioCallback) (types.Task, error) {
	ctx = c.client.withNamespace(ctx)
	id := c.c8dCtr.ID()
	if attachStdio == nil {
		return nil, fmt.Errorf("attach task %s: stdio callback is nil: %w", id, errdefs.ErrInvalidArgument)
	}
	handoff := newProcessHandoff()
	defer handoff.abandon()
	var tio *taskIO
	loadedAt := time.Now()
	t, err := c.c8dCtr.Task(ctx, func(fifos *cio.FIFOSet) (cio.IO, error) {
		// containerd's set removes the FIFOs (and the bundle, if that
		// empties it) on Close, which the IO does on error too: only an
		// attached IO may remove them, when the task is deleted.
		var attached atomic.Bool
		own := cio.NewFIFOSet(fifos.Config, func() error {
			if !attached.Load() {
				return nil
			}
			return fifos.Close()
		})
		rio, err := c.client.processIO(ctx, own, handoff, attachStdio)
		if err != nil {
			return nil, err
		}
		attached.Store(true)
		tio = &taskIO{IO: rio, client: c.client}
		return tio, nil
	})
	if err != nil {
		return nil, fmt.Errorf("attach task %s: %w", id, wrapError(err))
	}
	handoff.created(t)
	c.client.events.store.observeLoaded(id, t.Pid(), loadedAt)
	return &task{c8dTask: t, ctr: c, io: tio}, nil
}

// Delete removes the container from containerd, then its bundle directory
// unless LIBCONTAINERD_NOCLEAN=1.
//
// When containerd is unavailable the error is returned and the client
// completes the delete once containerd serves again, if the container then
// has no task.
func (c *container) Delete(ctx context.Context) error {
	err := c.delete(ctx)
	if err != nil {
		target := deleteTarget{container: true, containerID: c.c8dCtr.ID()}
		c.client.events.deletes.deferIfUnavailable(target, err, c.completeDelete)
	}
	return err
}

// completeDelete completes a container delete that containerd could not
// serve. A task that containerd created while the engine's NewTask failed
// (containerd killed mid-call) blocks it: the engine never got that task,
// so it cannot delete it, and its shim would stay. Such a task, never
// started and never handed out, is deleted first; any other task is the
// engine's, and the delete is given up.
//
// The delete is of the container the engine asked to delete, not of its
// ID: a container made anew under that ID since (ReplaceContainer after
// containerd came back) is left alone.
func (c *container) completeDelete(ctx context.Context) error {
	if err := c.sameIncarnation(ctx); err != nil {
		return err
	}
	err := c.delete(ctx)
	if errdefs.IsFailedPrecondition(err) {
		if terr := c.deleteUnclaimedTask(ctx); terr != nil {
			return errors.Join(err, terr)
		}
		err = c.delete(ctx)
	}
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// sameIncarnation checks that the container containerd has under the
// handle's ID is the handle's: created at the same time.
func (c *container) sameIncarnation(ctx context.Context) error {
	ctx = c.client.withNamespace(ctx)
	id := c.c8dCtr.ID()
	mine, err := c.c8dCtr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return wrapError(err)
	}
	now, err := c.client.c8dClient.ContainerService().Get(ctx, id)
	if err != nil {
		return wrapError(err)
	}
	if !mine.CreatedAt.IsZero() && !now.CreatedAt.Equal(mine.CreatedAt) {
		return fmt.Errorf("container %s was made anew (created %s, the deleted one %s): %w",
			id, now.CreatedAt.Format(time.RFC3339Nano), mine.CreatedAt.Format(time.RFC3339Nano), errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (c *container) deleteUnclaimedTask(ctx context.Context) error {
	ctx = c.client.withNamespace(ctx)
	id := c.c8dCtr.ID()
	t, err := c.c8dCtr.Task(ctx, nil)
	if err != nil {
		return wrapError(err)
	}
	st, err := t.Status(ctx)
	if err != nil {
		return wrapError(err)
	}
	if st.Status != containerd.Created || c.client.events.store.claimed(id, id, t.Pid()) {
		return fmt.Errorf("task of container %s is %s or was handed out: the engine's to delete: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(wrapError(err)) {
		return wrapError(err)
	}
	c.client.logger.WithField("container", id).Info("deleted a task containerd created while the engine's NewTask failed")
	return nil
}

func (c *container) delete(ctx context.Context) error {
	ctx = c.client.withNamespace(ctx)
	id := c.c8dCtr.ID()
	md, err := c.c8dCtr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return fmt.Errorf("delete container %s: %w", id, wrapError(err))
	}
	if err := c.c8dCtr.Delete(ctx); err != nil {
		return fmt.Errorf("delete container %s: %w", id, wrapError(err))
	}
	c.client.events.store.containerDeleted(id)
	c.client.events.oomCounters.forget(id)
	bundle := md.Labels[DockerContainerBundlePath]
	if bundle == "" || os.Getenv(envNoClean) == "1" {
		return nil
	}
	if !ownsBundle(md, bundle) {
		c.client.logger.WithFields(log.Fields{"container": id, "bundle": bundle}).Warn("not removing unexpected bundle path")
		return nil
	}
	if fi, err := os.Lstat(bundle); err == nil && fi.IsDir() {
		if err := os.RemoveAll(bundle); err != nil {
			c.client.logger.WithError(err).WithFields(log.Fields{"container": id, "bundle": bundle}).Error("failed to remove bundle")
		}
	}
	return nil
}

// info reads the container's metadata and spec. It assumes the metadata has
// not changed since the handle was made, saving a round trip.
func (c *container) info(ctx context.Context) (containers.Container, *specs.Spec, error) {
	id := c.c8dCtr.ID()
	md, err := c.c8dCtr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return md, nil, fmt.Errorf("container %s: %w", id, wrapError(err))
	}
	if md.Spec == nil {
		return md, nil, fmt.Errorf("container %s has no spec: %w", id, errdefs.ErrFailedPrecondition)
	}
	var spec specs.Spec
	if err := json.Unmarshal(md.Spec.GetValue(), &spec); err != nil {
		return md, nil, fmt.Errorf("container %s: decode spec: %w", id, errdefs.ErrFailedPrecondition)
	}
	if spec.Process == nil {
		return md, nil, fmt.Errorf("container %s: spec has no process: %w", id, errdefs.ErrFailedPrecondition)
	}
	return md, &spec, nil
}

// bundle returns the container's bundle directory from its label.
func (c *container) bundle(md containers.Container) (string, error) {
	b := md.Labels[DockerContainerBundlePath]
	if b == "" || !filepath.IsAbs(b) {
		return "", fmt.Errorf("container %s has no bundle label %s: %w", md.ID, DockerContainerBundlePath, errdefs.ErrFailedPrecondition)
	}
	return b, nil
}
