package libcontainerd

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// countingIO is a cio.IO that counts Close and Cancel calls.
type countingIO struct {
	cio.IO
	closes, cancels atomic.Int32
}

func (c *countingIO) Cancel()      { c.cancels.Add(1) }
func (c *countingIO) Close() error { c.closes.Add(1); return nil }
func (c *countingIO) Wait()        {}

func newTestTaskIO() (*taskIO, *countingIO, *Client) {
	inner := &countingIO{}
	c := &Client{unclosedIOs: make(map[*taskIO]struct{})}
	return &taskIO{IO: inner, client: c}, inner, c
}

// TestTaskIOHold covers the guard that keeps containerd's Task.Start from
// closing a task's IO: counted holds, a Delete's Close deferred to the last
// release, a failed Start's Close left to Delete or Client.Close.
func TestTaskIOHold(t *testing.T) {
	t.Run("close without hold", func(t *testing.T) {
		tio, inner, _ := newTestTaskIO()
		_ = tio.Close()
		_ = tio.Close()
		if n := inner.closes.Load(); n != 1 {
			t.Fatalf("closed %d times, want 1", n)
		}
	})
	t.Run("two concurrent starts fail", func(t *testing.T) {
		tio, inner, c := newTestTaskIO()
		var wg sync.WaitGroup
		for range 2 {
			tio.hold()
		}
		for range 2 {
			wg.Go(func() {
				// containerd's Start on error.
				tio.Cancel()
				_ = tio.Close()
				tio.release()
			})
		}
		wg.Wait()
		if n := inner.closes.Load() + inner.cancels.Load(); n != 0 {
			t.Fatalf("io of a possibly running task closed or cancelled %d times", n)
		}
		if _, ok := c.unclosedIOs[tio]; !ok {
			t.Fatal("io of a failed start not left to Client.Close")
		}
		// The engine deletes the task later: containerd closes the IO.
		tio.markDeleted()
		_ = tio.Close()
		if n := inner.closes.Load(); n != 1 {
			t.Fatalf("closed %d times after delete, want 1", n)
		}
		if _, ok := c.unclosedIOs[tio]; ok {
			t.Fatal("closed io still tracked by the client")
		}
	})
	t.Run("delete during start", func(t *testing.T) {
		tio, inner, c := newTestTaskIO()
		tio.hold()
		tio.hold()
		// containerd's Delete closes the IO after deleting the task.
		_ = tio.Close()
		tio.markDeleted()
		if n := inner.closes.Load(); n != 0 {
			t.Fatal("closed while a start holds it")
		}
		tio.release()
		if n := inner.closes.Load(); n != 0 {
			t.Fatal("closed while a second start holds it")
		}
		tio.release()
		if n := inner.closes.Load(); n != 1 {
			t.Fatalf("closed %d times after the last release, want 1", n)
		}
		if len(c.unclosedIOs) != 0 {
			t.Fatal("deleted task's io tracked by the client")
		}
	})
	t.Run("failed start never deleted is closed by the client", func(t *testing.T) {
		tio, inner, c := newTestTaskIO()
		tio.hold()
		_ = tio.Close()
		tio.release()
		for tio := range c.unclosedIOs {
			_ = tio.closeForClient()
		}
		if n := inner.closes.Load(); n != 1 {
			t.Fatalf("closed %d times by the client, want 1", n)
		}
	})
}
