package libcontainerd

import (
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// oomStep is a step of the process store with, for an exit, what
// oomCheckDue answers before it.
type oomStep struct {
	storeStep
	due bool
}

// exit137 is an exit of the init process with status 137 at at; killed is
// what the memory cgroup check found.
func exit137(pid uint32, at time.Time, killed bool) taskEvent {
	e := exitAt("c", pid, at)
	e.info.ExitCode = oomExitStatus
	e.oomKilled = killed
	return e
}

// taskOOM is a TaskOOM of container c published at at.
func taskOOM(at time.Time) taskEvent {
	return taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: "c"}, at: at}
}

// due marks an exit step for which the cgroup check is due.
func due(st storeStep) oomStep { return oomStep{storeStep: st, due: true} }

func notDue(st storeStep) oomStep { return oomStep{storeStep: st} }

// TestProcessStoreOOM walks the OOM rule of the process store: an exit 137
// of the init process whose incarnation got no EventOOM asks for the cgroup
// check, an OOM kill found there is delivered as EventOOM before the exit,
// once, and a TaskOOM never doubles it.
func TestProcessStoreOOM(t *testing.T) {
	const (
		create = types.EventCreate
		start  = types.EventStart
		exit   = types.EventExit
		oom    = types.EventOOM
	)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	synthesizedExit := func(pid uint32, killed bool) taskEvent {
		e := exit137(pid, time.Time{}, killed)
		e.synthesized = true
		return e
	}
	for _, tc := range []struct {
		name  string
		steps []oomStep
	}{
		{"TaskOOM lost, OOM kill recorded: EventOOM, then the exit", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), true), oom, exit)),
		}},
		{"a TaskOOM after the synthesized one is dropped", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), true), oom, exit)),
			notDue(step(taskOOM(at(1)))),
			notDue(step(exit137(10, at(1), true))),
		}},
		{"TaskOOM delivered: no check, nothing doubled", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(taskOOM(at(1)), oom)),
			notDue(step(exit137(10, at(1), true), exit)),
		}},
		{"SIGKILL, no OOM kill recorded: the exit alone", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), false), exit)),
		}},
		{"only status 137 is checked", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(func() taskEvent { e := exit137(10, at(1), true); e.info.ExitCode = 1; return e }(), exit)),
		}},
		{"only the init process is checked", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(ev(types.EventExecStarted, "e", 11), types.EventExecStarted)),
			notDue(step(func() taskEvent { e := exit137(11, at(1), true); e.info.ProcessID = "e"; return e }(), exit)),
		}},
		{"a repeated exit is neither checked nor delivered", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), false), exit)),
			notDue(step(exit137(10, at(1), true))),
		}},
		{"a stray exit beside the known process gets no EventOOM", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(exit137(99, at(1), true), exit)),
		}},
		{"the exit from a TaskDelete gets no EventOOM: the cgroup is gone", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(func() taskEvent {
				e := deletedEv("c", 10)
				e.info.ExitCode = oomExitStatus
				e.oomKilled = true
				return e
			}(), exit)),
		}},
		{"an exit found by reconciliation is checked like a TaskExit", []oomStep{
			notDue(api("observeStart", "c", 10)),
			due(step(synthesizedExit(10, true), oom, exit)),
			notDue(step(exit137(10, at(1), true))),
			notDue(step(taskOOM(at(1)))),
		}},
		{"a TaskOOM arriving while containerd's exit was reconciled without one is delivered", []oomStep{
			notDue(api("observeStart", "c", 10)),
			due(step(synthesizedExit(10, false), exit)),
			notDue(step(taskOOM(at(1)), oom)),
		}},
		{"TaskOOM of a running incarnation (a child killed): the exit is not checked", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(taskOOM(at(5)), oom)),
			notDue(step(taskOOM(at(6)), oom)),
			notDue(step(exit137(10, at(9), true), exit)),
		}},
		{"a TaskOOM of an unknown container, then its exit: not doubled", []oomStep{
			notDue(step(taskOOM(at(1)), oom)),
			notDue(step(exit137(10, at(2), true), exit)),
		}},
		{"a TaskOOM before the task is loaded counts for it", []oomStep{
			notDue(step(taskOOM(at(1)), oom)),
			notDue(api("observeLoaded", "c", 10)),
			notDue(step(exit137(10, at(2), true), exit)),
		}},
		{"a loaded task without a TaskOOM is checked", []oomStep{
			notDue(api("observeLoaded", "c", 10)),
			due(step(exit137(10, at(2), true), oom, exit)),
		}},
		{"a late TaskOOM of the previous incarnation is dropped after its synthesized one", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), true), oom, exit)),
			notDue(step(createAt(create, "c", 20, at(10)), create)),
			notDue(step(ev(start, "c", 20), start)),
			notDue(step(taskOOM(at(1)))),
			// The new incarnation's own TaskOOM is delivered...
			notDue(step(taskOOM(at(11)), oom)),
			// ...and its exit not checked.
			notDue(step(exit137(20, at(12), true), exit)),
		}},
		{"an earlier incarnation's TaskOOM does not count for the next one", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			notDue(step(taskOOM(at(1)), oom)),
			notDue(step(exit137(10, at(1), true), exit)),
			notDue(step(createAt(create, "c", 20, at(10)), create)),
			notDue(step(ev(start, "c", 20), start)),
			due(step(exit137(20, at(12), true), oom, exit)),
		}},
		{"a TaskOOM of the previous incarnation that arrives late is delivered, as with moby", []oomStep{
			notDue(step(createAt(create, "c", 10, at(0)), create)),
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), false), exit)),
			notDue(step(createAt(create, "c", 20, at(10)), create)),
			notDue(step(taskOOM(at(1)), oom)),
			notDue(step(ev(start, "c", 20), start)),
			due(step(exit137(20, at(12), false), exit)),
		}},
		{"an exit held during a failed delete keeps its EventOOM", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(api("deleteStarted", "c", 10)),
			due(step(exit137(10, at(1), true))),
			notDue(api("deleteFailed", "c", 10, oom, exit)),
		}},
		{"an exit consumed by a delete through the API gets no EventOOM", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			notDue(api("deleteStarted", "c", 10)),
			due(step(exit137(10, at(1), true))),
			notDue(api("deleteDone", "c", 10)),
		}},
		{"a TaskOOM of a deleted container with a synthesized one is dropped", []oomStep{
			notDue(step(ev(start, "c", 10), start)),
			due(step(exit137(10, at(1), true), oom, exit)),
			notDue(api("containerDeleted", "c", 0)),
			notDue(step(taskOOM(at(1)))),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, emitted := newTestStore()
			for n, st := range tc.steps {
				if st.do == "event" && st.ev.typ == types.EventExit && !st.ev.deleted {
					if got := s.oomCheckDue(st.ev); got != st.due {
						t.Fatalf("step %d (%+v): oomCheckDue = %v, want %v", n, st.ev.info, got, st.due)
					}
				}
				runStore(t, s, emitted, []storeStep{st.storeStep})
				for _, e := range *emitted {
					if e.typ == types.EventOOM && (e.info.ProcessID != "" || e.info.Pid != 0 || e.info.ContainerID != "c") {
						t.Fatalf("step %d: EventOOM info %+v, want the container ID only, as containerd's", n, e.info)
					}
				}
			}
		})
	}
}

// TestProcessStoreOOMDecisionGoesStale checks that the store decides again
// when the checked exit reaches it: a TaskOOM delivered between the check
// and the exit wins.
func TestProcessStoreOOMDecisionGoesStale(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	s, emitted := newTestStore()
	s.handle(createAt(types.EventCreate, "c", 10, t0))
	s.handle(ev(types.EventStart, "c", 10))
	exit := exit137(10, t0.Add(time.Second), true)
	if !s.oomCheckDue(exit) {
		t.Fatal("check not due")
	}
	s.handle(taskOOM(t0.Add(time.Second)))
	*emitted = (*emitted)[:0]
	s.handle(exit)
	if got := eventTypesOf(*emitted); len(got) != 1 || got[0] != types.EventExit {
		t.Fatalf("emitted %v, want the exit only", got)
	}
}

func eventTypesOf(evs []taskEvent) []types.EventType {
	var out []types.EventType
	for _, e := range evs {
		out = append(out, e.typ)
	}
	return out
}
