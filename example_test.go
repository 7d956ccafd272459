package libcontainerd_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd"
	"github.com/ctrkit/libcontainerd/types"
)

// exitBackend is an engine's Backend reduced to one thing: it reports the
// exits of one container's processes. ProcessEvent must not block for long:
// the container's later events wait behind it.
type exitBackend struct {
	containerID string
	exits       chan types.EventInfo
}

func newExitBackend(containerID string) *exitBackend {
	return &exitBackend{containerID: containerID, exits: make(chan types.EventInfo, 16)}
}

func (b *exitBackend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	if et == types.EventExit && containerID == b.containerID {
		b.exits <- ei
	}
	return nil
}

// copyStdio is a StdioCallback that copies the process's output to the
// engine's own and keeps the FIFOs as the task's IO.
func copyStdio(dio *cio.DirectIO) (cio.IO, error) {
	go io.Copy(os.Stdout, dio.Stdout)
	if dio.Stderr != nil { // nil on a terminal
		go io.Copy(os.Stderr, dio.Stderr)
	}
	return dio, nil
}

// connect is what Example does first: it connects to containerd and makes
// the engine's Client, with b as its Backend. closeAll closes both.
func connect(ctx context.Context, b types.Backend) (client *libcontainerd.Client, closeAll func()) {
	cli, err := containerd.New("/run/containerd/containerd.sock")
	if err != nil {
		log.Fatal(err)
	}
	client, err = libcontainerd.New(ctx, cli, "/run/engine/containerd", "engine", b)
	if err != nil {
		log.Fatal(err)
	}
	return client, func() {
		client.Close()
		cli.Close()
	}
}

// engineSpec is the OCI spec of container id running args in rootfs, a
// root filesystem the engine unpacked.
func engineSpec(ctx context.Context, id, rootfs string, args ...string) *specs.Spec {
	spec, err := oci.GenerateSpec(namespaces.WithNamespace(ctx, "engine"), nil, &containers.Container{ID: id},
		oci.WithRootFSPath(rootfs), oci.WithProcessArgs(args...))
	if err != nil {
		log.Fatal(err)
	}
	return spec
}

// Example runs a container to completion: create it, attach its output,
// start it, wait for its exit event, delete it.
func Example() {
	ctx := context.Background()
	cli, err := containerd.New("/run/containerd/containerd.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	const id = "hello"
	backend := newExitBackend(id)
	client, err := libcontainerd.New(ctx, cli, "/run/engine/containerd", "engine", backend)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	spec := engineSpec(ctx, id, "/srv/rootfs/busybox", "echo", "hello")
	ctr, err := client.NewContainer(ctx, id, spec, "io.containerd.runc.v2", &runcoptions.Options{})
	if err != nil {
		log.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, "", false, copyStdio)
	if err != nil {
		log.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		log.Fatal(err)
	}
	exit := <-backend.exits
	fmt.Println("exit code", exit.ExitCode)

	// Delete requires a stopped task; the exit event says it is.
	if _, err := task.Delete(ctx); err != nil {
		log.Fatal(err)
	}
	if err := ctr.Delete(ctx); err != nil {
		log.Fatal(err)
	}
}

// Example_exec runs a command in a running container, feeding it stdin.
// Closing the DirectIO's Stdin closes the process's stdin.
func Example_exec() {
	ctx := context.Background()
	backend := newExitBackend("web")
	client, closeAll := connect(ctx, backend)
	defer closeAll()

	ctr, err := client.LoadContainer(ctx, "web")
	if err != nil {
		log.Fatal(err)
	}
	task, err := ctr.Task(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var stdin io.WriteCloser
	proc, err := task.Exec(ctx, "wc-1", &specs.Process{Args: []string{"wc", "-l"}, Cwd: "/"}, true,
		func(dio *cio.DirectIO) (cio.IO, error) {
			stdin = dio.Stdin
			return copyStdio(dio)
		})
	if err != nil {
		log.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "one\ntwo\n")
	_ = stdin.Close()
	for exit := range backend.exits {
		if exit.ProcessID == "wc-1" {
			fmt.Println("exit code", exit.ExitCode)
			break
		}
	}
	if _, err := proc.Delete(ctx); err != nil {
		log.Fatal(err)
	}
}

// Example_restart is an engine starting again while its containers kept
// running: a new client on the same state directory and namespace loads
// each container and attaches to its task's FIFOs.
func Example_restart() {
	ctx := context.Background()
	client, closeAll := connect(ctx, newExitBackend("web"))
	defer closeAll()

	ctr, err := client.LoadContainer(ctx, "web")
	if err != nil {
		log.Fatal(err)
	}
	// Only one reader may be attached to a task's FIFOs.
	task, err := ctr.AttachTask(ctx, copyStdio)
	if errdefs.IsNotFound(err) {
		fmt.Println("web has no task")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	status, err := task.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("web is", status.Status)
}

// ExampleReplaceContainer creates a container over a stale one of the same
// ID, which an engine finds after a crash: the stale task is killed and both
// are deleted first.
func ExampleReplaceContainer() {
	ctx := context.Background()
	client, closeAll := connect(ctx, newExitBackend("web"))
	defer closeAll()
	spec := engineSpec(ctx, "web", "/srv/rootfs/web", "httpd", "-f")
	ctr, err := libcontainerd.ReplaceContainer(ctx, client, "web", spec, "io.containerd.runc.v2", &runcoptions.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Nothing of the stale container is left: the new one has no task
	// until the engine creates it, as Example does.
	if _, err := ctr.Task(ctx); errdefs.IsNotFound(err) {
		fmt.Println("web is new")
	}
}

// ExampleClient_LoadContainer shows the error classes a caller acts on. IDs
// are validated before the client touches the filesystem or containerd, so
// this example needs no daemon.
func ExampleClient_LoadContainer() {
	ctx := context.Background()
	client, closeAll := connect(ctx, newExitBackend(""))
	defer closeAll()

	for _, id := range []string{"../etc", "a/b", ""} {
		_, err := client.LoadContainer(ctx, id)
		switch {
		case errdefs.IsInvalidArgument(err):
			fmt.Printf("%q: invalid argument\n", id)
		case errdefs.IsNotFound(err):
			fmt.Printf("%q: no such container\n", id)
		case err != nil:
			fmt.Printf("%q: %v\n", id, err)
		}
	}
	// Output:
	// "../etc": invalid argument
	// "a/b": invalid argument
	// "": invalid argument
}

// ExampleNew makes a Client with the options an engine may set, and shows
// what it owns: Close stops its event stream and every goroutine it
// started; Metrics counts what the event machinery did.
func ExampleNew() {
	ctx := context.Background()
	cli, err := containerd.New("/run/containerd/containerd.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	client, err := libcontainerd.New(ctx, cli, "/run/engine/containerd", "engine", newExitBackend("web"),
		// Only for a Backend that may be called twice for one event.
		libcontainerd.WithEventRetry(3, 50*time.Millisecond, time.Second),
		libcontainerd.WithClosePolicy(libcontainerd.CloseDrain),
	)
	if err != nil {
		log.Fatal(err)
	}
	v, err := client.Version(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("containerd", v.Version)

	// Queued events get up to ten seconds to reach the Backend.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.CloseContext(closeCtx); err != nil {
		log.Print("events abandoned: ", err)
	}
	m := client.Metrics()
	fmt.Println("delivered", m.Delivered, "deduplicated", m.Deduplicated, "reconnects", m.Reconnects)
}

// Example_checkpoint checkpoints a running container with CRIU into a
// directory, leaving it running, and restores the checkpoint into a new
// container: NewTask with the checkpoint directory, then Start.
func Example_checkpoint() {
	ctx := context.Background()
	backend := newExitBackend("counter-copy")
	client, closeAll := connect(ctx, backend)
	defer closeAll()

	ctr, err := client.LoadContainer(ctx, "counter")
	if err != nil {
		log.Fatal(err)
	}
	task, err := ctr.Task(ctx)
	if err != nil {
		log.Fatal(err)
	}
	const dir = "/var/lib/engine/checkpoints/counter-1"
	if err := task.CreateCheckpoint(ctx, dir, false); err != nil {
		// FailedPrecondition: CRIU refused (an external resource, say);
		// the task keeps running.
		log.Fatal(err)
	}

	spec := engineSpec(ctx, "counter-copy", "/srv/rootfs/busybox", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 1; done")
	restored, err := client.NewContainer(ctx, "counter-copy", spec, "io.containerd.runc.v2", &runcoptions.Options{})
	if err != nil {
		log.Fatal(err)
	}
	copyTask, err := restored.NewTask(ctx, dir, false, copyStdio)
	if err != nil {
		log.Fatal(err)
	}
	// The restored process goes on from where the checkpoint left it.
	if err := copyTask.Start(ctx); err != nil {
		log.Fatal(err)
	}
}
