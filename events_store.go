package libcontainerd

import (
	"slices"
	"sync"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// processStore decides which events reach the engine: a pure state
// machine whose inputs are the stream's events, exits synthesized by
// reconciliation and what the API calls observe, and whose output is the
// events to deliver, handed to emit in delivery order. Its states and
// transitions are documented in the package doc ("Exits, exactly once").
type processStore struct {
	mu sync.Mutex
	// procs holds the records by container, then process ID: deleting a
	// container visits its own processes only.
	procs      map[string]map[string]*procRecord
	tombstones []tombstone // oldest first
	// holds counts, per container, the deletes through the API in flight,
	// and keeps the container's events that arrived meanwhile.
	holds    map[string]*containerHold
	ttl      time.Duration
	max      int
	now      func() time.Time
	emit     func(taskEvent)
	counters *eventCounters
}

// procKey names a process: the init process has its container's ID.
type procKey struct{ containerID, processID string }

type procPhase uint8

const (
	phaseNone    procPhase = iota // nothing known yet
	phaseCreated                  // created, not started: no exit is owed
	phaseRunning                  // started: its exit is owed to the engine
	phaseExited                   // its exit reached the engine, as an event or a Delete's status
)

// incarnation is one run of a process ID: a task or exec created, started
// and ended. A container restarted under the same ID has several.
type incarnation struct {
	pid   uint32 // 0 until known (an exec before its start)
	phase procPhase
	// createdAt is when the incarnation was created (containerd's event
	// time, or the local time before the API call); zero if unknown. An
	// exit that happened before it belongs to an earlier incarnation.
	createdAt time.Time
	// exitedAt is when it exited, once it has and containerd said when.
	exitedAt time.Time
	// loaded marks an incarnation the API found (Task, AttachTask) rather
	// than saw being created or started; loadedAt is when (the local time
	// before the call).
	loaded   bool
	loadedAt time.Time
	// claimed marks an incarnation the API handed out to the engine.
	claimed bool
	// oomSynthesized marks an init incarnation whose exit was preceded by
	// an EventOOM of the client's making (see oomOwed): a TaskOOM of it
	// that arrives later is not delivered.
	oomSynthesized bool
}

type procRecord struct {
	cur  incarnation
	past []uint32 // pids of earlier incarnations whose exit is settled, newest last
	gone bool     // deleted; kept as a tombstone for late events
	// Of the init process only: when the last TaskOOM of the container
	// that was delivered had been published (zero: none), and whether the
	// incarnation before cur had a synthesized EventOOM.
	oomAt              time.Time
	prevOOMSynthesized bool
}

type containerHold struct {
	deletes int
	held    []taskEvent
}

type tombstone struct {
	key procKey
	at  time.Time
}

// maxPastPids bounds the history of one process ID (an ID reused by
// successive tasks or execs).
const maxPastPids = 8

// oomExitStatus is the exit status of a process killed by SIGKILL, which
// is how the kernel's OOM killer ends it.
const oomExitStatus = 128 + 9

type pendingProcess struct {
	containerID, processID string
	pid                    uint32
}

func newProcessStore(ttl time.Duration, max int, counters *eventCounters, emit func(taskEvent)) *processStore {
	return &processStore{
		procs:    make(map[string]map[string]*procRecord),
		holds:    make(map[string]*containerHold),
		ttl:      ttl,
		max:      max,
		now:      time.Now,
		emit:     emit,
		counters: counters,
	}
}

// get returns the record of k, made if there is none.
func (s *processStore) get(k procKey) *procRecord {
	byProc := s.procs[k.containerID]
	if byProc == nil {
		byProc = make(map[string]*procRecord)
		s.procs[k.containerID] = byProc
	}
	r := byProc[k.processID]
	if r == nil {
		r = &procRecord{}
		byProc[k.processID] = r
	}
	return r
}

// lookup returns the record of k, nil if there is none.
func (s *processStore) lookup(k procKey) *procRecord {
	return s.procs[k.containerID][k.processID]
}

func (s *processStore) forget(k procKey) {
	byProc := s.procs[k.containerID]
	delete(byProc, k.processID)
	if len(byProc) == 0 {
		delete(s.procs, k.containerID)
	}
}

// handle runs an event (from the stream, or synthesized) through the state
// machine and emits what is to be delivered. Events of a container with a
// delete in flight wait until it settles.
func (s *processStore) handle(ev taskEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.holds[ev.info.ContainerID]; h != nil {
		h.held = append(h.held, ev)
		return
	}
	s.apply(ev)
}

func (s *processStore) apply(ev taskEvent) {
	s.prune()
	k := procKey{ev.info.ContainerID, ev.info.ProcessID}
	deliver := true
	switch {
	case ev.deleted:
		r := s.get(k)
		deliver = r.deletedExit(ev.info.Pid)
		if !r.live() {
			s.bury(k, r)
		}
		if !deliver {
			return
		}
		ev = taskEvent{typ: types.EventExit, info: ev.info, synthesized: true}
	case ev.typ == types.EventCreate || ev.typ == types.EventExecAdded:
		s.get(k).create(ev.info.Pid, ev.at)
	case ev.typ == types.EventStart || ev.typ == types.EventExecStarted:
		deliver = s.get(k).start(ev.info.Pid)
	case ev.typ == types.EventOOM:
		at := ev.at
		if at.IsZero() {
			at = s.now()
		}
		deliver = s.get(procKey{ev.info.ContainerID, ev.info.ContainerID}).oom(at)
	case s.withheld(k, ev):
		return
	case ev.typ == types.EventExit:
		r := s.get(k)
		oomOwed := ev.oomKilled && r.oomOwed(k, ev)
		deliver = r.exit(ev.info.Pid, ev.info.ExitedAt)
		if deliver && oomOwed {
			r.cur.oomSynthesized = true
			s.emit(taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: ev.info.ContainerID}, synthesized: true})
		}
	}
	if !deliver {
		s.counters.deduplicated.Add(1)
		return
	}
	if ev.synthesized {
		s.counters.synthesized.Add(1)
	}
	s.emit(ev)
}

// oomCheckDue reports whether exit ev owes the engine a look at the
// container's memory cgroup: it is the exit of the init process with
// status 137, it is to be delivered as the exit of the incarnation it
// settles, and no EventOOM was delivered for that incarnation. The caller
// checks (see eventMonitor.oomKilled), outside the store, and hands the
// exit to handle with oomKilled set to what it found; handle decides
// again, so a decision that went stale meanwhile costs nothing but the
// check.
func (s *processStore) oomCheckDue(ev taskEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := procKey{ev.info.ContainerID, ev.info.ProcessID}
	if s.withheld(k, ev) {
		return false
	}
	r := s.lookup(k)
	if r == nil {
		r = &procRecord{}
	}
	return r.oomOwed(k, ev)
}

// observeCreate records a process the API created (NewTask, Exec), created
// at or after at.
func (s *processStore) observeCreate(containerID, processID string, pid uint32, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(procKey{containerID, processID})
	r.create(pid, at)
	r.claim(pid)
}

// observeStart records a process the API started (Task.Start, Exec), or
// found running (Task, AttachTask).
func (s *processStore) observeStart(containerID, processID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(procKey{containerID, processID})
	r.start(pid)
	r.claim(pid)
}

// observeLoaded records a task the API loaded (Task, AttachTask) with a
// call begun at at. Whether it was started is not asked here, which would
// cost a round trip the engine makes anyway: it counts as running (its
// exit is owed) until a Status the engine asks for says it is only
// created. An exit from before at is not synthesized by reconciliation
// (see withheld).
func (s *processStore) observeLoaded(containerID string, pid uint32, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(procKey{containerID, containerID})
	defer r.claim(pid)
	if pid == 0 || (r.cur.pid == pid && r.cur.phase != phaseNone && !r.gone) {
		return
	}
	if r.start(pid) {
		r.cur.loaded, r.cur.loadedAt = true, at
	}
}

// observeCreatedStatus records that a Status call found incarnation pid of
// the init process created, not started: a loaded task owes no exit.
func (s *processStore) observeCreatedStatus(containerID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lookup(procKey{containerID, containerID})
	if r != nil && r.cur.pid == pid && r.cur.loaded && r.cur.phase == phaseRunning {
		r.cur.phase = phaseCreated
	}
}

// claimed reports whether incarnation pid of the process was handed out
// through the API (NewTask, Task, AttachTask, Exec), rather than only seen
// in the event stream.
func (s *processStore) claimed(containerID, processID string, pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lookup(procKey{containerID, processID})
	return r != nil && pid != 0 && r.cur.pid == pid && r.cur.claimed
}

// exitDelivered reports whether the exit of incarnation pid of the process
// reached the engine as an event, the process not being deleted since:
// containerd has it, stopped, unless someone else deleted it meanwhile.
func (s *processStore) exitDelivered(containerID, processID string, pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lookup(procKey{containerID, processID})
	return r != nil && pid != 0 && r.cur.pid == pid && r.cur.phase == phaseExited && !r.gone
}

// deleteStarted is called before a delete through the API: the container's
// events wait until deleteDone settles it.
func (s *processStore) deleteStarted(containerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[containerID]
	if h == nil {
		h = &containerHold{}
		s.holds[containerID] = h
	}
	h.deletes++
}

// deleteDone settles a delete begun with deleteStarted. When it succeeded
// (consumed), the engine holds the exit status of (process, pid): that
// incarnation is exited without an event, and gone. Then the events held
// meanwhile go on, in order, once no other delete of the container is in
// flight.
func (s *processStore) deleteDone(containerID, processID string, pid uint32, consumed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if consumed {
		k := procKey{containerID, processID}
		r := s.get(k)
		r.consume(pid)
		if !r.live() {
			s.bury(k, r)
		}
	}
	h := s.holds[containerID]
	if h == nil {
		return
	}
	if h.deletes--; h.deletes > 0 {
		return
	}
	delete(s.holds, containerID)
	for _, ev := range h.held {
		s.apply(ev)
	}
}

// containerDeleted marks every process of a deleted container as gone.
func (s *processStore) containerDeleted(containerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for processID, r := range s.procs[containerID] {
		s.bury(procKey{containerID, processID}, r)
	}
}

// pending returns the running processes whose exit was not delivered and
// that are not deleted: the ones reconciliation asks about.
func (s *processStore) pending() []pendingProcess {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pendingProcess
	for containerID, byProc := range s.procs {
		for processID, r := range byProc {
			if r.cur.pid != 0 && r.cur.phase == phaseRunning && !r.gone {
				out = append(out, pendingProcess{containerID, processID, r.cur.pid})
			}
		}
	}
	return out
}

// size returns the number of processes remembered.
func (s *processStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, byProc := range s.procs {
		n += len(byProc)
	}
	return n
}

func (s *processStore) bury(k procKey, r *procRecord) {
	if r.gone {
		return
	}
	r.gone = true
	s.tombstones = append(s.tombstones, tombstone{key: k, at: s.now()})
	s.prune()
}

// prune forgets tombstones that are older than the TTL or beyond the bound.
// A process revived since it was buried (a new incarnation) is kept.
func (s *processStore) prune() {
	now := s.now()
	n := 0
	for n < len(s.tombstones) && (len(s.tombstones)-n > s.max || now.Sub(s.tombstones[n].at) > s.ttl) {
		k := s.tombstones[n].key
		if r := s.lookup(k); r != nil && r.gone {
			s.forget(k)
		}
		n++
	}
	if n > 0 {
		s.tombstones = append(s.tombstones[:0], s.tombstones[n:]...)
	}
}

func (r *procRecord) live() bool {
	return r.cur.phase == phaseCreated || r.cur.phase == phaseRunning
}

// create records a create of pid (0: not known yet, an exec) at or after
// at. The API and the stream both report each create: a pid that names
// the live incarnation, or the current one that exited after at, is that
// incarnation; anything else starts a new one.
func (r *procRecord) create(pid uint32, at time.Time) {
	if r.cur.phase == phaseExited && pid != 0 && pid == r.cur.pid &&
		!at.IsZero() && !r.cur.exitedAt.IsZero() && !r.cur.exitedAt.Before(at) {
		// The API reports an Exec once it has returned, by when the
		// process may have exited and its exit been delivered. A new
		// process gets that pid only after the earlier one's exit.
		return
	}
	r.gone = false
	if r.live() && (pid == 0 || pid == r.cur.pid || r.cur.pid == 0) {
		if r.cur.pid == 0 {
			r.cur.pid = pid
		}
		if !at.IsZero() && (r.cur.createdAt.IsZero() || at.Before(r.cur.createdAt)) {
			r.cur.createdAt = at
		}
		return
	}
	r.retire()
	r.cur = incarnation{pid: pid, phase: phaseCreated, createdAt: at}
}

// start records a start of pid and reports whether it is news to deliver.
func (r *procRecord) start(pid uint32) bool {
	switch {
	case pid != 0 && pid == r.cur.pid, r.cur.pid == 0 && r.cur.phase == phaseCreated:
		if r.cur.phase == phaseExited {
			return false // exit is terminal
		}
		r.cur.pid, r.cur.phase, r.gone = pid, phaseRunning, false
		return true
	case slices.Contains(r.past, pid):
		return false // a late start of an earlier incarnation
	default:
		// An incarnation whose create was not seen (loaded, or created
		// before this client subscribed).
		r.retire()
		r.cur, r.gone = incarnation{pid: pid, phase: phaseRunning}, false
		return true
	}
}

// exitKind classifies an exit against what a record knows.
type exitKind uint8

const (
	exitSettled exitKind = iota // of an incarnation whose exit is settled, or of an earlier one
	exitCurrent                 // settles the current incarnation
	exitFirst                   // the first thing known of the process: a new incarnation, exited
	exitStray                   // of a process never seen beside the one known
)

// exitOf classifies an exit of pid at exitedAt; it changes nothing.
func (r *procRecord) exitOf(pid uint32, exitedAt time.Time) exitKind {
	before := func(createdAt time.Time) bool {
		return !exitedAt.IsZero() && !createdAt.IsZero() && exitedAt.Before(createdAt)
	}
	switch {
	case pid == r.cur.pid && r.cur.phase != phaseNone, r.cur.pid == 0 && r.live():
		if r.cur.phase == phaseExited || before(r.cur.createdAt) {
			return exitSettled
		}
		return exitCurrent
	case slices.Contains(r.past, pid), before(r.cur.createdAt):
		return exitSettled
	case r.cur.phase == phaseNone:
		return exitFirst
	default:
		return exitStray
	}
}

// withheld reports whether ev is an exit that reconciliation found of a
// task the engine loaded after it had exited. The engine learns that from
// the task's Status and takes the exit status with its Delete, as with
// moby, whose stream never carries an exit from before the engine came;
// delivering it would depend on whether reconciliation ran before that
// Delete (dockerd's restore would handle the exit twice). It is not
// delivered and stays owed: a TaskDelete of someone else's still delivers
// it, and it needs no OOM check.
func (s *processStore) withheld(k procKey, ev taskEvent) bool {
	if ev.typ != types.EventExit || !ev.synthesized || ev.deleted {
		return false
	}
	r := s.lookup(k)
	return r != nil && r.exitedBeforeLoad(ev.info.Pid, ev.info.ExitedAt)
}

// exitedBeforeLoad reports whether an exit of pid at exitedAt is that of
// the current incarnation, loaded by the API after it had exited.
func (r *procRecord) exitedBeforeLoad(pid uint32, exitedAt time.Time) bool {
	return r.cur.loaded && r.cur.phase == phaseRunning && pid == r.cur.pid &&
		!exitedAt.IsZero() && exitedAt.Before(r.cur.loadedAt)
}

// exit records an exit of pid at exitedAt and reports whether it is to be
// delivered: once per incarnation.
func (r *procRecord) exit(pid uint32, exitedAt time.Time) bool {
	switch r.exitOf(pid, exitedAt) {
	case exitCurrent:
		r.cur.pid, r.cur.phase, r.cur.exitedAt = pid, phaseExited, exitedAt
		return true
	case exitFirst:
		r.cur = incarnation{pid: pid, phase: phaseExited, exitedAt: exitedAt}
		return true
	case exitStray:
		// The exit of a process this client never saw beside the one it
		// knows: deliver it once.
		r.remember(pid)
		return true
	default:
		return false
	}
}

// oomOwed reports whether exit ev of process k, if the memory cgroup
// recorded an OOM kill, is to be preceded by an EventOOM: the exit of the
// init process with status 137 that settles the current (or a first)
// incarnation, for which no EventOOM was delivered. The cgroup checked is
// that of the container's task, which is the current incarnation's: a
// stray exit gets none.
func (r *procRecord) oomOwed(k procKey, ev taskEvent) bool {
	if ev.typ != types.EventExit || ev.deleted || k.processID != k.containerID || ev.info.ExitCode != oomExitStatus {
		return false
	}
	var inc incarnation
	switch r.exitOf(ev.info.Pid, ev.info.ExitedAt) {
	case exitCurrent:
		inc = r.cur
	case exitFirst:
		// Created when, unknown: any TaskOOM delivered may be its.
	default:
		return false
	}
	return !r.oomDelivered(inc)
}

// oomDelivered reports whether an EventOOM was delivered for incarnation
// inc of the init process: one synthesized, or a TaskOOM published after
// inc was created (or when that is unknown: nothing is invented).
func (r *procRecord) oomDelivered(inc incarnation) bool {
	if inc.oomSynthesized {
		return true
	}
	return !r.oomAt.IsZero() && (inc.createdAt.IsZero() || !r.oomAt.Before(inc.createdAt))
}

// oom records a TaskOOM of the container published at at and reports
// whether it is to be delivered: every one is, as with moby, except one
// of an incarnation whose EventOOM the client synthesized already (the
// TaskOOM came late, or after a reconciliation).
func (r *procRecord) oom(at time.Time) bool {
	if !r.cur.createdAt.IsZero() && at.Before(r.cur.createdAt) {
		// Of an earlier incarnation.
		return !r.prevOOMSynthesized
	}
	if r.cur.oomSynthesized {
		return false
	}
	if at.After(r.oomAt) {
		r.oomAt = at
	}
	return true
}

// deletedExit records that someone deleted incarnation pid and reports
// whether its exit is owed to the engine: that of a started process whose
// exit was not delivered.
func (r *procRecord) deletedExit(pid uint32) bool {
	if pid == 0 || pid != r.cur.pid {
		return false
	}
	owed := r.cur.phase == phaseRunning
	r.cur.phase = phaseExited
	return owed
}

// consume records that the engine got the exit status of incarnation pid
// from its own delete.
func (r *procRecord) consume(pid uint32) {
	if pid == r.cur.pid || r.cur.pid == 0 {
		r.cur.pid, r.cur.phase = pid, phaseExited
		return
	}
	r.remember(pid)
}

// claim records that the API handed out incarnation pid.
func (r *procRecord) claim(pid uint32) {
	if pid != 0 && pid == r.cur.pid {
		r.cur.claimed = true
	}
}

// retire moves the current incarnation into the history when its exit is
// settled; the exit of one replaced while live is still delivered.
func (r *procRecord) retire() {
	if r.cur.phase == phaseExited {
		r.remember(r.cur.pid)
	}
	r.prevOOMSynthesized = r.cur.oomSynthesized
}

func (r *procRecord) remember(pid uint32) {
	if pid == 0 || slices.Contains(r.past, pid) {
		return
	}
	r.past = append(r.past, pid)
	if len(r.past) > maxPastPids {
		r.past = r.past[1:]
	}
}
