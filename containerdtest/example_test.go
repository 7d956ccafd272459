package containerdtest_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/ctrkit/libcontainerd"
	"github.com/ctrkit/libcontainerd/containerdtest"
	"github.com/ctrkit/libcontainerd/types"
)

// exitBackend is the engine's side of libcontainerd: it hands the exits of
// init processes to the test.
type exitBackend chan types.EventInfo

func (b exitBackend) ProcessEvent(id string, et types.EventType, ei types.EventInfo) error {
	if et == types.EventExit && ei.ProcessID == id {
		b <- ei
	}
	return nil
}

// An engine's integration test: the engine (here a bare libcontainerd
// client) runs a container on a private containerd; containerd restarts
// under it; the container exits and the engine still sees the exit. In a
// test, containerdtest.New(t, cfg) replaces Start and the deferred Close,
// and d.Namespace(t) and d.Spec(t, ...) the namespace, rootfs and spec
// set-up.
func Example() {
	if err := engineTest(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// containerd restarted
	// echo exited with status 7
}

func engineTest(ctx context.Context) error {
	d, err := containerdtest.Start(ctx, containerdtest.Config{})
	if err != nil {
		return err
	}
	defer d.Close() // stops containerd, kills shims, removes runc state, cgroups and d.Dir

	const ns = "example"
	defer containerdtest.RemoveNamespace(ns) // runc's state and cgroups of ns, once its containers are gone
	ctx = namespaces.WithNamespace(ctx, ns)
	cli, err := containerd.New(d.Address)
	if err != nil {
		return err
	}
	defer cli.Close()

	exits := make(exitBackend, 1)
	engine, err := libcontainerd.New(ctx, cli, filepath.Join(d.Dir, "engine"), ns, exits)
	if err != nil {
		return err
	}
	defer engine.Close()

	rootfs := filepath.Join(d.Dir, "busybox")
	if err := containerdtest.BuildRootfs(rootfs, ""); err != nil {
		return err
	}
	// The container exits with the status of the first line on its stdin.
	spec, err := containerdtest.NewSpec(ctx, rootfs, "echo", []string{"sh", "-c", "read status; exit $status"})
	if err != nil {
		return err
	}
	ctr, err := engine.NewContainer(ctx, "echo", spec, "io.containerd.runc.v2", &runcoptions.Options{})
	if err != nil {
		return err
	}
	defer ctr.Delete(ctx)
	var stdin io.WriteCloser
	task, err := ctr.NewTask(ctx, "", true, func(dio *cio.DirectIO) (cio.IO, error) {
		stdin = dio.Stdin
		go io.Copy(io.Discard, dio.Stdout)
		go io.Copy(io.Discard, dio.Stderr)
		return dio, nil
	})
	if err != nil {
		return err
	}
	defer task.Delete(ctx)
	if err := task.Start(ctx); err != nil {
		return err
	}

	// containerd crashes and comes back; the shim and the container do not
	// notice.
	if err := d.Restart(ctx); err != nil {
		return err
	}
	fmt.Println("containerd restarted")

	fmt.Fprintln(stdin, 7)
	select {
	case ei := <-exits:
		fmt.Printf("%s exited with status %d\n", ei.ContainerID, ei.ExitCode)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("no exit event")
	}
	return nil
}
