package libcontainerd

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/ctrkit/libcontainerd/types"
)

// capture is a StdioCallback that collects stdout and stderr and gives the
// test the stdin writer.
type capture struct {
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
	stdin  io.WriteCloser
	done   sync.WaitGroup
}

func (c *capture) attach(dio *cio.DirectIO) (cio.IO, error) {
	c.stdin = dio.Stdin
	for _, s := range []struct {
		r io.Reader
		w *strings.Builder
	}{{dio.Stdout, &c.stdout}, {dio.Stderr, &c.stderr}} {
		if s.r == nil {
			continue
		}
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.r.Read(buf)
				c.mu.Lock()
				s.w.Write(buf[:n])
				c.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	return dio, nil
}

// wait waits for the output streams to reach EOF and returns them.
func (c *capture) wait(t testing.TB) (stdout, stderr string) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.done.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for output EOF")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdout.String(), c.stderr.String()
}

// waitOutput waits until stdout contains want.
func (c *capture) waitOutput(t testing.TB, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%q on stdout", want), func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		got := c.stdout.String()
		return strings.Contains(got, want), fmt.Sprintf("stdout %q", got)
	})
}

// send writes s to the process's stdin.
func (c *capture) send(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, s); err != nil {
		t.Fatalf("write stdin: %v", err)
	}
}

// closeStdin closes the process's stdin.
func (c *capture) closeStdin(t testing.TB) {
	t.Helper()
	if err := c.stdin.Close(); err != nil {
		t.Fatalf("close stdin: %v", err)
	}
}

// closingStdin is a stdio callback that captures the streams into out and
// closes stdin at once, before the process exists, as an engine that has
// no input for it does.
func closingStdin(out *capture) types.StdioCallback {
	return func(dio *cio.DirectIO) (cio.IO, error) {
		rio, err := out.attach(dio)
		if err == nil {
			err = dio.Stdin.Close()
		}
		return rio, err
	}
}

// engineIO is a capture that keeps the DirectIO it was given, so that a
// test can look at it and close the engine's ends of the FIFOs the way an
// engine that dies does.
type engineIO struct {
	capture
	dio *cio.DirectIO
}

func (e *engineIO) attach(dio *cio.DirectIO) (cio.IO, error) {
	e.dio = dio
	return e.capture.attach(dio)
}

// die closes the engine's file descriptors of the FIFOs as the exit of the
// engine's process would: the FIFOs stay on disk and the process's stdin
// stays open in the shim (no CloseIO).
func (e *engineIO) die(t testing.TB) {
	t.Helper()
	if e.dio.Stdin != nil {
		var raw io.Closer = e.dio.Stdin
		if sc, ok := e.dio.Stdin.(*stdinCloser); ok {
			raw = sc.WriteCloser
		}
		if err := raw.Close(); err != nil {
			t.Fatalf("close stdin fifo: %v", err)
		}
	}
	for _, r := range []io.ReadCloser{e.dio.Stdout, e.dio.Stderr} {
		if r != nil {
			if err := r.Close(); err != nil {
				t.Fatalf("close output fifo: %v", err)
			}
		}
	}
	e.wait(t)
}

// recordingAttach is a stdio callback that records that it was called and
// captures the streams.
type recordingAttach struct {
	capture
	called bool
}

func (r *recordingAttach) attach(dio *cio.DirectIO) (cio.IO, error) {
	r.called = true
	return r.capture.attach(dio)
}
