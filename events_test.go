package libcontainerd

import (
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ctrkit/libcontainerd/types"
)

// TestMapEvent checks what each containerd task event becomes: its
// EventType and EventInfo, or nothing.
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
