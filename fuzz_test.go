package libcontainerd

import (
	"path/filepath"
	"strings"
	"testing"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzValidateID checks that every ID validateID accepts is safe as a path
// component, and that the FIFO paths built from it stay in the bundle.
func FuzzValidateID(f *testing.F) {
	for _, seed := range []string{"a", "ctr-1", "a.b_c-d", "..", "../x", "a/b", "", "a\x00b", strings.Repeat("x", 77), ".", "-", "a..b", "é"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if validateID("container", id) != nil {
			return
		}
		const bundle = "/state/bundle"
		if id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 76 {
			t.Fatalf("unsafe id %q accepted", id)
		}
		if filepath.Join(bundle, id) != bundle+"/"+id {
			t.Fatalf("id %q does not join as one path component", id)
		}
		for _, terminal := range []bool{false, true} {
			cfg := fifoPaths(bundle, id, true, terminal)
			for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
				if p != "" && filepath.Dir(p) != bundle {
					t.Fatalf("fifo %q of id %q outside the bundle", p, id)
				}
			}
		}
	})
}

// FuzzMapEvent decodes arbitrary bytes as each task event type and maps
// them: no panic, and the container and process IDs come from the event.
func FuzzMapEvent(f *testing.F) {
	seeds := []proto.Message{
		&apievents.TaskCreate{ContainerID: "c", Pid: 1},
		&apievents.TaskStart{ContainerID: "c", Pid: 1},
		&apievents.TaskExit{ContainerID: "c", ID: "e", Pid: 2, ExitStatus: 3, ExitedAt: timestamppb.Now()},
		&apievents.TaskDelete{ContainerID: "c", Pid: 1, ExitedAt: timestamppb.Now()},
		&apievents.TaskExecStarted{ContainerID: "c", ExecID: "e", Pid: 2},
		&apievents.TaskOOM{ContainerID: "c"},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Add(uint8(200), []byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		msgs := []proto.Message{
			&apievents.TaskCreate{}, &apievents.TaskStart{}, &apievents.TaskExit{}, &apievents.TaskDelete{},
			&apievents.TaskExecAdded{}, &apievents.TaskExecStarted{}, &apievents.TaskOOM{},
			&apievents.TaskPaused{}, &apievents.TaskResumed{}, &apievents.TaskCheckpointed{},
		}
		msg := msgs[int(kind)%len(msgs)]
		// Through typeurl, as events arrive from containerd.
		env := &anypb.Any{Value: data}
		name, err := typeurl.TypeURL(msg)
		if err != nil {
			t.Fatal(err)
		}
		env.TypeUrl = name
		v, err := typeurl.UnmarshalAny(env)
		if err != nil {
			return
		}
		ev, ok := mapEvent(v)
		if !ok {
			return
		}
		type withContainer interface{ GetContainerID() string }
		if c, isC := v.(withContainer); isC && ev.info.ContainerID != c.GetContainerID() {
			t.Fatalf("container id %q, event had %q", ev.info.ContainerID, c.GetContainerID())
		}
		if ev.info.ProcessID == "" && (ev.deleted || ev.typ == "exit" || ev.typ == "start" || ev.typ == "create") && ev.info.ContainerID != "" {
			t.Fatalf("no process id in %+v", ev)
		}
	})
}
