package libcontainerd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// oomLimit is the memory limit of the containers that run out of memory
// (the machines have no swap: the limit is the limit).
const oomLimit = 16 << 20

// allocForever doubles a shell variable until the memory cgroup's limit
// has the kernel kill the shell.
const allocForever = "x=a; while :; do x=$x$x; done"

// memoryCgroup returns the directory of a memory cgroup, named by its
// path from the hierarchy's root: the tests' oracle, read apart from what
// the client reads.
func memoryCgroup(cgroupPath string) string {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		return filepath.Join("/sys/fs/cgroup/memory", cgroupPath)
	}
	return filepath.Join("/sys/fs/cgroup", cgroupPath)
}

// namespacedCgroup is the memory cgroup of container id of namespace ns
// with the harness's specs, which put it at /<ns>/<id>.
func namespacedCgroup(ns, id string) string {
	return memoryCgroup("/" + ns + "/" + id)
}

// memoryCgroupOf returns the memory cgroup of live process pid.
func memoryCgroupOf(t testing.TB, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	unified := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			return memoryCgroup(parts[2])
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
	}
	if unified == "" {
		t.Fatalf("pid %d has no memory cgroup:\n%s", pid, b)
	}
	return memoryCgroup(unified)
}

// cgroupOOMKills returns the OOM kills that memory cgroup dir recorded
// (cgroup v1 memory.oom_control, v2 memory.events).
func cgroupOOMKills(t testing.TB, dir string) uint64 {
	t.Helper()
	file := filepath.Join(dir, "memory.oom_control")
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		file = filepath.Join(dir, "memory.events")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the container's memory cgroup: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("oom_kill ")); ok {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			return n
		}
	}
	t.Fatalf("%s has no oom_kill counter:\n%s", file, b)
	return 0
}

// waitOOMKill waits until memory cgroup dir has recorded an OOM kill: the
// kernel counts it after it has sent the SIGKILL, from the task whose
// allocation failed, which need not be the one it killed.
func waitOOMKill(t testing.TB, dir string) {
	t.Helper()
	eventually(t, "an OOM kill in the container's memory cgroup", func() (bool, string) {
		n := cgroupOOMKills(t, dir)
		return n > 0, fmt.Sprintf("oom_kill %d", n)
	})
}

// oomAndInitExits returns, in delivery order, the EventOOMs of container
// id and the exits of its init process, as "oom" and "exit <code> pid
// <pid>".
func oomAndInitExits(evs []event, id string) []string {
	var out []string
	for _, e := range evs {
		switch {
		case e.Info.ContainerID != id:
		case e.Type == types.EventOOM:
			out = append(out, "oom")
		case e.Type == types.EventExit && e.Info.ProcessID == id:
			out = append(out, fmt.Sprintf("exit %d pid %d", e.Info.ExitCode, e.Info.Pid))
		}
	}
	return out
}

// assertOOMThenExit fails t unless container id got, for each incarnation
// of its init process in pids, exactly one EventOOM and then exactly one
// exit with status 137.
func assertOOMThenExit(t testing.TB, b *recordingBackend, id string, pids ...uint32) {
	t.Helper()
	if got, want := oomAndInitExits(b.of(id), id), oomsThenExits(pids); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("EventOOMs and exits %q, want %q; all events: %v", got, want, b.of(id))
	}
}

func oomsThenExits(pids []uint32) []string {
	var want []string
	for _, pid := range pids {
		want = append(want, "oom", oomKilledExit(pid))
	}
	return want
}

// oomKilledExit is the exit of an OOM-killed init process pid, as
// oomAndInitExits writes it.
func oomKilledExit(pid uint32) string { return fmt.Sprintf("exit %d pid %d", oomExitStatus, pid) }

// publishedOOMs records, apart from any client, the TaskCreates, TaskOOMs
// and init TaskExits containerd publishes in a namespace, in its order:
// the oracle of what the engine must get. containerd's shim can publish
// two TaskOOMs for one OOM kill: it publishes one per wakeup of the
// cgroup's OOM notification, which can come more than once for one kill
// (2 of 144 kills here under load, 1.4 and 3.3 ms apart). moby's copy
// delivers every TaskOOM, and so does the client; what it adds is one
// EventOOM where containerd published none before the exit.
type publishedOOMs struct {
	mu   sync.Mutex
	seen map[string][]string // container -> "create", "oom", "exit <code> pid <pid>"
}

func recordPublishedOOMs(t testing.TB, tc *testClient) *publishedOOMs {
	t.Helper()
	ctx, cancel := context.WithCancel(tc.ctx)
	filter := func(topic string) string { return fmt.Sprintf(`namespace==%q,topic==%q`, tc.ns, topic) }
	const markerTopic = "/libcontainerd-test/oracle"
	envs, errs := tc.daemon.Client(t).Subscribe(ctx, filter("/tasks/create"), filter("/tasks/oom"), filter("/tasks/exit"), filter(markerTopic))
	p := &publishedOOMs{seen: make(map[string][]string)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case env := <-envs:
				p.add(t, env)
			case <-errs:
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	// The subscription is live once it carries an event: publish one of
	// a type the client ignores, until it arrives.
	marker := testutil.ID(t, "marker")
	eventually(t, "the oracle's subscription", func() (bool, string) {
		if err := tc.daemon.Client(t).EventService().Publish(tc.ctx, markerTopic, &apievents.ContainerCreate{ID: marker}); err != nil {
			return false, err.Error()
		}
		return len(p.published(marker)) > 0, "no marker yet"
	})
	return p
}

// published returns what containerd published for container id.
func (p *publishedOOMs) published(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen[id])
}

func (p *publishedOOMs) add(t testing.TB, env *events.Envelope) {
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		t.Errorf("oracle: %v", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := v.(type) {
	case *apievents.ContainerCreate:
		p.seen[e.ID] = append(p.seen[e.ID], "marker")
	case *apievents.TaskCreate:
		p.seen[e.ContainerID] = append(p.seen[e.ContainerID], "create")
	case *apievents.TaskOOM:
		p.seen[e.ContainerID] = append(p.seen[e.ContainerID], "oom")
	case *apievents.TaskExit:
		if processIDOf(e.ContainerID, e.ID) == e.ContainerID {
			p.seen[e.ContainerID] = append(p.seen[e.ContainerID], fmt.Sprintf("exit %d pid %d", e.ExitStatus, e.Pid))
		}
	}
}

// want returns the EventOOMs and init exits the engine must get for what
// containerd published for container id: per incarnation, every TaskOOM
// published before its exit, or, when there was none, the one EventOOM
// the client adds for an exit 137 (in these tests an exit 137 follows an
// OOM kill in the container's cgroup); TaskOOMs of the incarnation
// published after its exit are delivered only if the client added none.
func (p *publishedOOMs) want(id string) []string {
	var out, late []string
	ooms, exited := 0, false
	end := func() {
		if exited && ooms == 0 {
			late = nil // after the client's own EventOOM
		}
		out = append(out, late...)
		ooms, exited, late = 0, false, nil
	}
	for _, e := range p.published(id) {
		switch {
		case e == "create":
			end()
		case e == "oom" && exited:
			late = append(late, e)
		case e == "oom":
			ooms++
			out = append(out, e)
		default:
			if ooms == 0 && strings.HasPrefix(e, fmt.Sprintf("exit %d ", oomExitStatus)) {
				out = append(out, "oom")
			}
			exited = true
			out = append(out, e)
		}
	}
	end()
	return out
}

// assertDelivered fails t unless container id gets, in order, the
// EventOOMs and init exits that p says it must, and those exits are of
// pids, each 137.
func (p *publishedOOMs) assertDelivered(t testing.TB, b *recordingBackend, id string, pids ...uint32) {
	t.Helper()
	var wantExits []string
	for _, pid := range pids {
		wantExits = append(wantExits, oomKilledExit(pid))
	}
	// Polled: the client and the oracle each get containerd's events in
	// their own time.
	eventually(t, "the EventOOMs and exits containerd's events call for", func() (bool, string) {
		got, want := oomAndInitExits(b.of(id), id), p.want(id)
		exits := slices.DeleteFunc(slices.Clone(got), func(e string) bool { return e == "oom" })
		return fmt.Sprint(got) == fmt.Sprint(want) && fmt.Sprint(exits) == fmt.Sprint(wantExits),
			fmt.Sprintf("EventOOMs and exits %q, want %q with the exits %q (containerd published %q)", got, want, wantExits, p.published(id))
	})
}

// deleteAll deletes the task and the container, retrying while containerd
// comes back from a restart.
func (tc *testClient) deleteAll(t testing.TB, ctr types.Container, task types.Task) {
	t.Helper()
	if err := retry("delete task", func() error {
		_, err := task.Delete(tc.ctx)
		if err != nil && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := retry("delete container", func() error { return ctr.Delete(tc.ctx) }); err != nil {
		t.Fatal(err)
	}
}

// TestOOMKill runs a container past its memory limit: the engine gets
// EventOOM and then one exit 137, whether containerd's TaskOOM arrives
// before the exit or the client finds the OOM kill in the memory cgroup
// first (the shim publishes the two from different goroutines). The
// EventOOMs are the TaskOOMs containerd published before the exit (one,
// or now and then two for one kill), or the one the client adds.
func TestOOMKill(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	published := recordPublishedOOMs(t, tc)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sh", "-c", allocForever}, oci.WithMemoryLimit(oomLimit))
	task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
	tc.backend.waitEvent(t, id, types.EventExit, id)
	waitOOMKill(t, namespacedCgroup(tc.ns, id))
	published.assertDelivered(t, tc.backend, id, task.Pid())
	if _, err := task.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}

	// A second incarnation in a new cgroup is checked anew. Its events
	// follow every event of the first: the first's shim is gone once its
	// task is deleted, and containerd hands a subscriber the events in the
	// order it received them. So a TaskOOM of the first that came after its
	// exit has been dropped by now, or never will be delivered.
	next := tc.createAndStart(t, ctr, false, (&capture{}).attach)
	tc.backend.waitUntil(t, "exit of the second incarnation", func(evs []event) bool {
		return len(exitsOfPid(evs, id, next.Pid())) > 0
	})
	published.assertDelivered(t, tc.backend, id, task.Pid(), next.Pid())
	tc.deleteAll(t, ctr, next)
}

// TestOOMFoundAtExit is the TaskOOM the client never saw: an engine that
// restarted after an exec of its container was OOM-killed. When the
// container's init then exits with 137, the new client finds the OOM kill
// in the memory cgroup and delivers EventOOM before the exit; the client
// that saw the TaskOOM delivers it once and does not double it. The new
// client reads the cgroup's counter where containerd's record of the
// container names the cgroup, else containerd's task metrics.
func TestOOMFoundAtExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cgroup func(ns, id string) oci.SpecOpts
	}{
		{"cgroup named in the spec", func(string, string) oci.SpecOpts { return oci.WithMemoryLimit(oomLimit) }},
		// runc puts a relative path under its own (the shim's) cgroup.
		{"cgroup relative to the shim's", func(ns, id string) oci.SpecOpts { return oci.WithCgroup(ns + "_" + id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testOOMFoundAtExit(t, tc.cgroup)
		})
	}
}

func testOOMFoundAtExit(t *testing.T, cgroup func(ns, id string) oci.SpecOpts) {
	tc := newTestClient(t)
	published := recordPublishedOOMs(t, tc)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sleep", "3600"}, oci.WithMemoryLimit(oomLimit), cgroup(tc.ns, id))
	task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
	memcg := memoryCgroupOf(t, task.Pid())
	hog, err := task.Exec(tc.ctx, "hog", tc.processSpec(t, id, "sh", "-c", allocForever), false, (&capture{}).attach)
	if err != nil {
		t.Fatal(err)
	}
	if ex := tc.backend.waitEvent(t, id, types.EventExit, "hog"); ex.ExitCode != oomExitStatus {
		t.Fatalf("exec exit %+v, want 137", ex)
	}
	waitOOMKill(t, memcg)
	// Once the first client has the TaskOOM, containerd has published it:
	// a client that subscribes now cannot receive it.
	tc.backend.waitEvent(t, id, types.EventOOM, "")
	if _, err := hog.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}

	b2 := newRecordingBackend()
	c2, err := New(tc.ctx, tc.daemon.Client(t), tc.stateDir, tc.ns, b2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c2.CloseContext(context.Background()); err != nil {
			t.Errorf("close second client: %v", err)
		}
	})
	ctr2, err := c2.LoadContainer(tc.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task2, err := ctr2.Task(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task2.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b2.waitEvent(t, id, types.EventExit, id)
	assertOOMThenExit(t, b2, id, task.Pid())
	published.assertDelivered(t, tc.backend, id, task.Pid())
	tc.deleteAll(t, ctr, task)
}

// TestOOMWhileContainerdDown has a container OOM-killed while containerd
// is down, so that its TaskOOM is lost. containerd 1.6 keeps the stopped
// task and its cgroup: after the restart the engine gets EventOOM, then
// the exit 137, once each. containerd 2.4 deletes the task at its restart,
// cgroup and exit status with it: the exit is delivered as of unknown
// status and no EventOOM is invented.
func TestOOMWhileContainerdDown(t *testing.T) {
	t.Parallel()
	d := testutil.NewDaemon(t)
	tc := newTestClient(t, onDaemon(d))
	id := testutil.ID(t)
	// The trap starts the allocation when the test signals the shell; a
	// container's init ignores signals it has no handler for, so the test
	// waits for the trap to be set.
	ctr := tc.newContainer(t, id, []string{"sh", "-c", "trap '" + allocForever + "' TERM; echo trapped; while :; do sleep 0.05; done"},
		oci.WithMemoryLimit(oomLimit))
	var out capture
	task := tc.createAndStart(t, ctr, false, out.attach)
	out.waitOutput(t, "trapped")
	tc.backend.waitEvent(t, id, types.EventStart, id)
	memcg := memoryCgroupOf(t, task.Pid())

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(task.Pid()), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, task.Pid())
	waitOOMKill(t, memcg)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exit := tc.backend.waitEvent(t, id, types.EventExit, id)
	switch d.Flavor {
	case testutil.FlavorV2:
		if exit.ExitCode != 255 || !errdefs.IsNotFound(exit.Error) {
			t.Fatalf("exit %+v, want 255 with a NotFound error", exit)
		}
		if got := oomAndInitExits(tc.backend.of(id), id); len(got) != 1 {
			t.Fatalf("EventOOMs and exits %q, want the exit alone", got)
		}
	default:
		assertOOMThenExit(t, tc.backend, id, task.Pid())
	}
	tc.deleteAll(t, ctr, task)
}

// TestSIGKILLNoOOM kills a container with SIGKILL: its exit 137 is
// checked and, with no OOM kill in its memory cgroup, gets no EventOOM.
func TestSIGKILLNoOOM(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	_, task := tc.runSleeper(t, id)
	memcg := memoryCgroupOf(t, task.Pid())
	if err := task.Kill(tc.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if n := cgroupOOMKills(t, memcg); n != 0 {
		t.Fatalf("the kernel recorded %d OOM kills", n)
	}
	if got, want := oomAndInitExits(tc.backend.of(id), id), []string{fmt.Sprintf("exit 137 pid %d", task.Pid())}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("EventOOMs and exits %q, want %q", got, want)
	}
}
