//go:build linux

package libcontainerd

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// libraryGoroutines returns the stacks of the goroutines that run code of
// the library: the non-test files of this package and of queue (not the
// test harness under internal/).
func libraryGoroutines() []string {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(self) + string(filepath.Separator)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			line = strings.TrimSpace(line)
			file, _, _ := strings.Cut(line, ":")
			rel, ok := strings.CutPrefix(file, root)
			if ok && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") &&
				(!strings.Contains(rel, "/") || strings.HasPrefix(rel, "queue/")) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestCloseLeavesNothingRunning checks that when Close returns, no
// goroutine runs the library's code any more: the event loop and its
// marker publisher, the deferred-delete worker, the queue's workers and
// the stdin closer waiting for a process that is being created.
//
// Not parallel: other tests' clients would be running.
func TestCloseLeavesNothingRunning(t *testing.T) {
	tc := newTestClient(t)
	id := testutil.ID(t)
	ctr := tc.newContainer(t, id, []string{"cat"})
	// An engine that closes stdin at once: the process does not exist yet,
	// so the library waits for it on a goroutine of its own.
	var out capture
	closeStdinEarly := func(dio *cio.DirectIO) (cio.IO, error) {
		io, err := out.attach(dio)
		if err == nil {
			err = dio.Stdin.Close()
		}
		return io, err
	}
	task := tc.createAndStart(t, ctr, true, closeStdinEarly)
	tc.backend.waitEvent(t, id, types.EventExit, id)
	if _, err := task.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if running := libraryGoroutines(); len(running) == 0 {
		t.Fatal("no goroutine of the library found before Close: the check sees nothing")
	}
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if running := libraryGoroutines(); len(running) != 0 {
		t.Fatalf("%d goroutines of the library still run after Close:\n%s", len(running), strings.Join(running, "\n\n"))
	}
}
