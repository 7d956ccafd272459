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

func TestEventStateExactlyOnce(t *testing.T) {
	info := func(proc string, pid uint32) types.EventInfo {
		return types.EventInfo{ContainerID: "c", ProcessID: proc, Pid: pid}
	}
	type step struct {
		typ     types.EventType
		deleted bool
		info    types.EventInfo
		want    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"lifecycle delivered once", []step{
			{types.EventCreate, false, info("c", 10), true},
			{types.EventStart, false, info("c", 10), true},
			{types.EventExit, false, info("c", 10), true},
			{types.EventExit, false, info("c", 10), false},
		}},
		{"start after exit is dropped", []step{
			{types.EventCreate, false, info("c", 10), true},
			{types.EventExit, false, info("c", 10), true},
			{types.EventStart, false, info("c", 10), false},
		}},
		{"exec started after exit is dropped", []step{
			{types.EventExecAdded, false, info("e", 0), true},
			{types.EventExit, false, info("e", 11), true},
			{types.EventExecStarted, false, info("e", 11), false},
		}},
		{"delete before exit delivers the exit once", []step{
			{types.EventStart, false, info("c", 10), true},
			{"", true, info("c", 10), true},
			{types.EventExit, false, info("c", 10), false},
		}},
		{"delete after exit delivers nothing", []step{
			{types.EventExit, false, info("c", 10), true},
			{"", true, info("c", 10), false},
		}},
		{"delete of a task without pid delivers nothing", []step{
			{"", true, info("c", 0), false},
		}},
		{"delete of a created, never started task delivers nothing", []step{
			{types.EventCreate, false, info("c", 10), true},
			{"", true, info("c", 10), false},
		}},
		{"delete of an unknown process delivers nothing", []step{
			{"", true, info("c", 10), false},
		}},
		{"new incarnation of the same id", []step{
			{types.EventExit, false, info("c", 10), true},
			{types.EventCreate, false, info("c", 20), true},
			{types.EventStart, false, info("c", 20), true},
			{types.EventExit, false, info("c", 20), true},
			{types.EventExit, false, info("c", 10), false},
		}},
		{"same exec id in two processes", []step{
			{types.EventExit, false, info("e", 11), true},
			{types.EventExit, false, types.EventInfo{ContainerID: "other", ProcessID: "e", Pid: 11}, true},
		}},
		{"events without process are always delivered", []step{
			{types.EventPaused, false, types.EventInfo{ContainerID: "c"}, true},
			{types.EventPaused, false, types.EventInfo{ContainerID: "c"}, true},
			{types.EventOOM, false, types.EventInfo{ContainerID: "c"}, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newEventState(time.Minute, 100)
			for i, st := range tc.steps {
				var got bool
				if st.deleted {
					got = s.deleted(st.info)
				} else {
					got = s.accept(st.typ, st.info)
				}
				if got != st.want {
					t.Fatalf("step %d (%s deleted=%v %+v) = %v, want %v", i, st.typ, st.deleted, st.info, got, st.want)
				}
			}
		})
	}
}

func TestEventStatePending(t *testing.T) {
	s := newEventState(time.Minute, 100)
	s.observe("a", "a", 10, true)
	s.observe("a", "e1", 11, true)
	s.observe("b", "b", 20, true)
	s.observe("c", "c", 0, true)   // unknown pid: nothing to reconcile
	s.observe("d", "d", 30, false) // created, never started: no exit due
	s.accept(types.EventExit, types.EventInfo{ContainerID: "a", ProcessID: "e1", Pid: 11})
	s.forgetContainer("b")

	got := map[string]uint32{}
	for _, p := range s.pending() {
		got[p.containerID+"/"+p.processID] = p.pid
	}
	if len(got) != 1 || got["a/a"] != 10 {
		t.Fatalf("pending = %v, want only a/a pid 10", got)
	}
	// An observed pid whose exit was accepted is not revived.
	s.observe("a", "e1", 11, true)
	if n := len(s.pending()); n != 1 {
		t.Fatalf("pending after re-observing an exited pid: %d entries, want 1", n)
	}
}

// TestEventStateBounded checks that deleted processes are forgotten after
// the TTL and beyond the bound, so that the bookkeeping does not grow with
// the number of containers a daemon ever ran.
func TestEventStateBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newEventState(time.Minute, 50)
	s.now = func() time.Time { return now }
	for i := range 200 {
		id := fmt.Sprintf("c%d", i)
		s.accept(types.EventStart, types.EventInfo{ContainerID: id, ProcessID: id, Pid: uint32(i + 1)})
		s.accept(types.EventExit, types.EventInfo{ContainerID: id, ProcessID: id, Pid: uint32(i + 1)})
		s.deleted(types.EventInfo{ContainerID: id, ProcessID: id, Pid: uint32(i + 1)})
	}
	if n := s.size(); n > 50 {
		t.Fatalf("%d processes remembered, bound is 50", n)
	}
	// A late exit of a recent tombstone is still deduplicated.
	if s.accept(types.EventExit, types.EventInfo{ContainerID: "c199", ProcessID: "c199", Pid: 200}) {
		t.Fatal("late exit of a deleted process delivered twice")
	}
	now = now.Add(2 * time.Minute)
	s.accept(types.EventOOM, types.EventInfo{ContainerID: "x"})
	if n := s.size(); n != 0 {
		t.Fatalf("%d processes remembered after the TTL, want 0", n)
	}
	// A live process is never forgotten.
	s.accept(types.EventStart, types.EventInfo{ContainerID: "live", ProcessID: "live", Pid: 1})
	now = now.Add(time.Hour)
	s.accept(types.EventOOM, types.EventInfo{ContainerID: "x"})
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
