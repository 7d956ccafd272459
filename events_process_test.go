package libcontainerd

import (
	"fmt"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// The store-level tests of the holes a daemon cannot provoke on demand; the
// ones it can are integration tests (events_deletes_test.go,
// events_stream_test.go, exec_test.go).

// fakeClock is a store's clock and timers, moved by hand.
type fakeClock struct {
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock(s *processStore) *fakeClock {
	c := &fakeClock{now: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	s.now = func() time.Time { return c.now }
	s.afterFunc = func(d time.Duration, f func()) func() bool {
		t := &fakeTimer{at: c.now.Add(d), f: f}
		c.timers = append(c.timers, t)
		return func() bool { was := !t.stopped; t.stopped = true; return was }
	}
	return c
}

// advance moves the clock by d and fires the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			t.f()
		}
	}
}

// TestProcessStoreReburiedTombstoneAge is a record revived and buried
// again: its age counts from the second burial, so a late exit of the
// second run is still recognised after the first burial's TTL.
func TestProcessStoreReburiedTombstoneAge(t *testing.T) {
	s, emitted := newTestStore() // TTL one minute
	clock := newFakeClock(s)
	s.handle(ev(types.EventStart, "c", 10))
	s.handle(exitAt("c", 10, clock.now))
	s.handle(deletedEv("c", 10))
	clock.advance(50 * time.Second)
	s.handle(createAt(types.EventCreate, "c", 20, clock.now))
	s.handle(ev(types.EventStart, "c", 20))
	s.handle(exitAt("c", 20, clock.now))
	s.handle(deletedEv("c", 20))
	clock.advance(20 * time.Second) // 70 s after the first burial, 20 s after the second
	*emitted = (*emitted)[:0]
	s.handle(exitAt("c", 20, clock.now.Add(-20*time.Second)))
	if len(*emitted) != 0 {
		t.Fatalf("a late exit 20 s after its delete was delivered again: %v", eventTypesOf(*emitted))
	}
	clock.advance(time.Minute)
	s.handle(ev(types.EventPaused, "x", 0))
	if n := s.size(); n != 0 {
		t.Fatalf("%d records after the second burial's TTL, want 0", n)
	}
}

// TestProcessStorePidZeroExit is containerd's clean-up after a dead shim:
// a TaskExit (or TaskDelete) without pid. It is the exit of the current
// run, delivered once; nothing is left for reconciliation to add.
func TestProcessStorePidZeroExit(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  taskEvent
	}{
		{"TaskExit", ev(types.EventExit, "c", 0)},
		{"TaskDelete", deletedEv("c", 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, emitted := newTestStore()
			s.handle(ev(types.EventStart, "c", 10))
			*emitted = (*emitted)[:0]
			s.handle(tc.end)
			if got := eventTypesOf(*emitted); len(got) != 1 || got[0] != types.EventExit {
				t.Fatalf("emitted %v, want one exit", got)
			}
			if p := s.pending(); len(p) != 0 {
				t.Fatalf("pending after the exit: %v, want none (reconciliation would add a second exit)", p)
			}
			*emitted = (*emitted)[:0]
			s.handle(ev(types.EventExit, "c", 10))
			s.handle(deletedEv("c", 10))
			if len(*emitted) != 0 {
				t.Fatalf("the exit with its pid after the one without: %v delivered", eventTypesOf(*emitted))
			}
		})
	}
}

// TestProcessStoreDeleteHoldLimit is a delete through the API that hangs:
// the container's exit waits for it no longer than deleteHoldLimit, and
// the delete's own success later takes nothing back.
func TestProcessStoreDeleteHoldLimit(t *testing.T) {
	s, emitted := newTestStore()
	clock := newFakeClock(s)
	s.handle(ev(types.EventStart, "c", 10))
	s.handle(ev(types.EventExecStarted, "e", 11))
	hold := s.deleteStarted("c")
	*emitted = (*emitted)[:0]
	s.handle(ev(types.EventExit, "c", 10))
	s.handle(taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: "x", ProcessID: "x", Pid: 20}})
	if got := eventTypesOf(*emitted); fmt.Sprint(got) != "[start]" {
		t.Fatalf("during the delete: emitted %v, want the other container's start only", got)
	}
	clock.advance(deleteHoldLimit - time.Millisecond)
	if len(*emitted) != 1 {
		t.Fatalf("before the limit: emitted %v", eventTypesOf(*emitted))
	}
	clock.advance(time.Millisecond)
	if got := eventTypesOf(*emitted); fmt.Sprint(got) != "[start exit]" {
		t.Fatalf("at the limit: emitted %v, want the held exit", got)
	}
	if n := s.counters.holdsExpired.Load(); n != 1 {
		t.Fatalf("holds expired: %d, want 1", n)
	}
	s.handle(ev(types.EventExit, "e", 11))
	if got := eventTypesOf(*emitted); len(got) != 3 {
		t.Fatalf("after the limit the container's events wait again: %v", got)
	}
	s.deleteDone(hold, "c", "e", 11, true)
	if len(*emitted) != 3 {
		t.Fatalf("the delete's end emitted more: %v", eventTypesOf(*emitted))
	}
	if len(s.holds) != 0 || len(s.deletes) != 0 {
		t.Fatalf("left behind: %d holds, %d deletes", len(s.holds), len(s.deletes))
	}
}

// TestProcessStoreOOMCheckOffTheLoop has the memory cgroup check of one
// container's exit hang: the other containers' events go on meanwhile, and
// the container's own wait behind its exit, in order.
func TestProcessStoreOOMCheckOffTheLoop(t *testing.T) {
	s, emitted := newTestStore()
	var pending []func(bool)
	s.checkOOM = func(ev taskEvent, done func(bool)) { pending = append(pending, done) }
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := range 100 {
		id := fmt.Sprintf("c%d", i)
		s.handle(taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: id, ProcessID: id, Pid: uint32(100 + i)}})
		e := taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: id, ProcessID: id, Pid: uint32(100 + i), ExitCode: oomExitStatus, ExitedAt: t0}}
		s.handle(e)
		s.handle(taskEvent{typ: types.EventPaused, info: types.EventInfo{ContainerID: id}})
	}
	if len(pending) != 100 {
		t.Fatalf("%d checks started, want 100 (one per exit, none waiting for another)", len(pending))
	}
	*emitted = (*emitted)[:0]
	s.handle(taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: "x", ProcessID: "x", Pid: 20}})
	if got := eventTypesOf(*emitted); fmt.Sprint(got) != "[start]" {
		t.Fatalf("with 100 checks pending, another container's start: emitted %v", got)
	}
	*emitted = (*emitted)[:0]
	for i, done := range pending {
		done(i%2 == 0)
	}
	byContainer := map[string][]types.EventType{}
	for _, e := range *emitted {
		byContainer[e.info.ContainerID] = append(byContainer[e.info.ContainerID], e.typ)
	}
	for i := range 100 {
		want := "[exit paused]"
		if i%2 == 0 {
			want = "[oom exit paused]"
		}
		if got := fmt.Sprint(byContainer[fmt.Sprintf("c%d", i)]); got != want {
			t.Fatalf("c%d: %s, want %s", i, got, want)
		}
	}
	if len(s.holds) != 0 {
		t.Fatalf("%d holds left", len(s.holds))
	}
}

// TestProcessStorePendingOrder checks that reconciliation asks about a
// container's execs before its init process, whose exit the engine must
// get last.
func TestProcessStorePendingOrder(t *testing.T) {
	for range 20 {
		s, _ := newTestStore()
		for _, c := range []string{"b", "a"} {
			s.observeStart(c, c, 10)
			for _, e := range []string{"z", "e", "m"} {
				s.observeStart(c, e, 11)
			}
		}
		var got []string
		for _, p := range s.pending() {
			got = append(got, p.containerID+"/"+p.processID)
		}
		if want := "[a/e a/m a/z a/a b/e b/m b/z b/b]"; fmt.Sprint(got) != want {
			t.Fatalf("pending %v, want %s", got, want)
		}
	}
}

// TestProcessStoreBoundedUnderChurn runs 100,000 container lifecycles with
// execs, a tenth of them failing to start, through the store, as the
// stream and the API report them: what it remembers stays within the
// tombstone bound plus the live processes.
func TestProcessStoreBoundedUnderChurn(t *testing.T) {
	const bound = 64
	var emitted int
	s := newProcessStore(time.Minute, bound, &eventCounters{}, func(taskEvent) { emitted++ })
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return t0 }
	maxSize, pid := 0, uint32(1)
	for i := range 100_000 {
		id := fmt.Sprintf("c%d", i%300) // container IDs reused
		init := pid
		pid++
		s.observeCreate(id, id, init, t0)
		s.handle(taskEvent{typ: types.EventCreate, info: types.EventInfo{ContainerID: id, ProcessID: id, Pid: init}, at: t0})
		s.handle(taskEvent{typ: types.EventStart, info: types.EventInfo{ContainerID: id, ProcessID: id, Pid: init}})
		for e := range 3 {
			exec := fmt.Sprintf("exec-%d-%d", i, e)
			s.handle(taskEvent{typ: types.EventExecAdded, info: types.EventInfo{ContainerID: id, ProcessID: exec}, at: t0})
			if (i+e)%10 == 0 {
				s.execStartFailed(id, exec, t0.Add(time.Millisecond))
				continue
			}
			s.handle(taskEvent{typ: types.EventExecStarted, info: types.EventInfo{ContainerID: id, ProcessID: exec, Pid: pid}})
			s.handle(taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: id, ProcessID: exec, Pid: pid, ExitedAt: t0}})
			pid++
		}
		s.handle(taskEvent{typ: types.EventExit, info: types.EventInfo{ContainerID: id, ProcessID: id, Pid: init, ExitedAt: t0}})
		s.deleteDone(s.deleteStarted(id), id, id, init, true)
		if i%7 == 0 {
			s.containerDeleted(id)
		}
		maxSize = max(maxSize, s.size())
	}
	if maxSize > bound+4 {
		t.Fatalf("up to %d records remembered; bound %d plus at most 4 live", maxSize, bound)
	}
	if emitted == 0 {
		t.Fatal("nothing emitted")
	}
}

// TestProcessStoreFailedExecStart is an exec whose start failed: its
// record is settled, also when the stream's ExecAdded comes after the
// clean-up, so nothing of it stays live.
func TestProcessStoreFailedExecStart(t *testing.T) {
	for _, addedLate := range []bool{false, true} {
		t.Run(fmt.Sprintf("ExecAdded after the clean-up=%v", addedLate), func(t *testing.T) {
			s, emitted := newTestStore()
			clock := newFakeClock(s)
			s.handle(ev(types.EventStart, "c", 10))
			added := createAt(types.EventExecAdded, "e", 0, clock.now)
			if !addedLate {
				s.handle(added)
			}
			clock.advance(time.Millisecond)
			s.execStartFailed("c", "e", clock.now)
			if addedLate {
				s.handle(added)
			}
			if r := s.lookup(procKey{"c", "e"}); r == nil || r.cur.live() || r.buried == 0 {
				t.Fatalf("record of the failed exec: %+v, want settled and tombstoned", r)
			}
			if got := eventTypesOf(*emitted); fmt.Sprint(got) != "[start exec-added]" {
				t.Fatalf("emitted %v", got)
			}
		})
	}
}

// TestProcessStoreTaskDeleteSettlesExecs is someone else deleting a task
// whose exec was added but never started: it never will be.
func TestProcessStoreTaskDeleteSettlesExecs(t *testing.T) {
	s, _ := newTestStore()
	s.handle(ev(types.EventStart, "c", 10))
	s.handle(ev(types.EventExecAdded, "e", 0))
	s.handle(ev(types.EventExit, "c", 10))
	s.handle(deletedEv("c", 10))
	if r := s.lookup(procKey{"c", "e"}); r == nil || r.cur.live() {
		t.Fatalf("exec of the deleted task: %+v, want settled", r)
	}
}
