package libcontainerd

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// ReplaceContainer creates container id, replacing a stale container with
// the same ID: on Conflict it loads the old container, force-deletes its
// task, deletes it and creates the new one again.
func ReplaceContainer(ctx context.Context, client types.Client, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (types.Container, error) {
	ctr, err := client.NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
	if err == nil || !errdefs.IsConflict(err) {
		return ctr, err
	}
	log.G(ctx).WithField("container", id).Debug("container id in use, removing the stale container")
	if err := removeStale(ctx, client, id); err != nil {
		return nil, err
	}
	return client.NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
}

// removeStale deletes container id and its task; a container or task that
// is already gone is fine.
func removeStale(ctx context.Context, client types.Client, id string) error {
	old, err := client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load stale container %s: %w", id, err)
	}
	t, err := old.Task(ctx)
	switch {
	case err == nil:
		del := t.ForceDelete
		if own, ok := t.(*task); ok {
			del = own.forceDeleteStale
		}
		if err := del(ctx); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task of stale container %s: %w", id, err)
		}
	case !errdefs.IsNotFound(err):
		// Without knowing whether a task exists the container cannot be
		// deleted: containerd would refuse with the same error.
		return fmt.Errorf("load task of stale container %s: %w", id, err)
	}
	if err := old.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete stale container %s: %w", id, err)
	}
	return nil
}
