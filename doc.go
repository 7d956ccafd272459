// Package libcontainerd drives containerd for a container engine: it wraps a
// containerd v2 client and hands out container, task and process handles
// with FIFO stdio (as cio.DirectIO), while one event subscription per
// namespace delivers task events, in order per container, to a Backend.
//
// It is a drop-in successor of github.com/docker/docker/libcontainerd
// (remote, types and queue): the same names and signatures, the same bundle
// label and FIFO layout on disk, so containers created by either can be
// loaded and re-attached by the other.
//
// A minimal engine:
//
//	cli, _ := containerd.New("/run/containerd/containerd.sock")
//	c, err := libcontainerd.NewClient(ctx, cli, "/var/run/engine/containerd", "engine", backend)
//	ctr, err := c.NewContainer(ctx, "web", spec, "io.containerd.runc.v2", &runcoptions.Options{})
//	task, err := ctr.NewTask(ctx, "", false, func(dio *cio.DirectIO) (cio.IO, error) {
//		go io.Copy(os.Stdout, dio.Stdout)
//		go io.Copy(os.Stderr, dio.Stderr)
//		return dio, nil
//	})
//	err = task.Start(ctx)
//	// backend.ProcessEvent receives create, start and, when it ends, exit.
//
// Beyond moby's copy, the client delivers each exit exactly once, also
// across a containerd restart (it reconnects with backoff and reconciles
// what it missed), completes deletes that containerd could not serve
// during an outage, validates IDs before touching the filesystem, removes
// only what it can prove is its own, classifies every error with
// containerd/errdefs, and can be closed: see Client.Close.
//
// # Exits, exactly once
//
// Every exit of a (container, process, pid) reaches the engine once: as an
// EventExit, or as the status its own Task.Delete, Task.ForceDelete or
// Process.Delete returned, after which no event follows for it (dockerd's
// restore handles those exits itself). Each process ID has a current
// incarnation in one of four phases (none, created, running, exited) and
// remembers the pids of a few earlier ones:
//
//	input                                  effect on the process
//	-------------------------------------  ---------------------------------------------
//	create: TaskCreate, ExecAdded,         a pid of the live incarnation, or of one that
//	  NewTask, Exec                        exited after the create's time: that one; else
//	                                       a new incarnation, created (pid reused too)
//	start: TaskStart, ExecStarted,         created -> running, delivered; after its exit
//	  Task.Start, Exec                     a start is dropped (exit is terminal)
//	Task, AttachTask (loaded)              running (an exit is owed), unless a later
//	                                       Status says created
//	exit: TaskExit                         created/running -> exited, delivered once; an
//	                                       exit of an earlier incarnation (its pid, or
//	                                       exited before this one was created) is dropped
//	delete through the API                 the container's events wait while it runs;
//	                                       success: exited without an event, then gone;
//	                                       failure: the held events go on in order
//	TaskDelete (someone else's delete)     running -> exited, delivered from the delete's
//	                                       status; created -> no exit owed; then gone
//	                                       (containerd 2.4 loses some TaskDeletes: then
//	                                       the next reconciliation finds it gone)
//	a delete the client makes on its own   as a TaskDelete, from the status containerd
//	  (ReplaceContainer, a deferred        returned: delivered even when the stream
//	  delete completed)                    loses the task's TaskExit and TaskDelete
//	reconcile found stopped                running -> exited with containerd's status
//	                                       (a different pid stopped: status unknown, 255);
//	                                       a loaded task that exited before it was loaded:
//	                                       no event (the engine's Status tells, its Delete
//	                                       takes the status), still owed to a TaskDelete
//	reconcile found gone                   running -> exited, 255 with a NotFound Error
//	exit 137 of the init process, to be    its memory cgroup is checked (task metrics,
//	  delivered, no EventOOM delivered     bounded); if it recorded an OOM kill (the
//	  for its incarnation (TaskExit,       TaskOOM was lost), EventOOM is delivered
//	  reconcile found stopped)             just before the exit; unknown: no EventOOM
//	TaskOOM                                delivered, as with moby; dropped when the
//	                                       incarnation it was published in already
//	                                       got a synthesized EventOOM
//	container deleted                      every process of the container is gone
//
// Gone processes stay as tombstones for a while (bounded in number and
// age): containerd 2.x can publish a TaskExit after the TaskDelete of its
// task. Reconciliation runs after every (re)subscription to the event
// stream, for the running processes whose exit was not delivered.
package libcontainerd
