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

// fillSummary fills the summary of one process from the details the
// runhcs shim reports.
func fillSummary(s *types.Summary, p containerd.ProcessInfo) error {
	s.ProcessID = p.Pid
	if p.Info == nil {
		return nil
	}
	v, err := typeurl.UnmarshalAny(p.Info)
	if err != nil {
		return fmt.Errorf("decode process details of pid %d: %w", p.Pid, err)
	}
	pd, ok := v.(*options.ProcessDetails)
	if !ok {
		return fmt.Errorf("process details of pid %d have type %T: %w", p.Pid, v, errdefs.ErrNotImplemented)
	}
	s.ImageName = pd.ImageName
	s.CreatedAt = pd.CreatedAt
	s.KernelTime_100Ns = pd.KernelTime_100Ns
	s.MemoryCommitBytes = pd.MemoryCommitBytes
	s.MemoryWorkingSetPrivateBytes = pd.MemoryWorkingSetPrivateBytes
	s.MemoryWorkingSetSharedBytes = pd.MemoryWorkingSetSharedBytes
	s.ProcessID = pd.ProcessID
	s.UserTime_100Ns = pd.UserTime_100Ns
	s.ExecID = pd.ExecID
	return nil
}

// UpdateResources is not available on Windows, as with moby.
func (t *task) UpdateResources(context.Context, *types.Resources) error {
	return fmt.Errorf("update task %s: %w", t.c8dTask.ID(), errdefs.ErrNotImplemented)
}
