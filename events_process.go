package libcontainerd

import (
	"slices"
	"strconv"
	"time"
)

// This file is the per-process state machine of the exactly-once rule: a
// record per (container, process ID) and one transition function, step,
// from an input (something the stream, reconciliation or the API observed)
// to its effects (what to deliver). It takes no lock and does no I/O; the
// process store (events_store.go) runs it under its lock. The package doc
// ("Exits, exactly once") is its table, row by row.

type procPhase uint8

const (
	phaseNone    procPhase = iota // nothing known yet
	phaseCreated                  // created, not started: no exit is owed
	phaseRunning                  // started: its exit is owed to the engine
	phaseExited                   // its exit reached the engine, as an event or a Delete's status
)

func (p procPhase) String() string {
	switch p {
	case phaseNone:
		return "none"
	case phaseCreated:
		return "created"
	case phaseRunning:
		return "running"
	case phaseExited:
		return "exited"
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

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
}

func (inc incarnation) live() bool { return inc.phase == phaseCreated || inc.phase == phaseRunning }

// oomState is what the OOM decision needs, kept on the init process's
// record: TaskOOMs are published per container.
type oomState struct {
	// lastDelivered is when the last TaskOOM delivered had been published
	// (zero: none).
	lastDelivered time.Time
	// synthesized: the current incarnation's exit was preceded by an
	// EventOOM of the client's making; prevSynthesized: the one before's.
	synthesized, prevSynthesized bool
}

type procRecord struct {
	cur  incarnation
	past []uint32 // pids of earlier incarnations whose exit is settled, newest last
	// replaced lists the pids of earlier incarnations that were replaced
	// while running: their exit is still owed (a new task is reported
	// before the stream brings the old one's exit), newest last.
	replaced []uint32
	oom      oomState
	// deleted: the current incarnation was deleted (its TaskDelete, or a
	// delete through the API).
	deleted bool
	// buried numbers the record's entry in the store's tombstones (0:
	// none): the record is kept, not live, for late events, and forgotten
	// once that entry expires; an older entry of it is void.
	buried uint64
}

// maxPastPids bounds the history of one process ID (an ID reused by
// successive tasks or execs).
const maxPastPids = 8

// oomExitStatus is the exit status of a process killed by SIGKILL, which
// is how the kernel's OOM killer ends it.
const oomExitStatus = 128 + 9

type inputKind uint8

const (
	inPassThrough   inputKind = iota // paused, resumed: no state, always delivered
	inCreate                         // TaskCreate, ExecAdded (stream); NewTask, Exec (API)
	inStart                          // TaskStart, ExecStarted (stream); Task.Start, Exec (API)
	inLoaded                         // Task, AttachTask found the task (API)
	inCreatedStatus                  // a Status call found the task created, not started
	inExit                           // TaskExit (stream), or an exit reconciliation found
	inDeleted                        // TaskDelete, or a delete the client made on its own behalf
	inConsumed                       // the engine's own delete returned the exit status
	inStartFailed                    // an exec's start failed, and it was deleted
	inOOM                            // TaskOOM (stream)
)

// procInput is one thing observed of a process.
type procInput struct {
	kind inputKind
	pid  uint32 // 0: not known (an exec before its start; containerd's clean-up after a dead shim)
	// at is, by kind: create, the time it happened at or after; loaded,
	// when the call began; exit, when the process exited; consumed, when
	// the delete returned; oom, when containerd published it. Zero when
	// unknown.
	at time.Time
	// Of an exit: reconciled, found by reconciliation rather than
	// published; oomKilled, its memory cgroup recorded an OOM kill;
	// oomCandidate, it is an exit 137 of the init process.
	reconciled, oomKilled, oomCandidate bool
	claimed                             bool // the API handed the process out
}

// effect is what step decided.
type effect struct {
	deliver  bool // deliver the event (of an inDeleted: as an exit)
	oomFirst bool // deliver an EventOOM of the client's making just before it
	withheld bool // not delivered and still owed (see withheldExit)
}

// runKind says which run of the process an input names.
type runKind uint8

const (
	runNone     runKind = iota // no incarnation is known
	runCurrent                 // the current incarnation, live
	runSettled                 // the current incarnation, whose exit is settled
	runEarlier                 // an earlier incarnation, settled
	runReplaced                // an earlier incarnation replaced while running: its exit is owed
	runOther                   // a process never seen beside the one known
)

// runOf classifies pid, and at (an exit's time, or zero), against the
// record. pid 0 names the current incarnation: containerd sends it for a
// process whose pid it lost. A time before the current incarnation was
// created names an earlier one.
func (r *procRecord) runOf(pid uint32, at time.Time) runKind {
	c := r.cur
	before := !at.IsZero() && !c.createdAt.IsZero() && at.Before(c.createdAt)
	switch {
	case c.phase == phaseNone:
		return runNone
	case pid == 0 || pid == c.pid || (c.pid == 0 && c.live()):
		if c.phase == phaseExited || before {
			return runSettled
		}
		return runCurrent
	case pid != 0 && slices.Contains(r.replaced, pid):
		return runReplaced
	case slices.Contains(r.past, pid) || before:
		return runEarlier
	}
	return runOther
}

// step runs one input through the record.
func (r *procRecord) step(in procInput) effect {
	switch in.kind {
	case inCreate:
		r.create(in.pid, in.at)
		r.claim(in)
		return effect{deliver: true}
	case inStart:
		started := r.start(in.pid, in.at)
		r.claim(in)
		return effect{deliver: started}
	case inLoaded:
		if in.pid != 0 && (r.cur.pid != in.pid || r.cur.phase == phaseNone || r.deleted) && r.start(in.pid, time.Time{}) {
			r.cur.loaded, r.cur.loadedAt = true, in.at
		}
		r.claim(in)
		return effect{}
	case inCreatedStatus:
		if r.cur.pid == in.pid && r.cur.loaded && r.cur.phase == phaseRunning {
			r.cur.phase = phaseCreated
		}
		return effect{}
	case inExit:
		return r.exit(in)
	case inDeleted:
		return r.deletedBySomeone(in.pid)
	case inConsumed:
		r.consume(in.pid, in.at)
		return effect{}
	case inOOM:
		return effect{deliver: r.taskOOM(in.at)}
	case inStartFailed:
		if r.cur.phase == phaseCreated || r.cur.phase == phaseNone {
			// Nothing ran: no exit is owed. The delete's time makes an
			// ExecAdded that comes later a late report.
			r.cur.phase, r.cur.exitedAt, r.deleted = phaseExited, in.at, true
		}
		return effect{}
	}
	return effect{}
}

// create records a create of pid (0: not known yet, an exec) at or after
// at. The API and the stream both report each create: a pid that names
// the live incarnation, or the current one that exited after at, is that
// incarnation; one from before the current incarnation was created is a
// late report of an earlier one; anything else starts a new one.
func (r *procRecord) create(pid uint32, at time.Time) {
	switch r.runOf(pid, time.Time{}) {
	case runReplaced:
		return // a late report: it was replaced already
	case runEarlier, runOther:
		if r.reportedLate(at) {
			return
		}
	case runCurrent:
		if r.cur.pid == 0 {
			r.cur.pid = pid
		}
		if !at.IsZero() && (r.cur.createdAt.IsZero() || at.Before(r.cur.createdAt)) {
			r.cur.createdAt = at
		}
		r.deleted = false
		return
	case runSettled:
		if !at.IsZero() && !r.cur.exitedAt.IsZero() && !r.cur.exitedAt.Before(at) && (pid == 0 || pid == r.cur.pid) {
			// A create reported late: the API reports an Exec once it has
			// returned, by when the process may have exited and its exit
			// been delivered, and the stream's ExecAdded of an exec whose
			// start failed can come after its clean-up. A new process gets
			// that pid, or that exec ID, only after the earlier one ended.
			return
		}
	}
	r.replace(incarnation{pid: pid, phase: phaseCreated, createdAt: at})
}

// start records a start of pid, published at at (zero: unknown), and
// reports whether it is news to deliver.
func (r *procRecord) start(pid uint32, at time.Time) bool {
	switch r.runOf(pid, time.Time{}) {
	case runCurrent:
		r.cur.pid, r.cur.phase, r.deleted = pid, phaseRunning, false
		return true
	case runSettled, runEarlier, runReplaced:
		return false // exit is terminal; or a late start of an earlier incarnation
	case runOther:
		if r.reportedLate(at) {
			return false
		}
	}
	// An incarnation whose create was not seen (loaded, or created before
	// this client subscribed).
	r.replace(incarnation{pid: pid, phase: phaseRunning})
	return true
}

// reportedLate reports whether something published at at, of a process
// that is not the current incarnation, happened before that incarnation
// was created: it is of an earlier one, reported late (containerd 2.x
// hands a subscriber some events late), and changes nothing.
func (r *procRecord) reportedLate(at time.Time) bool {
	return !at.IsZero() && !r.cur.createdAt.IsZero() && at.Before(r.cur.createdAt)
}

// withheldExit reports whether an exit reconciliation found is that of the
// current incarnation, loaded by the API after it had exited. The engine
// learns that from the task's Status and takes the exit status with its
// Delete, as with moby, whose stream never carries an exit from before the
// engine came; delivering it would depend on whether reconciliation ran
// before that Delete (dockerd's restore would handle the exit twice). It
// is not delivered and stays owed: a TaskDelete of someone else's still
// delivers it, and it needs no OOM check.
func (r *procRecord) withheldExit(in procInput) bool {
	return in.reconciled && r.cur.loaded && r.cur.phase == phaseRunning && in.pid == r.cur.pid &&
		!in.at.IsZero() && in.at.Before(r.cur.loadedAt)
}

// exit records an exit: delivered once per incarnation, with an EventOOM
// before it when oomOwed.
func (r *procRecord) exit(in procInput) effect {
	if r.withheldExit(in) {
		return effect{withheld: true}
	}
	oomFirst := in.oomKilled && r.oomOwed(in)
	switch r.runOf(in.pid, in.at) {
	case runCurrent:
		if in.pid != 0 {
			r.cur.pid = in.pid
		}
		r.cur.phase, r.cur.exitedAt = phaseExited, in.at
	case runNone:
		r.cur = incarnation{pid: in.pid, phase: phaseExited, exitedAt: in.at}
	case runReplaced, runOther:
		// The exit of an incarnation replaced while it ran, or of a
		// process this client never saw beside the one it knows: deliver
		// it once.
		r.settleReplaced(in.pid)
		return effect{deliver: true}
	default:
		return effect{}
	}
	r.oom.synthesized = r.oom.synthesized || oomFirst
	return effect{deliver: true, oomFirst: oomFirst}
}

// oomOwed reports whether exit in, if the memory cgroup recorded an OOM
// kill, is to be preceded by an EventOOM: an exit 137 of the init process
// that settles the current (or a first) incarnation, which no EventOOM
// was delivered for. The cgroup checked is that of the container's task,
// which is the current incarnation's: a stray exit gets none. It is the
// one OOM decision: the store asks it before the cgroup is read
// (oomCheckDue) and again when the exit is applied.
func (r *procRecord) oomOwed(in procInput) bool {
	if in.kind != inExit || !in.oomCandidate || r.withheldExit(in) {
		return false
	}
	switch r.runOf(in.pid, in.at) {
	case runCurrent:
		return !r.oom.synthesized && !r.taskOOMSince(r.cur.createdAt)
	case runNone:
		// Created when, unknown: any TaskOOM delivered may be its.
		return !r.taskOOMSince(time.Time{})
	}
	return false
}

// taskOOMSince reports whether a TaskOOM published at or after t (zero:
// any) was delivered.
func (r *procRecord) taskOOMSince(t time.Time) bool {
	return !r.oom.lastDelivered.IsZero() && !r.oom.lastDelivered.Before(t)
}

// taskOOM records a TaskOOM of the container published at at and reports
// whether it is to be delivered: every one is, as with moby, except one of
// an incarnation whose EventOOM the client synthesized already (the
// TaskOOM came late, or after a reconciliation).
func (r *procRecord) taskOOM(at time.Time) bool {
	if !r.cur.createdAt.IsZero() && at.Before(r.cur.createdAt) {
		return !r.oom.prevSynthesized // of an earlier incarnation
	}
	if r.oom.synthesized {
		return false
	}
	if at.After(r.oom.lastDelivered) {
		r.oom.lastDelivered = at
	}
	return true
}

// deletedBySomeone records that the current incarnation (pid, or 0 when
// containerd did not say) was deleted by someone other than the engine,
// whose exit is owed if it was started and its exit not delivered: then
// the delete delivers it.
func (r *procRecord) deletedBySomeone(pid uint32) effect {
	switch r.runOf(pid, time.Time{}) {
	case runReplaced:
		r.settleReplaced(pid)
		return effect{deliver: true}
	case runCurrent, runSettled:
	default:
		return effect{}
	}
	owed := r.cur.phase == phaseRunning
	r.cur.phase, r.deleted = phaseExited, true
	return effect{deliver: owed}
}

// consume records that the engine got the exit status of incarnation pid
// from its own delete, which returned at at: the process had exited by
// then, so a create of pid reported before at is a late report of it.
func (r *procRecord) consume(pid uint32, at time.Time) {
	if pid == r.cur.pid || r.cur.pid == 0 {
		r.cur.pid, r.cur.phase, r.deleted = pid, phaseExited, true
		if r.cur.exitedAt.IsZero() {
			r.cur.exitedAt = at
		}
		return
	}
	r.remember(pid)
}

// claim records that the API handed out the input's incarnation.
func (r *procRecord) claim(in procInput) {
	if in.claimed && in.pid != 0 && in.pid == r.cur.pid {
		r.cur.claimed = true
	}
}

// replace makes inc the current incarnation. The one it replaces goes into
// the history when its exit is settled; the exit of one replaced while
// live is still delivered.
func (r *procRecord) replace(inc incarnation) {
	switch {
	case r.cur.phase == phaseExited:
		r.remember(r.cur.pid)
	case r.cur.phase == phaseRunning && r.cur.pid != 0 && r.cur.pid != inc.pid:
		r.replaced = appendBounded(r.replaced, r.cur.pid)
	}
	r.oom.prevSynthesized, r.oom.synthesized = r.oom.synthesized, false
	r.cur, r.deleted = inc, false
}

func (r *procRecord) remember(pid uint32) {
	if pid != 0 && !slices.Contains(r.past, pid) {
		r.past = appendBounded(r.past, pid)
	}
}

// settleReplaced records that the exit of pid, not the current
// incarnation, reached the engine.
func (r *procRecord) settleReplaced(pid uint32) {
	r.replaced = slices.DeleteFunc(r.replaced, func(p uint32) bool { return p == pid })
	r.remember(pid)
}

// appendBounded appends pid to pids, keeping the newest maxPastPids.
func appendBounded(pids []uint32, pid uint32) []uint32 {
	pids = append(pids, pid)
	if len(pids) > maxPastPids {
		pids = pids[1:]
	}
	return pids
}
