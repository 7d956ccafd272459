package libcontainerd

import (
	"testing"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestLifecycleEvents runs a container that echoes its stdin and exits 3,
// and checks the output, the exit status and the events in order.
func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	tc := newTestClient(t)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"sh", "-c", "cat; echo err >&2; exit 3"})
	var out capture
	task, err := ctr.NewTask(tc.ctx, "", true, out.attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := out.stdin.Write([]byte("hello stdin\n")); err != nil {
		t.Fatal(err)
	}
	if err := out.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	exit := tc.backend.waitEvent(t, id, types.EventExit, id)
	if exit.ExitCode != 3 || exit.Pid != task.Pid() || exit.ExitedAt.IsZero() {
		t.Fatalf("exit event %+v, want code 3 pid %d", exit, task.Pid())
	}
	stdout, stderr := out.wait(t)
	if stdout != "hello stdin\n" || stderr != "err\n" {
		t.Fatalf("stdout %q stderr %q", stdout, stderr)
	}
	st, err := task.Delete(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 3 {
		t.Fatalf("delete exit status %d, want 3", st.ExitCode())
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	var got []types.EventType
	for _, e := range tc.backend.of(id) {
		got = append(got, e.Type)
	}
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventExit}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if left := dirEntries(t, tc.stateDir); len(left) != 0 {
		t.Fatalf("left in state dir: %v", left)
	}
}
