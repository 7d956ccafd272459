package libcontainerd

import (
	"fmt"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// The model-based test of the process store: a small world (one container,
// its init process and two exec IDs, run after run) makes containerd's
// events and the engine's API calls from a fuzzer's bytes, with what the
// stream does to events (delivers them late, twice after a delete, loses
// them in an outage, loses a TaskDelete) and reconnects with
// reconciliation against the world's truth. After every step it checks
// that no exit reached the engine twice (as an event, or as an event after
// the status of its own delete), that a container's exec exits come before
// its init's, and that the store remembers no more than the live
// processes and its tombstone bound; at the end, after a last reconnect,
// that no exit of a started process was lost.

const modelContainer = "c"

// modelProc is one run of a process in the world.
type modelProc struct {
	id        string
	pid       uint32
	started   bool
	exited    bool
	code      uint32
	exitedAt  time.Time
	deleted   bool
	initRun   uint32 // of an exec: the pid of the init run it belongs to
	delivered int    // exit events the engine got
	consumed  bool   // the engine got the status from its own delete
}

type modelWorld struct {
	t       testing.TB
	s       *processStore
	now     time.Time
	nextPid uint32
	procs   map[string]*modelProc // current run by slot: the init, e0, e1
	all     []*modelProc
	byPid   map[uint32]*modelProc
	stream  []taskEvent // published, not yet handed to the store
	history []taskEvent // exits and deletes handed over, for late copies
	down    bool
	// initExitDelivered lists the init runs whose exit reached the engine:
	// an exec exit of such a run after it is out of order.
	initExitDelivered map[uint32]bool
	trace             []string
}

const modelTombstones = 16

func newModelWorld(t testing.TB) *modelWorld {
	w := &modelWorld{
		t:                 t,
		now:               time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC),
		nextPid:           100,
		procs:             make(map[string]*modelProc),
		byPid:             make(map[uint32]*modelProc),
		initExitDelivered: make(map[uint32]bool),
	}
	w.s = newProcessStore(time.Hour, modelTombstones, &eventCounters{}, w.deliver)
	w.s.now = func() time.Time { return w.now }
	return w
}

// fail stops the test with the moves that led there.
func (w *modelWorld) fail(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf(format+"\nmoves: %v", append(args, w.trace)...)
}

func (w *modelWorld) tick() time.Time {
	w.now = w.now.Add(time.Millisecond)
	return w.now
}

// deliver is the engine's Backend.
func (w *modelWorld) deliver(ev taskEvent) {
	if ev.typ != types.EventExit {
		return
	}
	p := w.byPid[ev.info.Pid]
	if p == nil || p.id != ev.info.ProcessID {
		w.fail("exit of a process the world never ran: %+v", ev.info)
	}
	p.delivered++
	switch {
	case p.delivered > 1:
		w.fail("exit of %s pid %d delivered twice", p.id, p.pid)
	case p.consumed:
		w.fail("exit of %s pid %d delivered after the engine's delete returned it", p.id, p.pid)
	case p.id == modelContainer:
		w.initExitDelivered[p.pid] = true
	case w.initExitDelivered[p.initRun]:
		w.fail("exit of exec %s pid %d delivered after its init's (pid %d)", p.id, p.pid, p.initRun)
	}
	if ev.synthesized && ev.info.Error == nil && ev.info.ExitCode != p.code {
		w.fail("exit of %s pid %d with status %d, want %d", p.id, p.pid, ev.info.ExitCode, p.code)
	}
}

func (w *modelWorld) publish(ev taskEvent) {
	ev.at = w.tick()
	if !w.down {
		w.stream = append(w.stream, ev)
	}
}

func (w *modelWorld) info(p *modelProc) types.EventInfo {
	return types.EventInfo{ContainerID: modelContainer, ProcessID: p.id, Pid: p.pid, ExitCode: p.code, ExitedAt: p.exitedAt}
}

// newProc starts a run in slot: the init process, or an exec with an ID
// of its own, as dockerd names execs.
func (w *modelWorld) newProc(slot string) *modelProc {
	w.nextPid++
	p := &modelProc{id: slot, pid: w.nextPid}
	if slot != modelContainer {
		p.id = fmt.Sprintf("%s-%d", slot, p.pid)
		p.initRun = w.procs[modelContainer].pid
	}
	w.procs[slot], w.byPid[p.pid] = p, p
	w.all = append(w.all, p)
	return p
}

func (w *modelWorld) slotOf(p *modelProc) string {
	if p.id == modelContainer {
		return p.id
	}
	return p.id[:2]
}

func (w *modelWorld) live(slot string) *modelProc {
	if p := w.procs[slot]; p != nil && !p.deleted {
		return p
	}
	return nil
}

// exit ends p with code: the kernel, containerd's shim publishing it.
func (w *modelWorld) exit(p *modelProc, code uint32) {
	p.exited, p.code, p.exitedAt = true, code, w.tick()
	w.publish(taskEvent{typ: types.EventExit, info: w.info(p)})
}

// step runs op, one of the world's moves, when it is possible.
func (w *modelWorld) step(op, arg byte) {
	init := w.live(modelContainer)
	slot := fmt.Sprintf("e%d", arg%2)
	exec := w.live(slot)
	w.trace = append(w.trace, fmt.Sprintf("%d/%d", op%12, arg))
	switch op % 12 {
	case 0: // NewTask and Start
		if init != nil || w.down {
			return
		}
		createdAt := w.tick()
		p := w.newProc(modelContainer)
		w.publish(taskEvent{typ: types.EventCreate, info: w.info(p)})
		w.s.observeCreate(modelContainer, p.id, p.pid, createdAt)
		if arg%4 == 0 {
			return // created, not started
		}
		p.started = true
		w.publish(taskEvent{typ: types.EventStart, info: w.info(p)})
		w.s.observeStart(modelContainer, p.id, p.pid)
	case 1: // Exec
		if init == nil || !init.started || init.exited || exec != nil || w.down {
			return
		}
		createdAt := w.tick()
		p := w.newProc(slot)
		p.started = true
		w.publish(taskEvent{typ: types.EventExecAdded, info: types.EventInfo{ContainerID: modelContainer, ProcessID: p.id}})
		w.publish(taskEvent{typ: types.EventExecStarted, info: w.info(p)})
		w.s.observeCreate(modelContainer, p.id, p.pid, createdAt)
		w.s.observeStart(modelContainer, p.id, p.pid)
	case 2: // an exec exits
		if exec != nil && exec.started && !exec.exited {
			w.exit(exec, uint32(arg))
		}
	case 3: // the init exits; the kernel ends its execs first
		if init == nil || !init.started || init.exited {
			return
		}
		for _, id := range []string{"e0", "e1"} {
			if e := w.live(id); e != nil && e.started && !e.exited {
				w.exit(e, 137)
			}
		}
		w.exit(init, uint32(arg))
	case 4: // the engine deletes an exec whose exit it got
		if exec != nil && exec.exited && exec.delivered > 0 && !w.down {
			w.apiDelete(exec)
		}
	case 5: // the engine deletes the init process after its exit, or at restore without it
		if init != nil && init.exited && !w.down && (init.delivered > 0 || arg%2 == 0) && w.execsDeleted() {
			w.apiDelete(init)
			w.publish(taskEvent{deleted: true, info: w.info(init)})
		}
	case 6: // someone else deletes the stopped task
		if init != nil && init.exited && w.execsDeleted() {
			init.deleted = true
			w.publish(taskEvent{deleted: true, info: w.info(init)})
		}
	case 7: // an outage begins
		w.down = true
	case 8: // containerd serves again
		w.reconnect()
	case 9: // the stream hands the store its next events
		w.flush(int(arg%4) + 1)
	case 10: // containerd 2.x: a late copy of an exit or delete already handed over
		if len(w.history) > 0 && !w.down {
			ev := w.history[int(arg)%len(w.history)]
			w.s.handle(ev)
		}
	case 11: // containerd 2.4 loses a TaskDelete waiting in the stream
		for i, ev := range w.stream {
			if ev.deleted {
				w.stream = append(w.stream[:i], w.stream[i+1:]...)
				break
			}
		}
	}
	w.checkBound()
}

func (w *modelWorld) execsDeleted() bool {
	for _, id := range []string{"e0", "e1"} {
		if e := w.live(id); e != nil {
			return false
		}
	}
	return true
}

// apiDelete is the engine's Delete of p, which returns p's exit status.
func (w *modelWorld) apiDelete(p *modelProc) {
	hold := w.s.deleteStarted(modelContainer)
	p.deleted = true
	if p.delivered == 0 {
		p.consumed = true
	}
	w.s.deleteDone(hold, modelContainer, p.id, p.pid, true)
}

func (w *modelWorld) flush(n int) {
	for ; n > 0 && len(w.stream) > 0; n-- {
		ev := w.stream[0]
		w.stream = w.stream[1:]
		w.s.handle(ev)
		if ev.deleted || ev.typ == types.EventExit {
			w.history = append(w.history, ev)
		}
	}
}

// reconnect is containerd back after an outage (or a stream that broke):
// the client resubscribes and reconciles before the events published
// after its marker.
func (w *modelWorld) reconnect() {
	w.down = false
	for _, pp := range w.s.pending() {
		p := w.byPid[pp.pid]
		info := types.EventInfo{ContainerID: pp.containerID, ProcessID: pp.processID, Pid: pp.pid}
		switch {
		case p == nil:
			w.fail("pending process the world never ran: %+v", pp)
		case p.deleted || w.procs[w.slotOf(p)] != p:
			// Gone, or another run under its ID: status unknown.
			info.ExitCode, info.ExitedAt, info.Error = 255, w.tick(), fmt.Errorf("gone")
		case !p.exited:
			continue
		default:
			info.ExitCode, info.ExitedAt = p.code, p.exitedAt
		}
		w.s.handle(taskEvent{typ: types.EventExit, info: info, synthesized: true})
	}
}

// checkBound checks that the store remembers no more than the processes
// whose exit the engine has not had, and its tombstones.
func (w *modelWorld) checkBound() {
	owed := 0
	for _, p := range w.all {
		if p.delivered == 0 && !p.consumed {
			owed++
		}
	}
	if n := w.s.size(); n > owed+modelTombstones {
		w.fail("store remembers %d processes; %d exits not had by the engine, bound %d", n, owed, modelTombstones)
	}
}

// finish ends the world's outage and delivers what is in flight: every
// started process that exited must have reached the engine.
func (w *modelWorld) finish() {
	w.reconnect()
	w.flush(len(w.stream))
	w.reconnect()
	for _, p := range w.all {
		if p.started && p.exited && p.delivered == 0 && !p.consumed {
			w.fail("exit of %s pid %d (status %d) lost", p.id, p.pid, p.code)
		}
	}
}

func runModel(t testing.TB, ops []byte) {
	w := newModelWorld(t)
	for i := 0; i+1 < len(ops); i += 2 {
		w.step(ops[i], ops[i+1])
	}
	w.finish()
}

// FuzzProcessStoreModel runs the world on the fuzzer's bytes; the seeds
// are runs that matter: an outage between an exec's exit and its init's,
// a restore-time delete, late copies after deletes.
func FuzzProcessStoreModel(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 1, 1, 0, 1, 1, 7, 0, 3, 5, 8, 0, 9, 3, 4, 0, 5, 1},
		{0, 1, 9, 3, 3, 2, 9, 3, 5, 0, 9, 3, 10, 0, 10, 1, 0, 1, 9, 3},
		{0, 1, 1, 0, 2, 9, 9, 3, 6, 0, 11, 0, 9, 3, 8, 0, 10, 0},
		{0, 0, 7, 0, 0, 1, 8, 0, 3, 3, 9, 3, 5, 1, 0, 1, 1, 1, 3, 0, 9, 3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		runModel(t, ops)
	})
}

// TestProcessStoreModel runs the world on a fixed set of pseudo-random
// move sequences, so that the ordinary test run covers the model too.
func TestProcessStoreModel(t *testing.T) {
	state := uint32(2026)
	for range 2000 {
		ops := make([]byte, 80)
		for i := range ops {
			state = state*1664525 + 1013904223
			ops[i] = byte(state >> 24)
		}
		runModel(t, ops)
	}
}
