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
// remembers the pids of a few earlier ones. An input names an incarnation
// by pid: the current one (pid 0, which containerd sends when it lost the
// pid, names it too), an earlier one (a pid remembered, or a time before
// the current one was created), one replaced while it ran (its exit is
// still owed), or one never seen. The rule is one function,
// procRecord.step in events_process.go; row by row:
//
//	input                                  effect on the process
//	-------------------------------------  ---------------------------------------------
//	create: TaskCreate, ExecAdded,         a pid of the live incarnation, or of one that
//	  NewTask, Exec                        exited (or was deleted) after the create's
//	                                       time: that one; of an earlier or replaced
//	                                       one, reported late: nothing; else a new
//	                                       incarnation, created (pid reused too). The
//	                                       one it replaces, if running, is "replaced":
//	                                       its exit is still owed
//	start: TaskStart, ExecStarted,         created -> running, delivered; after its exit
//	  Task.Start, Exec                     a start is dropped (exit is terminal), as is
//	                                       a late start of an earlier run
//	Task, AttachTask (loaded)              running (an exit is owed), unless a later
//	                                       Status says created
//	exit: TaskExit                         created/running -> exited, delivered once; an
//	                                       exit of an earlier incarnation is dropped; of
//	                                       a replaced one, or of a pid never seen
//	                                       (stray), delivered once
//	delete through the API                 the container's events wait while it runs, at
//	                                       most 5 s (deleteHoldLimit: then they go on,
//	                                       and an exit among them reaches the engine as
//	                                       with moby, also from the Delete); success:
//	                                       exited without an event (ForceDelete too),
//	                                       then deleted; failure: held events go on
//	TaskDelete (someone else's delete)     running -> exited, delivered from the delete's
//	                                       status (pid 0: the current one); created ->
//	                                       no exit owed, and the container's execs that
//	                                       never started are settled; then deleted
//	                                       (containerd 2.4 loses some TaskDeletes: then
//	                                       the next reconciliation finds it gone)
//	a delete the client makes on its own   as a TaskDelete, from the status containerd
//	  (ReplaceContainer, a deferred        returned: delivered even when the stream
//	  delete completed)                    loses the task's TaskExit and TaskDelete
//	an exec whose start failed             settled, no exit owed; its ExecAdded that
//	                                       comes later is a late report
//	reconcile, after every                 asked about each running process and each
//	  (re)subscription                     replaced one, a container's execs before its
//	                                       init (the engine cleans execs up at the init's
//	                                       exit); found running (or created): nothing
//	reconcile found stopped                running -> exited with containerd's status;
//	                                       a loaded task that exited before it was loaded:
//	                                       no event (the engine's Status tells, its Delete
//	                                       takes the status), still owed to a TaskDelete
//	reconcile found another pid, or gone   exited, 255 with a NotFound Error (status
//	                                       unknown)
//	exit 137 of the init process, to be    its memory cgroup is checked (off the event
//	  delivered, no EventOOM delivered     loop, at most 500 ms; the container's later
//	  for its incarnation (TaskExit,       events wait behind it, others' do not); if it
//	  reconcile found stopped)             recorded an OOM kill (the TaskOOM was lost),
//	                                       EventOOM is delivered just before the exit
//	TaskOOM                                delivered, as with moby; dropped when the
//	                                       incarnation it was published in already
//	                                       got a synthesized EventOOM
//	container deleted                      every process of the container is deleted
//
// Every exit the client adds agrees with what Task.Status answers when the
// engine asks (dockerd v29 drops an exit that does not): found stopped, it
// carries containerd's status; otherwise the task is gone, and Status
// fails with NotFound. The one exception is a run replaced behind the
// engine's back (another client made a new task under the container's
// ID): Status then describes the new run.
//
// A process that is not live (exited, deleted, never started) is kept as a
// tombstone for a while, bounded in number and age (two minutes, 10,000:
// containerd 2.x can publish a TaskExit after the TaskDelete of its task),
// then forgotten: what the client remembers is the live processes and the
// tombstones, whatever the workload. A record that comes back to life
// leaves the tombstones; buried again, its age counts anew.
//
// Close stops the event stream, delivers or abandons the queued events
// (see ClosePolicy) and gives up the deletes still waiting for containerd
// (logged, and counted in Metrics.DeletesAbandoned): it does not wait for
// containerd to come back. Events emitted after Close are counted as
// dropped.
package libcontainerd
