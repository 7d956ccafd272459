// Package types holds the public interfaces and value types of
// libcontainerd: the Client, Container, Task and Process handles a container
// engine drives, the Backend it implements to receive events, and the
// EventInfo those events carry.
//
// The names, signatures and method sets are identical to those of
// github.com/docker/docker/libcontainerd/types (v28), so an engine written
// against that package compiles against this one after changing the import
// path. Never add methods to Backend: engines implement it.
package types

import (
	"context"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// EventType names the kind of a task event delivered to a Backend.
type EventType string

// The event types a Backend receives. EventUnknown is never delivered; it is
// the zero value callers may use for "no event".
const (
	EventUnknown     EventType = "unknown"
	EventExit        EventType = "exit"
	EventOOM         EventType = "oom"
	EventCreate      EventType = "create"
	EventStart       EventType = "start"
	EventExecAdded   EventType = "exec-added"
	EventExecStarted EventType = "exec-started"
	EventPaused      EventType = "paused"
	EventResumed     EventType = "resumed"
)

// EventInfo describes one task event. ProcessID equals ContainerID for the
// init process and is the exec ID for exec processes. Pid, ExitCode and
// ExitedAt are set only for the event types that carry them (Pid on create,
// start, exec-started and exit; ExitCode and ExitedAt on exit).
type EventInfo struct {
	ContainerID string
	ProcessID   string
	Pid         uint32
	ExitCode    uint32
	ExitedAt    time.Time
	Error       error
}

// Backend receives the events of the containers of one namespace.
//
// ProcessEvent is called for one container at a time, in the order
// containerd published the events of that container; calls for different
// containers may run concurrently. An error returned from ProcessEvent makes
// the client retry the same event (see the client's options) before later
// events of that container are delivered.
type Backend interface {
	ProcessEvent(containerID string, event EventType, ei EventInfo) error
}

// Process is a process of a task: the init process or an exec.
type Process interface {
	// Pid is the system specific process id.
	Pid() uint32
	// Kill sends the provided signal to the process.
	Kill(ctx context.Context, signal syscall.Signal) error
	// Resize changes the width and height of the process's terminal.
	Resize(ctx context.Context, width, height uint32) error
	// Delete removes the process and any resources allocated to it, returning
	// its exit status. The process must have exited (or be killed first).
	Delete(context.Context) (*containerd.ExitStatus, error)
}

// Client gives access to the containers of one containerd namespace.
type Client interface {
	// Version returns the version of the containerd daemon.
	Version(ctx context.Context) (containerd.Version, error)
	// LoadContainer loads the metadata for a container from containerd. It
	// returns a NotFound error when containerd has no such container.
	LoadContainer(ctx context.Context, containerID string) (Container, error)
	// NewContainer creates a new containerd container with its bundle
	// directory under the client's state directory. runtimeOptions are the
	// shim's options (for runc, *options.Options). An ID that is already in
	// use returns a Conflict error.
	NewContainer(ctx context.Context, containerID string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (Container, error)
}

// Container is a containerd container: metadata plus, once created, a task.
type Container interface {
	// NewTask creates (but does not start) the container's task, restoring
	// it from checkpointDir when that is not empty. attachStdio receives the
	// task's FIFOs as a DirectIO and owns them from then on; withStdin
	// creates a stdin FIFO, and closing the DirectIO's Stdin closes the
	// process's stdin.
	NewTask(ctx context.Context, checkpointDir string, withStdin bool, attachStdio StdioCallback) (Task, error)
	// Task returns the container's task without attaching to its IO.
	Task(ctx context.Context) (Task, error)
	// AttachTask returns the current task for the container and reattaches
	// to the IO for the running task. If no task exists for the container
	// a NotFound error is returned.
	//
	// Clients must make sure that only one reader is attached to the task.
	AttachTask(ctx context.Context, attachStdio StdioCallback) (Task, error)
	// Delete removes the container and associated resources, including its
	// bundle directory. Its task must have been deleted first.
	Delete(context.Context) error
}

// Task is the running instance of a container: its init process plus the
// operations on the whole container.
type Task interface {
	Process
	// Start begins execution of the task.
	Start(context.Context) error
	// Pause suspends the execution of the task.
	Pause(context.Context) error
	// Resume the execution of the task.
	Resume(context.Context) error
	// Stats returns the task's cgroup metrics.
	Stats(ctx context.Context) (*Stats, error)
	// Pids returns a list of system specific process ids inside the task.
	Pids(context.Context) ([]containerd.ProcessInfo, error)
	// Summary returns per-process details; on Linux the entries are empty.
	Summary(ctx context.Context) ([]Summary, error)
	// ForceDelete forcefully kills the task's processes and deletes the task.
	ForceDelete(context.Context) error
	// Status returns the executing status of the task.
	Status(ctx context.Context) (containerd.Status, error)
	// Exec creates and starts a new process inside the task. An exec ID that
	// is already in use returns a Conflict error. attachStdio owns the
	// process's FIFOs as for Container.NewTask.
	Exec(ctx context.Context, processID string, spec *specs.Process, withStdin bool, attachStdio StdioCallback) (Process, error)
	// UpdateResources changes the task's resource limits.
	UpdateResources(ctx context.Context, resources *Resources) error
	// CreateCheckpoint checkpoints the task into checkpointDir, stopping it
	// when exit is true.
	CreateCheckpoint(ctx context.Context, checkpointDir string, exit bool) error
}

// StdioCallback is called to connect a container or process stdio. It
// receives the process's FIFOs opened as a DirectIO and returns the cio.IO
// the task keeps; on error the FIFOs are closed and removed by the caller.
type StdioCallback func(io *cio.DirectIO) (cio.IO, error)
