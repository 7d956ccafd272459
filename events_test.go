package libcontainerd

import (
	"fmt"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ctrkit/libcontainerd/types"
)

func TestMapEvent(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	for _, tc := range []struct {
		name string
		in   any
		want taskEvent
		ok   bool
	}{
		{"create", &apievents.TaskCreate{ContainerID: "c", Pid: 10}, taskEvent{typ: types.EventCreate, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10}}, true},
		{"start", &apievents.TaskStart{ContainerID: "c", Pid: 10}, taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10}}, true},
		{"init exit", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 10, ExitStatus: 3, ExitedAt: timestamppb.New(at)},
			taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10, ExitCode: 3, ExitedAt: at}}, true},
		{"exit without id is init", &apievents.TaskExit{ContainerID: "c", Pid: 10, ExitedAt: timestamppb.New(at)},
			taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10, ExitedAt: at}}, true},
		{"exec exit", &apievents.TaskExit{ContainerID: "c", ID: "e", Pid: 11, ExitStatus: 137, ExitedAt: timestamppb.New(at)},
			taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 11, ExitCode: 137, ExitedAt: at}}, true},
		{"oom", &apievents.TaskOOM{ContainerID: "c"}, taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: "c"}}, true},
		{"exec added", &apievents.TaskExecAdded{ContainerID: "c", ExecID: "e"}, taskEvent{typ: types.EventExecAdded, info: types.EventInfo{ContainerID: "c", ProcessID: "e"}}, true},
		{"exec started", &apievents.TaskExecStarted{ContainerID: "c", ExecID: "e", Pid: 12}, taskEvent{typ: types.EventExecStarted, info: types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 12}}, true},
		{"paused", &apievents.TaskPaused{ContainerID: "c"}, taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: "c"}}, true},
		{"resumed", &apievents.TaskResumed{ContainerID: "c"}, taskEvent{typ: types.EventResumed, info: types.EventInfo{ContainerID: "c"}}, true},
		{"delete carries exit", &apievents.TaskDelete{ContainerID: "c", Pid: 10, ExitStatus: 2, ExitedAt: timestamppb.New(at)},
			taskEvent{deleted: true, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10, ExitCode: 2, ExitedAt: at}}, true},
		{"checkpointed ignored", &apievents.TaskCheckpointed{ContainerID: "c"}, taskEvent{}, false},
		{"container create ignored", &apievents.ContainerCreate{ID: "c"}, taskEvent{}, false},
		{"nil ignored", nil, taskEvent{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := mapEvent(tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if got.typ != tc.want.typ || got.deleted != tc.want.deleted || !equalInfo(got.info, tc.want.info) {
				t.Fatalf("mapEvent = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func equalInfo(a, b types.EventInfo) bool {
	return a.ContainerID == b.ContainerID && a.ProcessID == b.ProcessID && a.Pid == b.Pid &&
		a.ExitCode == b.ExitCode && a.ExitedAt.Equal(b.ExitedAt) && (a.Error == nil) == (b.Error == nil)
}

// storeStep is one input to the process store and what it must emit.
type storeStep struct {
	do   string // "event", "observeCreate", "observeStart", "observeLoaded", "createdStatus", "deleteStarted", "deleteDone", "deleteFailed", "containerDeleted"
	ev   taskEvent
	want []types.EventType // emitted by this step, in order
}

func ev(typ types.EventType, proc string, pid uint32) taskEvent {
	return taskEvent{typ: typ, info: types.EventInfo{ContainerID: "c", ProcessID: proc, Pid: pid}}
}

func exitAt(proc string, pid uint32, at time.Time) taskEvent {
	e := ev(types.EventExit, proc, pid)
	e.info.ExitedAt = at
	return e
}

func createAt(typ types.EventType, proc string, pid uint32, at time.Time) taskEvent {
	e := ev(typ, proc, pid)
	e.at = at
	return e
}

func deletedEv(proc string, pid uint32) taskEvent {
	return taskEvent{deleted: true, info: types.EventInfo{ContainerID: "c", ProcessID: proc, Pid: pid}}
}

func step(e taskEvent, want ...types.EventType) storeStep {
	return storeStep{do: "event", ev: e, want: want}
}

func api(do, proc string, pid uint32, want ...types.EventType) storeStep {
	return storeStep{do: do, ev: ev("", proc, pid), want: want}
}

func runStore(t *testing.T, s *processStore, emitted *[]taskEvent, steps []storeStep) {
	t.Helper()
	for n, st := range steps {
		*emitted = (*emitted)[:0]
		i := st.ev.info
		switch st.do {
		case "event":
			s.handle(st.ev)
		case "observeCreate":
			s.observeCreate(i.ContainerID, i.ProcessID, i.Pid, st.ev.at)
		case "observeStart":
			s.observeStart(i.ContainerID, i.ProcessID, i.Pid)
		case "observeLoaded":
			s.observeLoaded(i.ContainerID, i.Pid)
		case "createdStatus":
			s.observeCreatedStatus(i.ContainerID, i.Pid)
		case "deleteStarted":
			s.deleteStarted(i.ContainerID)
		case "deleteDone":
			s.deleteDone(i.ContainerID, i.ProcessID, i.Pid, true)
		case "deleteFailed":
			s.deleteDone(i.ContainerID, i.ProcessID, i.Pid, false)
		case "containerDeleted":
			s.containerDeleted(i.ContainerID)
		default:
			t.Fatalf("unknown step %q", st.do)
		}
		var got []types.EventType
		for _, e := range *emitted {
			got = append(got, e.typ)
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Fatalf("step %d (%s %s %+v): emitted %v, want %v", n, st.do, st.ev.typ, st.ev.info, got, st.want)
		}
	}
}

func newTestStore() (*processStore, *[]taskEvent) {
	var emitted []taskEvent
	s := newProcessStore(time.Minute, 100, &eventCounters{}, func(e taskEvent) { emitted = append(emitted, e) })
	return s, &emitted
}

// TestProcessStore walks the process state machine through the inputs
// listed in its doc table, one case per row and the orders that matter.
func TestProcessStore(t *testing.T) {
	const (
		create  = types.EventCreate
		start   = types.EventStart
		exit    = types.EventExit
		added   = types.EventExecAdded
		started = types.EventExecStarted
	)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		steps []storeStep
	}{
		{"lifecycle delivered once", []storeStep{
			step(ev(create, "c", 10), create),
			step(ev(start, "c", 10), start),
			step(ev(exit, "c", 10), exit),
			step(ev(exit, "c", 10)),
		}},
		{"start after exit is dropped", []storeStep{
			step(ev(create, "c", 10), create),
			step(ev(exit, "c", 10), exit),
			step(ev(start, "c", 10)),
		}},
		{"exec started after exit is dropped", []storeStep{
			step(ev(added, "e", 0), added),
			step(ev(exit, "e", 11), exit),
			step(ev(started, "e", 11)),
		}},
		{"TaskDelete before the exit delivers the exit once", []storeStep{
			step(ev(start, "c", 10), start),
			step(deletedEv("c", 10), exit),
			step(ev(exit, "c", 10)),
		}},
		{"TaskDelete after the exit delivers nothing", []storeStep{
			step(ev(start, "c", 10), start),
			step(ev(exit, "c", 10), exit),
			step(deletedEv("c", 10)),
		}},
		{"TaskDelete of a task without pid delivers nothing", []storeStep{
			step(deletedEv("c", 0)),
		}},
		{"TaskDelete of a created, never started task delivers nothing", []storeStep{
			step(ev(create, "c", 10), create),
			step(deletedEv("c", 10)),
		}},
		{"TaskDelete of an unknown process delivers nothing", []storeStep{
			step(deletedEv("c", 10)),
		}},
		{"a late TaskDelete of an earlier incarnation leaves the live one alone", []storeStep{
			step(ev(start, "c", 10), start),
			step(ev(exit, "c", 10), exit),
			step(ev(create, "c", 20), create),
			step(ev(start, "c", 20), start),
			step(deletedEv("c", 10)),
			step(ev(exit, "c", 20), exit),
		}},
		{"new incarnation of the same id", []storeStep{
			step(ev(exit, "c", 10), exit),
			step(ev(create, "c", 20), create),
			step(ev(start, "c", 20), start),
			step(ev(exit, "c", 20), exit),
			step(ev(exit, "c", 10)),
		}},
		{"pid reused by a later incarnation is a new process", []storeStep{
			step(createAt(create, "c", 10, t0), create),
			step(ev(start, "c", 10), start),
			step(exitAt("c", 10, t0.Add(time.Second)), exit),
			step(deletedEv("c", 10)),
			step(createAt(create, "c", 10, t0.Add(2*time.Second)), create),
			step(ev(start, "c", 10), start),
			// A late copy of the first exit is older than this create.
			step(exitAt("c", 10, t0.Add(time.Second))),
			step(exitAt("c", 10, t0.Add(3*time.Second)), exit),
			step(exitAt("c", 10, t0.Add(3*time.Second))),
		}},
		{"pid reused through the API", []storeStep{
			{do: "observeCreate", ev: createAt("", "c", 10, t0)},
			api("observeStart", "c", 10),
			step(exitAt("c", 10, t0.Add(time.Second)), exit),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
			{do: "observeCreate", ev: createAt("", "c", 10, t0.Add(2*time.Second))},
			step(createAt(create, "c", 10, t0.Add(2*time.Second)), create),
			api("observeStart", "c", 10),
			step(ev(start, "c", 10), start),
			step(exitAt("c", 10, t0.Add(3*time.Second)), exit),
		}},
		{"exec id reused with the same pid", []storeStep{
			step(createAt(added, "e", 0, t0), added),
			step(ev(started, "e", 11), started),
			step(exitAt("e", 11, t0.Add(time.Second)), exit),
			step(createAt(added, "e", 0, t0.Add(2*time.Second)), added),
			step(ev(started, "e", 11), started),
			step(exitAt("e", 11, t0.Add(3*time.Second)), exit),
		}},
		{"same exec id in two containers", []storeStep{
			step(ev(exit, "e", 11), exit),
			step(taskEvent{typ: exit, info: types.EventInfo{ContainerID: "other", ProcessID: "e", Pid: 11}}, exit),
		}},
		{"events without process are always delivered", []storeStep{
			step(taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: "c"}}, types.EventPaused),
			step(taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: "c"}}, types.EventPaused),
			step(taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: "c"}}, types.EventOOM),
		}},
		{"delete through the API consumes an exit that was not delivered", []storeStep{
			api("observeLoaded", "c", 10),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
			step(deletedEv("c", 10)),
			step(ev(exit, "c", 10)),
		}},
		{"exit and TaskDelete arriving during the delete are held, then dropped", []storeStep{
			step(ev(start, "c", 10), start),
			api("deleteStarted", "c", 10),
			step(ev(exit, "c", 10)),
			step(deletedEv("c", 10)),
			api("deleteDone", "c", 10),
			step(ev(exit, "c", 10)),
		}},
		{"events held during a failed delete go on in order", []storeStep{
			step(ev(start, "c", 10), start),
			api("deleteStarted", "c", 10),
			step(ev(types.EventPaused, "", 0)),
			step(ev(exit, "c", 10)),
			api("deleteFailed", "c", 10, types.EventPaused, exit),
		}},
		{"events wait for every delete of the container", []storeStep{
			step(ev(start, "c", 10), start),
			step(ev(started, "e", 11), started),
			api("deleteStarted", "c", 0),
			api("deleteStarted", "c", 0),
			step(ev(exit, "e", 11)),
			step(ev(exit, "c", 10)),
			api("deleteDone", "e", 11),
			api("deleteFailed", "c", 10, exit),
		}},
		{"an exit delivered before the delete is not taken back", []storeStep{
			step(ev(start, "c", 10), start),
			step(ev(exit, "c", 10), exit),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
		}},
		{"ForceDelete of a created task: its kill exit is not delivered", []storeStep{
			api("observeCreate", "c", 10),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
			step(ev(exit, "c", 10)),
		}},
		{"reconcile after an API delete delivers nothing", []storeStep{
			api("observeStart", "c", 10),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
			step(taskEvent{typ: exit, synthesized: true, info: types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 10, ExitCode: 255}}),
		}},
		{"a loaded task found created owes no exit on TaskDelete", []storeStep{
			api("observeLoaded", "c", 10),
			api("createdStatus", "c", 10),
			step(deletedEv("c", 10)),
		}},
		{"a loaded task owes its exit", []storeStep{
			api("observeLoaded", "c", 10),
			step(deletedEv("c", 10), exit),
		}},
		{"a deleted container's late exit is deduplicated", []storeStep{
			step(ev(start, "c", 10), start),
			step(ev(exit, "c", 10), exit),
			api("containerDeleted", "c", 0),
			step(ev(exit, "c", 10)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, emitted := newTestStore()
			runStore(t, s, emitted, tc.steps)
		})
	}
}

func TestProcessStorePending(t *testing.T) {
	s, _ := newTestStore()
	s.observeStart("a", "a", 10)
	s.observeStart("a", "e1", 11)
	s.observeStart("b", "b", 20)
	s.observeStart("c", "c", 0)                // unknown pid: nothing to reconcile
	s.observeCreate("d", "d", 30, time.Time{}) // created, never started: no exit due
	s.handle(ev(types.EventExit, "e1", 11))
	s.handle(taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: "a", ProcessID: "e1", Pid: 11}})
	s.containerDeleted("b")

	got := map[string]uint32{}
	for _, p := range s.pending() {
		got[p.containerID+"/"+p.processID] = p.pid
	}
	if len(got) != 1 || got["a/a"] != 10 {
		t.Fatalf("pending = %v, want only a/a pid 10", got)
	}
	// An observed pid whose exit was delivered is not revived.
	s.observeStart("a", "e1", 11)
	if n := len(s.pending()); n != 1 {
		t.Fatalf("pending after re-observing an exited pid: %d entries, want 1", n)
	}
}

// TestProcessStoreBounded checks that deleted processes are forgotten
// after the TTL and beyond the bound, so that the bookkeeping does not
// grow with the number of containers a daemon ever ran.
func TestProcessStoreBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var emitted []taskEvent
	s := newProcessStore(time.Minute, 50, &eventCounters{}, func(e taskEvent) { emitted = append(emitted, e) })
	s.now = func() time.Time { return now }
	info := func(id string, pid uint32) types.EventInfo {
		return types.EventInfo{ContainerID: id, ProcessID: id, Pid: pid}
	}
	for i := range 200 {
		id := fmt.Sprintf("c%d", i)
		s.handle(taskEvent{typ: types.EventStart, info: info(id, uint32(i+1))})
		s.handle(taskEvent{typ: types.EventExit, info: info(id, uint32(i+1))})
		s.handle(taskEvent{deleted: true, info: info(id, uint32(i+1))})
	}
	if n := s.size(); n > 50 {
		t.Fatalf("%d processes remembered, bound is 50", n)
	}
	// A late exit of a recent tombstone is still deduplicated.
	emitted = nil
	s.handle(taskEvent{typ: types.EventExit, info: info("c199", 200)})
	if len(emitted) != 0 {
		t.Fatal("late exit of a deleted process delivered twice")
	}
	now = now.Add(2 * time.Minute)
	s.handle(taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: "x"}})
	if n := s.size(); n != 0 {
		t.Fatalf("%d processes remembered after the TTL, want 0", n)
	}
	// A live process is never forgotten.
	s.handle(taskEvent{typ: types.EventStart, info: info("live", 1)})
	now = now.Add(time.Hour)
	s.handle(taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: "x"}})
	if len(s.pending()) != 1 {
		t.Fatal("live process forgotten")
	}
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, 100 * time.Millisecond, 5 * time.Second} {
		for range 100 {
			j := jitter(d)
			if j < d/2 || (d > 1 && j >= d) {
				t.Fatalf("jitter(%v) = %v, want in [d/2, d)", d, j)
			}
		}
	}
}
