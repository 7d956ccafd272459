package libcontainerd

import (
	"context"
	"fmt"

	"github.com/Microsoft/hcsshim/cmd/containerd-shim-runhcs-v1/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/ctrkit/libcontainerd/types"
)

// summaryOf returns the summary of one process from the details the runhcs
// shim reports.
func summaryOf(p containerd.ProcessInfo) (types.Summary, error) {
	if p.Info == nil {
		return types.Summary{ProcessID: p.Pid}, nil
	}
	v, err := typeurl.UnmarshalAny(p.Info)
	if err != nil {
		return types.Summary{}, fmt.Errorf("decode process details of pid %d: %w", p.Pid, err)
	}
	pd, ok := v.(*options.ProcessDetails)
	if !ok {
		return types.Summary{}, fmt.Errorf("process details of pid %d have type %T: %w", p.Pid, v, errdefs.ErrNotImplemented)
	}
	return types.Summary(*pd), nil
}

// UpdateResources is not available on Windows, as with moby.
func (t *task) UpdateResources(context.Context, *types.Resources) error {
	return fmt.Errorf("update task %s: %w", t.c8dTask.ID(), errdefs.ErrNotImplemented)
}
