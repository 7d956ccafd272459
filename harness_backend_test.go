package libcontainerd

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/types"
)

// event is one ProcessEvent call.
type event struct {
	Type types.EventType
	Info types.EventInfo
}

func (e event) String() string {
	return fmt.Sprintf("%s %s/%s pid=%d code=%d", e.Type, e.Info.ContainerID, e.Info.ProcessID, e.Info.Pid, e.Info.ExitCode)
}

// recordingBackend records every event it is given and lets tests wait for
// one. fail, if set, is consulted first: a non-nil error is returned to
// the client and the event is not recorded.
type recordingBackend struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every recorded event
	events  []event
	fail    func(containerID string, et types.EventType, ei types.EventInfo) error
}

func newRecordingBackend() *recordingBackend {
	return &recordingBackend{changed: make(chan struct{})}
}

func (b *recordingBackend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	if b.fail != nil {
		if err := b.fail(containerID, et, ei); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, event{et, ei})
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

// of returns the events of one container, in delivery order.
func (b *recordingBackend) of(containerID string) []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []event
	for _, e := range b.events {
		if e.Info.ContainerID == containerID {
			out = append(out, e)
		}
	}
	return out
}

func (b *recordingBackend) all() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]event(nil), b.events...)
}

// waitUntil blocks until cond holds for the recorded events, failing t
// after waitTimeout.
func (b *recordingBackend) waitUntil(t testing.TB, what string, cond func([]event) bool) {
	t.Helper()
	if !b.waitFor(waitTimeout, cond) {
		t.Fatalf("timed out waiting for %s; events: %v", what, b.all())
	}
}

// waitFor blocks until cond holds for the recorded events and reports
// whether it did within timeout. Unlike waitUntil it may be called from
// any goroutine. It waits on the change channel: events are told, not
// polled for.
func (b *recordingBackend) waitFor(timeout time.Duration, cond func([]event) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok := cond(b.events)
		changed := b.changed
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// waitEvent waits for an event of type et for process processID of
// containerID and returns it.
func (b *recordingBackend) waitEvent(t testing.TB, containerID string, et types.EventType, processID string) types.EventInfo {
	t.Helper()
	var found types.EventInfo
	b.waitUntil(t, fmt.Sprintf("%s of %s/%s", et, containerID, processID), func(evs []event) bool {
		for _, e := range evs {
			if e.Type == et && e.Info.ContainerID == containerID && (processID == "" || e.Info.ProcessID == processID) {
				found = e.Info
				return true
			}
		}
		return false
	})
	return found
}

// waitExit waits for the exit event of the init process pid of container
// id and returns it.
func (b *recordingBackend) waitExit(t testing.TB, id string, pid uint32) types.EventInfo {
	t.Helper()
	var found types.EventInfo
	b.waitUntil(t, fmt.Sprintf("exit of %s pid %d", id, pid), func(evs []event) bool {
		exits := exitsOfPid(evs, id, pid)
		if len(exits) > 0 {
			found = exits[0].Info
		}
		return len(exits) > 0
	})
	return found
}

// eventTypes lists the types of evs, in order.
func eventTypes(evs []event) []types.EventType {
	out := make([]types.EventType, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// countEvents counts the events of type et of container id in evs.
func countEvents(evs []event, id string, et types.EventType) int {
	n := 0
	for _, e := range evs {
		if e.Info.ContainerID == id && e.Type == et {
			n++
		}
	}
	return n
}

// exitsOf returns the exit events of container id.
func exitsOf(evs []event, id string) []event {
	var out []event
	for _, e := range evs {
		if e.Type == types.EventExit && e.Info.ContainerID == id {
			out = append(out, e)
		}
	}
	return out
}

// exitsOfPid returns the exit events of the init process pid of container
// id.
func exitsOfPid(evs []event, id string, pid uint32) []event {
	var out []event
	for _, e := range exitsOf(evs, id) {
		if e.Info.ProcessID == id && e.Info.Pid == pid {
			out = append(out, e)
		}
	}
	return out
}
