package libcontainerd

import (
	"fmt"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// TestProcessStore walks the process state machine through the inputs
// listed in its doc table, one case per row and the orders that matter.
func TestProcessStore(t *testing.T) {
	const create, start, exit, added, started = types.EventCreate, types.EventStart, types.EventExit, types.EventExecAdded, types.EventExecStarted
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
		{"an exec reported by the API after its exit was delivered stays exited", []storeStep{
			step(createAt(added, "e", 0, t0.Add(time.Millisecond)), added),
			step(ev(started, "e", 11), started),
			step(exitAt("e", 11, t0.Add(2*time.Millisecond)), exit),
			{do: "observeCreate", ev: createAt("", "e", 11, t0)},
			api("observeStart", "e", 11),
			step(exitAt("e", 11, t0.Add(2*time.Millisecond))),
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
		{"a loaded task found exited before its load: the engine's Delete has it, no event", []storeStep{
			{do: "observeLoaded", ev: createAt("", "c", 10, t0.Add(time.Second))},
			step(reconciledExit("c", 10, t0)),
			api("deleteStarted", "c", 10),
			api("deleteDone", "c", 10),
			step(deletedEv("c", 10)),
		}},
		{"a loaded task found exited before its load, then deleted by someone else: delivered once", []storeStep{
			{do: "observeLoaded", ev: createAt("", "c", 10, t0.Add(time.Second))},
			step(reconciledExit("c", 10, t0)),
			step(reconciledExit("c", 10, t0)),
			step(deletedEv("c", 10), exit),
			step(reconciledExit("c", 10, t0)),
		}},
		{"a loaded task found exited after its load owes its exit", []storeStep{
			{do: "observeLoaded", ev: createAt("", "c", 10, t0)},
			step(reconciledExit("c", 10, t0.Add(time.Second)), exit),
			step(exitAt("c", 10, t0.Add(time.Second))),
		}},
		{"a TaskExit from before the load is delivered, as moby's stream does", []storeStep{
			{do: "observeLoaded", ev: createAt("", "c", 10, t0.Add(time.Second))},
			step(exitAt("c", 10, t0), exit),
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

// TestProcessStoreExitDelivered checks when a delete may skip containerd's
// status check: only for the incarnation whose exit event was delivered,
// until it is deleted.
func TestProcessStoreExitDelivered(t *testing.T) {
	s, _ := newTestStore()
	delivered := func(when string, pid uint32, want bool) {
		t.Helper()
		if got := s.exitDelivered("c", "c", pid); got != want {
			t.Fatalf("%s: exitDelivered(pid %d) = %v, want %v", when, pid, got, want)
		}
	}
	delivered("unknown process", 10, false)
	s.observeCreate("c", "c", 10, time.Time{})
	s.observeStart("c", "c", 10)
	delivered("running", 10, false)
	s.handle(ev(types.EventExit, "c", 10))
	delivered("exit delivered", 10, true)
	delivered("another pid", 11, false)
	s.deleteDone(s.deleteStarted("c"), "c", "c", 10, true)
	delivered("deleted", 10, false)

	s.observeStart("c", "c", 12)
	s.handle(deletedEv("c", 12))
	delivered("exit delivered from someone else's delete", 12, false)
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
