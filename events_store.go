package libcontainerd

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// processStore decides which events reach the engine. It runs the
// per-process state machine (events_process.go) under its lock, over the
// stream's events, the exits reconciliation finds and what the API calls
// observe, and emits the events to deliver in delivery order. Beside it,
// it keeps only three things: the holds that make a container's events
// wait (for a delete through the API, or for the memory cgroup check of
// an exit), the tombstones that bound what it remembers, and the records.
type processStore struct {
	mu sync.Mutex
	// procs holds the records by container, then process ID: deleting a
	// container visits its own processes only.
	procs map[string]map[string]*procRecord
	// tombstones lists the records that are not live, oldest first: each
	// is forgotten when its entry is older than ttl or beyond max, unless
	// it came back to life (or was buried again: a newer entry) since.
	tombstones []tombstone
	burials    uint64
	// holds keeps, per container, the events waiting for a delete through
	// the API or an OOM check; deletes are the deletes in flight.
	holds   map[string]*containerHold
	deletes map[uint64]*inflightDelete
	nextID  uint64
	ttl     time.Duration
	max     int
	now     func() time.Time
	// afterFunc runs f after d unless stopped: time.AfterFunc, replaced by
	// tests.
	afterFunc func(d time.Duration, f func()) (stop func() bool)
	// checkOOM starts the memory cgroup check of exit ev and calls done
	// with its answer, from another goroutine; nil: no check (ev's
	// oomKilled stands).
	checkOOM func(ev taskEvent, done func(killed bool))
	emit     func(taskEvent)
	counters *eventCounters
}

// procKey names a process: the init process has its container's ID.
type procKey struct{ containerID, processID string }

type tombstone struct {
	key    procKey
	at     time.Time
	burial uint64
}

type pendingProcess struct {
	containerID, processID string
	pid                    uint32
}

func newProcessStore(ttl time.Duration, max int, counters *eventCounters, emit func(taskEvent)) *processStore {
	return &processStore{
		procs:   make(map[string]map[string]*procRecord),
		holds:   make(map[string]*containerHold),
		deletes: make(map[uint64]*inflightDelete),
		ttl:     ttl,
		max:     max,
		now:     time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
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

// step runs in through the record of k and then keeps the record's
// tombstone in line with it: a record that is not live is buried, one
// that came back to life is not.
func (s *processStore) step(k procKey, in procInput) effect {
	r := s.get(k)
	e := r.step(in)
	s.settle(k, r)
	return e
}

func (s *processStore) settle(k procKey, r *procRecord) {
	if r.cur.live() {
		r.buried = 0
		return
	}
	if r.buried == 0 {
		s.bury(k, r)
	}
	s.prune()
}

// bury adds a tombstone entry for the record of k; its entries before are
// void.
func (s *processStore) bury(k procKey, r *procRecord) {
	s.burials++
	r.buried = s.burials
	s.tombstones = append(s.tombstones, tombstone{key: k, at: s.now(), burial: r.buried})
}

// prune forgets the records whose tombstone is older than the TTL or
// beyond the bound.
func (s *processStore) prune() {
	now := s.now()
	n := 0
	for n < len(s.tombstones) && (len(s.tombstones)-n > s.max || now.Sub(s.tombstones[n].at) > s.ttl) {
		ts := s.tombstones[n]
		if r := s.lookup(ts.key); r != nil && r.buried == ts.burial {
			byProc := s.procs[ts.key.containerID]
			delete(byProc, ts.key.processID)
			if len(byProc) == 0 {
				delete(s.procs, ts.key.containerID)
			}
		}
		n++
	}
	if n > 0 {
		s.tombstones = append(s.tombstones[:0], s.tombstones[n:]...)
	}
}

// inputOf translates an event for the state machine.
func inputOf(ev taskEvent) procInput {
	in := procInput{kind: inPassThrough, pid: ev.info.Pid, at: ev.at}
	switch {
	case ev.deleted:
		in.kind = inDeleted
	case ev.typ == types.EventCreate || ev.typ == types.EventExecAdded:
		in.kind = inCreate
	case ev.typ == types.EventStart || ev.typ == types.EventExecStarted:
		in.kind = inStart
	case ev.typ == types.EventOOM:
		in.kind = inOOM
	case ev.typ == types.EventExit:
		in.kind, in.at = inExit, ev.info.ExitedAt
		in.reconciled, in.oomKilled = ev.synthesized, ev.oomKilled
		in.oomCandidate = ev.info.ProcessID == ev.info.ContainerID && ev.info.ExitCode == oomExitStatus
	}
	return in
}

// handle takes an event (from the stream, or synthesized). Events of a
// container with a delete in flight, or behind an exit whose memory
// cgroup is being checked, wait; the others are applied at once.
func (s *processStore) handle(ev taskEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := ev.info.ContainerID
	check := s.checkOOM != nil && s.oomCheckDue(ev)
	h := s.holds[c]
	if h == nil && !check {
		s.apply(ev)
		return
	}
	if h == nil {
		h = &containerHold{}
		s.holds[c] = h
	}
	he := &heldEvent{ev: ev, checking: check}
	h.waiting = append(h.waiting, he)
	if check {
		s.checkOOM(ev, func(killed bool) {
			s.mu.Lock()
			defer s.mu.Unlock()
			he.ev.oomKilled, he.checking = killed, false
			s.flush(c)
		})
	}
}

// apply runs ev through the state machine and emits what is delivered.
func (s *processStore) apply(ev taskEvent) {
	s.prune()
	in := inputOf(ev)
	if in.kind == inPassThrough {
		s.emit(ev)
		return
	}
	k := procKey{ev.info.ContainerID, ev.info.ProcessID}
	if in.kind == inOOM {
		// TaskOOMs are the container's: kept on its init process.
		k.processID = k.containerID
		if in.at.IsZero() {
			in.at = s.now()
		}
	}
	e := s.step(k, in)
	if in.kind == inDeleted && k.processID == k.containerID {
		s.execsEnded(k.containerID)
	}
	switch {
	case e.withheld:
		return
	case !e.deliver:
		s.counters.deduplicated.Add(1)
		return
	}
	if ev.deleted {
		ev = taskEvent{typ: types.EventExit, info: ev.info, synthesized: true}
	}
	if e.oomFirst {
		s.emit(taskEvent{typ: types.EventOOM, info: types.EventInfo{ContainerID: ev.info.ContainerID}, synthesized: true})
	}
	if ev.synthesized {
		s.counters.synthesized.Add(1)
	}
	s.emit(ev)
}

// execsEnded settles the execs of a container whose task was deleted that
// were never started: they will not be.
func (s *processStore) execsEnded(containerID string) {
	for processID, r := range s.procs[containerID] {
		if processID != containerID && r.cur.phase == phaseCreated {
			s.step(procKey{containerID, processID}, procInput{kind: inDeleted})
		}
	}
}

// oomCheckDue reports whether exit ev owes the engine a look at the
// container's memory cgroup (see procRecord.oomOwed); the answer is
// handed back with the exit, and the state machine decides again then.
func (s *processStore) oomCheckDue(ev taskEvent) bool {
	in := inputOf(ev)
	if in.kind != inExit || !in.oomCandidate {
		return false
	}
	r := s.lookup(procKey{ev.info.ContainerID, ev.info.ProcessID})
	if r == nil {
		r = &procRecord{}
	}
	return r.oomOwed(in)
}

// observeCreate records a process the API created (NewTask, Exec), created
// at or after at.
func (s *processStore) observeCreate(containerID, processID string, pid uint32, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step(procKey{containerID, processID}, procInput{kind: inCreate, pid: pid, at: at, claimed: true})
}

// observeStart records a process the API started (Task.Start, Exec).
func (s *processStore) observeStart(containerID, processID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step(procKey{containerID, processID}, procInput{kind: inStart, pid: pid, claimed: true})
}

// observeLoaded records a task the API loaded (Task, AttachTask) with a
// call begun at at. Whether it was started is not asked here, which would
// cost a round trip the engine makes anyway: it counts as running (its
// exit is owed) until a Status the engine asks for says it is only
// created. An exit from before at found by reconciliation is withheld
// (procRecord.withheldExit).
func (s *processStore) observeLoaded(containerID string, pid uint32, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step(procKey{containerID, containerID}, procInput{kind: inLoaded, pid: pid, at: at, claimed: true})
}

// observeCreatedStatus records that a Status call found incarnation pid of
// the init process created, not started: a loaded task owes no exit.
func (s *processStore) observeCreatedStatus(containerID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.lookup(procKey{containerID, containerID}); r != nil {
		r.step(procInput{kind: inCreatedStatus, pid: pid})
	}
}

// execStartFailed records that exec processID, whose start failed, was
// deleted at at: it owes no exit, and an ExecAdded of it arriving later
// is not a new exec.
func (s *processStore) execStartFailed(containerID, processID string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step(procKey{containerID, processID}, procInput{kind: inStartFailed, at: at})
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
	return r != nil && pid != 0 && r.cur.pid == pid && r.cur.phase == phaseExited && !r.deleted
}

// containerDeleted marks every process of a deleted container as gone.
func (s *processStore) containerDeleted(containerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for processID, r := range s.procs[containerID] {
		r.deleted = true
		if r.buried == 0 {
			// A process still live here has an exit that can yet come
			// (containerd 2.x publishes some after the task's delete):
			// it is kept for that while, as a tombstone.
			s.bury(procKey{containerID, processID}, r)
		}
	}
	s.prune()
}

// pending returns the running processes whose exit was not delivered and
// that are not deleted, and the earlier incarnations replaced while
// running: the ones reconciliation asks about. They come by
// container, each container's execs before its init process, whose exit
// is to reach the engine last (containerd's shim publishes them in that
// order too: an engine cleans a container's execs up at its exit).
func (s *processStore) pending() []pendingProcess {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pendingProcess
	for containerID, byProc := range s.procs {
		for processID, r := range byProc {
			if r.cur.pid != 0 && r.cur.phase == phaseRunning && !r.deleted {
				out = append(out, pendingProcess{containerID, processID, r.cur.pid})
			}
			for _, pid := range r.replaced {
				out = append(out, pendingProcess{containerID, processID, pid})
			}
		}
	}
	slices.SortFunc(out, func(a, b pendingProcess) int {
		aInit, bInit := a.processID == a.containerID, b.processID == b.containerID
		switch {
		case a.containerID != b.containerID:
			return cmp.Compare(a.containerID, b.containerID)
		case aInit != bInit:
			if aInit {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(a.processID, b.processID); c != 0 {
			return c
		}
		return cmp.Compare(a.pid, b.pid)
	})
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
