package libcontainerd

import (
	"context"
	"fmt"
	"syscall"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/ctrkit/libcontainerd/types"
)

// process is an exec process of a task.
type process struct {
	c8dProc containerd.Process
	ctr     *container
}

var _ types.Process = (*process)(nil)

func (p *process) errorf(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s exec %s of container %s: %w", op, p.c8dProc.ID(), p.ctr.c8dCtr.ID(), wrapError(err))
}

// Pid returns the process's pid.
func (p *process) Pid() uint32 { return p.c8dProc.Pid() }

// Kill sends signal to the process.
func (p *process) Kill(ctx context.Context, signal syscall.Signal) error {
	return p.errorf("kill", p.c8dProc.Kill(p.ctr.client.withNamespace(ctx), signal))
}

// Resize changes the size of the process's terminal.
func (p *process) Resize(ctx context.Context, width, height uint32) error {
	return p.errorf("resize", p.c8dProc.Resize(p.ctr.client.withNamespace(ctx), width, height))
}

// Delete deletes the exited process, closing its IO, and returns its exit
// status.
//
// The engine has the exit status from here on: no exit event follows for
// this process. When containerd is unavailable the error is returned and
// the client completes the delete once containerd serves again.
func (p *process) Delete(ctx context.Context) (*containerd.ExitStatus, error) {
	ctrID, id := p.ctr.c8dCtr.ID(), p.c8dProc.ID()
	var status *containerd.ExitStatus
	retry := func(ctx context.Context) error {
		st, err := retryDelete(p.ctr.client.withNamespace(ctx), p.c8dProc)
		p.ctr.client.events.deletedUnseen(ctrID, id, p.c8dProc.Pid(), st)
		return err
	}
	err := p.ctr.client.events.deleteThroughAPI(ctrID, id, p.c8dProc.Pid(), deleteTarget{containerID: ctrID, processID: id}, retry, func() error {
		s, err := p.c8dProc.Delete(p.ctr.client.withNamespace(ctx))
		status = s
		return wrapError(err)
	})
	if err != nil {
		return nil, p.errorf("delete", err)
	}
	return status, nil
}
