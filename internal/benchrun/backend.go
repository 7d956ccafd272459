package benchrun

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/ctrkit/libcontainerd/types"
)

// exit is an exit event as the Backend received it.
type exit struct {
	info types.EventInfo
	at   time.Time // when ProcessEvent was called
}

// backend is the benchmark's Backend. It does as little as an engine's
// would: it notes when each exit arrives and hands it to whoever waits for
// it. Other events are dropped.
type backend struct {
	mu      sync.Mutex
	waiters map[string]chan exit // by container/process; registered before the process starts
}

var _ types.Backend = (*backend)(nil)

func newBackend() *backend {
	return &backend{waiters: make(map[string]chan exit)}
}

func exitKey(containerID, processID string) string { return containerID + "/" + processID }

func (b *backend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	if et != types.EventExit {
		return nil
	}
	at := time.Now()
	k := exitKey(containerID, ei.ProcessID)
	b.mu.Lock()
	ch := b.waiters[k]
	delete(b.waiters, k)
	b.mu.Unlock()
	if ch != nil {
		ch <- exit{info: ei, at: at}
	}
	return nil
}

// expectExit registers for the next exit of a process; call it before the
// process starts.
func (b *backend) expectExit(containerID, processID string) <-chan exit {
	ch := make(chan exit, 1)
	b.mu.Lock()
	b.waiters[exitKey(containerID, processID)] = ch
	b.mu.Unlock()
	return ch
}

func waitExit(ctx context.Context, ch <-chan exit, what string) (exit, error) {
	t := time.NewTimer(waitTimeout)
	defer t.Stop()
	select {
	case ex := <-ch:
		return ex, nil
	case <-ctx.Done():
		return exit{}, ctx.Err()
	case <-t.C:
		return exit{}, fmt.Errorf("no exit event for %s within %v", what, waitTimeout)
	}
}

// sink discards what is written to it. Unlike io.Discard it has no
// ReadFrom, so io.CopyBuffer copies through the caller's buffer, as
// containerd's cio does with its 32 KiB buffers: the library's and the raw
// client's readers do the same work.
type sink struct{}

func (sink) Write(p []byte) (int, error) { return len(p), nil }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// drain copies r into w until EOF the way cio does.
func drain(w io.Writer, r io.Reader) {
	if r == nil {
		return
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, _ = io.CopyBuffer(w, r, *buf)
}

// discardStdio is the library side's StdioCallback: an engine's copy loop
// into nowhere, the work cio.WithStreams(nil, sink, sink) does for the raw
// client.
func discardStdio(dio *cio.DirectIO) (cio.IO, error) {
	go drain(sink{}, dio.Stdout)
	go drain(sink{}, dio.Stderr)
	return dio, nil
}
