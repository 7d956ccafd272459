package main

import (
	"context"
	"io"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	mobyremote "github.com/docker/docker/libcontainerd/remote"
	mobytypes "github.com/docker/docker/libcontainerd/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/ctrkit/libcontainerd/types"
)

// newMobyClient is benchrun's moby arm: moby v28.5.2's own
// libcontainerd/remote client, the code this module succeeds, behind this
// module's types. moby's types have the shapes of this module's, so the
// adapters below only convert; every call goes to moby's code unchanged.
//
// moby's event loop runs until ctx is cancelled and is not joined: the
// caller cancels ctx when it is done with the client. Its log, which would
// report that cancellation as an error, is discarded: a failure the
// benchmark cares about comes back from a call.
func newMobyClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend) (types.Client, error) {
	quiet := logrus.New()
	quiet.Out = io.Discard
	quiet.Level = logrus.ErrorLevel
	ctx = log.WithLogger(ctx, logrus.NewEntry(quiet))
	c, err := mobyremote.NewClient(ctx, cli, stateDir, ns, mobyBackend{b})
	if err != nil {
		return nil, err
	}
	return mobyClient{c}, nil
}

// mobyBackend hands moby's events to a Backend of this module.
type mobyBackend struct{ b types.Backend }

func (m mobyBackend) ProcessEvent(containerID string, et mobytypes.EventType, ei mobytypes.EventInfo) error {
	return m.b.ProcessEvent(containerID, types.EventType(et), types.EventInfo(ei))
}

type mobyClient struct{ mobytypes.Client }

var _ types.Client = mobyClient{}

func (m mobyClient) LoadContainer(ctx context.Context, id string) (types.Container, error) {
	c, err := m.Client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return mobyContainer{c}, nil
}

func (m mobyClient) NewContainer(ctx context.Context, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (types.Container, error) {
	c, err := m.Client.NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
	if err != nil {
		return nil, err
	}
	return mobyContainer{c}, nil
}

type mobyContainer struct{ mobytypes.Container }

var _ types.Container = mobyContainer{}

func (m mobyContainer) NewTask(ctx context.Context, checkpointDir string, withStdin bool, attachStdio types.StdioCallback) (types.Task, error) {
	t, err := m.Container.NewTask(ctx, checkpointDir, withStdin, mobytypes.StdioCallback(attachStdio))
	if err != nil {
		return nil, err
	}
	return mobyTask{t}, nil
}

func (m mobyContainer) Task(ctx context.Context) (types.Task, error) {
	t, err := m.Container.Task(ctx)
	if err != nil {
		return nil, err
	}
	return mobyTask{t}, nil
}

func (m mobyContainer) AttachTask(ctx context.Context, attachStdio types.StdioCallback) (types.Task, error) {
	t, err := m.Container.AttachTask(ctx, mobytypes.StdioCallback(attachStdio))
	if err != nil {
		return nil, err
	}
	return mobyTask{t}, nil
}

type mobyTask struct{ mobytypes.Task }

var _ types.Task = mobyTask{}

func (m mobyTask) Stats(ctx context.Context) (*types.Stats, error) {
	s, err := m.Task.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &types.Stats{Read: s.Read, Metrics: s.Metrics}, nil
}

func (m mobyTask) Summary(ctx context.Context) ([]types.Summary, error) {
	s, err := m.Task.Summary(ctx)
	if err != nil {
		return nil, err
	}
	return make([]types.Summary, len(s)), nil
}

// Exec returns moby's process as it is: types.Process and moby's Process
// have the same methods.
func (m mobyTask) Exec(ctx context.Context, processID string, spec *specs.Process, withStdin bool, attachStdio types.StdioCallback) (types.Process, error) {
	p, err := m.Task.Exec(ctx, processID, spec, withStdin, mobytypes.StdioCallback(attachStdio))
	if err != nil {
		return nil, err
	}
	return p, nil
}
