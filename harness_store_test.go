package libcontainerd

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// storeStep is one input to the process store and what it must emit; the
// process store's tests (events_store_test.go, events_oom_test.go) are
// tables of them.
type storeStep struct {
	do   string // "event", "observeCreate", "observeStart", "observeLoaded", "createdStatus", "deleteStarted", "deleteDone", "deleteFailed", "containerDeleted"
	ev   taskEvent
	want []types.EventType // emitted by this step, in order
}

// ev is an event of type typ of process proc, pid, of container "c".
func ev(typ types.EventType, proc string, pid uint32) taskEvent {
	return taskEvent{typ: typ, info: types.EventInfo{ContainerID: "c", ProcessID: proc, Pid: pid}}
}

// exitAt is the exit of process proc, pid, at time at.
func exitAt(proc string, pid uint32, at time.Time) taskEvent {
	e := ev(types.EventExit, proc, pid)
	e.info.ExitedAt = at
	return e
}

// reconciledExit is the exit of process proc, pid, at time at, as
// reconciliation synthesizes it from a task it found stopped.
func reconciledExit(proc string, pid uint32, at time.Time) taskEvent {
	e := exitAt(proc, pid, at)
	e.synthesized = true
	return e
}

// createAt is an event of type typ of process proc, pid, that containerd
// published at time at.
func createAt(typ types.EventType, proc string, pid uint32, at time.Time) taskEvent {
	e := ev(typ, proc, pid)
	e.at = at
	return e
}

// deletedEv is the TaskDelete of process proc, pid.
func deletedEv(proc string, pid uint32) taskEvent {
	return taskEvent{deleted: true, info: types.EventInfo{ContainerID: "c", ProcessID: proc, Pid: pid}}
}

// step hands e to the store, which must emit want.
func step(e taskEvent, want ...types.EventType) storeStep {
	return storeStep{do: "event", ev: e, want: want}
}

// api is the call do of the client on process proc, pid, after which the
// store must emit want.
func api(do, proc string, pid uint32, want ...types.EventType) storeStep {
	return storeStep{do: do, ev: ev("", proc, pid), want: want}
}

// heldDeletes keeps, per store, the deletes runStore started and has not
// settled yet: a test may hand its steps to runStore one at a time.
var heldDeletes sync.Map // *processStore -> *[]uint64

// runStore runs steps on s, checking what each emits into emitted.
func runStore(t *testing.T, s *processStore, emitted *[]taskEvent, steps []storeStep) {
	t.Helper()
	v, _ := heldDeletes.LoadOrStore(s, new([]uint64))
	holds := v.(*[]uint64) // deletes started, not done, oldest first
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
			s.observeLoaded(i.ContainerID, i.Pid, st.ev.at)
		case "createdStatus":
			s.observeCreatedStatus(i.ContainerID, i.Pid)
		case "deleteStarted":
			*holds = append(*holds, s.deleteStarted(i.ContainerID))
		case "deleteDone", "deleteFailed":
			if len(*holds) == 0 {
				t.Fatalf("step %d: %s without deleteStarted", n, st.do)
			}
			s.deleteDone((*holds)[0], i.ContainerID, i.ProcessID, i.Pid, st.do == "deleteDone")
			*holds = (*holds)[1:]
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

// newTestStore is a process store whose emitted events are collected.
func newTestStore() (*processStore, *[]taskEvent) {
	var emitted []taskEvent
	s := newProcessStore(time.Minute, 100, &eventCounters{}, func(e taskEvent) { emitted = append(emitted, e) })
	return s, &emitted
}
