//go:build !linux && !windows

package libcontainerd

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/ctrkit/libcontainerd/types"
)

// fillSummary fills the summary of one process; this platform has no
// details to report.
func fillSummary(*types.Summary, containerd.ProcessInfo) error {
	return nil
}

// UpdateResources is not available: the OCI runtime spec defines no
// updatable resources on this platform.
func (t *task) UpdateResources(context.Context, *types.Resources) error {
	return fmt.Errorf("update task %s: %w", t.c8dTask.ID(), errdefs.ErrNotImplemented)
}
