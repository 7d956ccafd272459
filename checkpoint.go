package libcontainerd

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// uploadCheckpoint puts checkpointDir into the content store for a task
// restore and returns the task option that uses it and a cleanup that
// deletes the temporary blob.
func (c *Client) uploadCheckpoint(ctx context.Context, checkpointDir string) (containerd.NewTaskOpts, func(), error) {
	return nil, nil, fmt.Errorf("restore from checkpoint %s: not implemented yet: %w", checkpointDir, errdefs.ErrNotImplemented)
}

// downloadCheckpoint checkpoints t and unpacks the checkpoint into dir.
func (c *Client) downloadCheckpoint(ctx context.Context, t *task, dir string, exit bool) error {
	return fmt.Errorf("checkpoint task %s: not implemented yet: %w", t.c8dTask.ID(), errdefs.ErrNotImplemented)
}
