package libcontainerd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd"
	"github.com/ctrkit/libcontainerd/queue"
	"github.com/ctrkit/libcontainerd/types"
)

// The drop-in contract, checked by the compiler: an engine may assign
// these to variables of moby's exact function types, alias its own names
// to ours, and implement Backend with moby's method set.
var (
	_ func(context.Context, types.Client, string, *specs.Spec, string, interface{}, ...containerd.NewContainerOpts) (types.Container, error) = libcontainerd.ReplaceContainer
	_ func(string, *specs.Spec) containerd.NewContainerOpts                                                                                  = libcontainerd.WithBundle
	_ func(*cio.DirectIO) (cio.IO, error)                                                                                                    = types.StdioCallback(nil)
	_ func(time.Time, interface{}) *types.Stats                                                                                              = types.InterfaceToStats
	_ types.Backend                                                                                                                          = mobyBackend{}
	_ string                                                                                                                                 = libcontainerd.DockerContainerBundlePath
)

// mobyBackend is a Backend as an engine written for moby implements it.
type mobyBackend struct{}

func (mobyBackend) ProcessEvent(containerID string, event types.EventType, ei types.EventInfo) error {
	return nil
}

// An engine's own aliases of moby's names keep compiling against ours.
type (
	engineClient    = types.Client
	engineContainer = types.Container
	engineTask      = types.Task
	engineProcess   = types.Process
)

// TestDropInAPI calls the API the way code written against moby's
// libcontainerd does: NewClient with moby's five arguments, the queue's
// zero value, every EventInfo field and every event type by name.
func TestDropInAPI(t *testing.T) {
	newClient := func(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend) (engineClient, error) {
		return libcontainerd.NewClient(ctx, cli, stateDir, ns, b)
	}
	if _, err := newClient(context.Background(), nil, "/state", "ns", mobyBackend{}); err == nil {
		t.Fatal("NewClient accepted a nil containerd client")
	}

	var q queue.Queue
	ran := make(chan struct{})
	q.Append("c", func() { close(ran) })
	<-ran

	ei := types.EventInfo{ContainerID: "c", ProcessID: "p", Pid: 1, ExitCode: 2, ExitedAt: time.Unix(1, 0), Error: errors.New("x")}
	for _, et := range []types.EventType{types.EventUnknown, types.EventExit, types.EventOOM, types.EventCreate, types.EventStart,
		types.EventExecAdded, types.EventExecStarted, types.EventPaused, types.EventResumed} {
		if err := (mobyBackend{}).ProcessEvent(ei.ContainerID, et, ei); err != nil {
			t.Fatal(err)
		}
	}
	var (
		_ engineContainer
		_ engineTask
		_ engineProcess
		_ types.Resources
		_ types.Summary
		_ types.Checkpoints
	)
}
