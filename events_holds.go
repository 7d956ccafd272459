package libcontainerd

import "time"

// A container's events wait, in its hold, while a delete through the API
// is in flight (so that the exit status the delete returns counts as
// delivered) and behind an exit whose memory cgroup is being checked (so
// that EventOOM comes before the exit). Other containers' events do not
// wait.

type containerHold struct {
	deletes int
	waiting []*heldEvent
}

// heldEvent is an event waiting in a hold; checking while it is an exit
// whose memory cgroup check has not answered.
type heldEvent struct {
	ev       taskEvent
	checking bool
}

type inflightDelete struct {
	containerID string
	stop        func() bool
}

// deleteHoldLimit bounds how long a delete through the API makes its
// container's events wait. A delete can take that long when the shim
// drains the process's output, or hang; the exits and OOMs of the
// container are not to wait on it. Past the limit the events go on: if
// the exit of the process being deleted is among them, the engine gets it
// as an event as well as from its Delete, as with moby.
const deleteHoldLimit = 5 * time.Second

// flush applies the events of c's hold that can go: in order, none while a
// delete is in flight, up to the first whose OOM check has not answered.
func (s *processStore) flush(c string) {
	h := s.holds[c]
	if h == nil || h.deletes > 0 {
		return
	}
	for len(h.waiting) > 0 && !h.waiting[0].checking {
		ev := h.waiting[0].ev
		h.waiting = h.waiting[1:]
		s.apply(ev)
	}
	if len(h.waiting) == 0 {
		delete(s.holds, c)
	}
}

// deleteStarted is called before a delete through the API: the container's
// events wait until deleteDone settles it, or deleteHoldLimit passes. It
// returns the delete's handle for deleteDone.
func (s *processStore) deleteStarted(containerID string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[containerID]
	if h == nil {
		h = &containerHold{}
		s.holds[containerID] = h
	}
	h.deletes++
	s.nextID++
	id := s.nextID
	d := &inflightDelete{containerID: containerID}
	s.deletes[id] = d
	d.stop = s.afterFunc(deleteHoldLimit, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.release(id) {
			s.counters.holdsExpired.Add(1)
			s.flush(containerID)
		}
	})
	return id
}

// release ends delete id's hold; false if it had ended.
func (s *processStore) release(id uint64) bool {
	d := s.deletes[id]
	if d == nil {
		return false
	}
	delete(s.deletes, id)
	if h := s.holds[d.containerID]; h != nil {
		h.deletes--
	}
	return true
}

// deleteDone settles delete id of (process, pid) of container containerID.
// When it succeeded (consumed), the engine holds the exit status of that
// incarnation: it is exited without an event, and deleted. Then the
// events held meanwhile go on, in order, once no other delete of the
// container is in flight.
func (s *processStore) deleteDone(id uint64, containerID, processID string, pid uint32, consumed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.deletes[id]; d != nil {
		d.stop()
	}
	s.release(id)
	if consumed {
		s.step(procKey{containerID, processID}, procInput{kind: inConsumed, pid: pid, at: s.now()})
	}
	s.flush(containerID)
}
