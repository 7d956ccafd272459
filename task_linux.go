package libcontainerd

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	// The metrics types of both cgroup versions are registered with typeurl
	// by importing them, so Task.Stats decodes them without the importer's
	// help (moby's copy fails with "type with url
	// io.containerd.cgroups.v1.Metrics: not found" otherwise).
	_ "github.com/containerd/cgroups/v3/cgroup1/stats"
	_ "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/ctrkit/libcontainerd/types"
)

// fillSummary fills the summary of one process; on Linux there are no
// details to report.
func fillSummary(*types.Summary, containerd.ProcessInfo) error {
	return nil
}

// UpdateResources changes the task's resource limits.
func (t *task) UpdateResources(ctx context.Context, resources *types.Resources) error {
	if resources == nil {
		return fmt.Errorf("update task %s: resources are nil: %w", t.c8dTask.ID(), errdefs.ErrInvalidArgument)
	}
	return t.errorf("update", t.c8dTask.Update(t.ctx(ctx), containerd.WithResources(resources)))
}
