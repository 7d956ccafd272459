package libcontainerd

import (
	"context"
	"fmt"
	"syscall"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/ctrkit/libcontainerd/types"
)

// process is an exec process of a task.
type process struct {
	c8dProc containerd.Process
	ctr     *container
	io      cio.IO // the IO containerd's process holds too
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
	var status *containerd.ExitStatus
	err := p.ctr.client.events.deleteThroughAPI(p.ctr.c8dCtr.ID(), p.c8dProc, func() error {
		s, err := p.deleteInContainerd(p.ctr.client.withNamespace(ctx))
		status = s
		return wrapError(err)
	})
	if err != nil {
		return nil, p.errorf("delete", err)
	}
	return status, nil
}

// deleteInContainerd deletes the exec in containerd. containerd's client
// asks for the process's status first, only to refuse one that runs. An
// exec whose exit the engine had as an event has stopped: its delete goes
// straight to the task service, saving that round trip (one of the four
// of an exec), and the IO is then closed as containerd's client closes it.
func (p *process) deleteInContainerd(ctx context.Context) (*containerd.ExitStatus, error) {
	ctrID, id := p.ctr.c8dCtr.ID(), p.c8dProc.ID()
	if p.io == nil || !p.ctr.client.events.store.exitDelivered(ctrID, id, p.c8dProc.Pid()) {
		return p.c8dProc.Delete(ctx)
	}
	r, err := p.ctr.client.c8dClient.TaskService().DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: ctrID, ExecID: id})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	p.io.Cancel()
	p.io.Wait()
	_ = p.io.Close()
	return containerd.NewExitStatus(r.ExitStatus, protobuf.FromTimestamp(r.ExitedAt), nil), nil
}
