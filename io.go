package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/ctrkit/libcontainerd/types"
)

// closeStdinTimeout bounds the CloseIO call made when the engine closes a
// process's stdin; the engine's Close must not hang on a dead shim.
const closeStdinTimeout = 30 * time.Second

// processIO opens fifos as a DirectIO, hands it to attachStdio and returns
// the engine's cio.IO. When the engine closes the DirectIO's Stdin, the
// process's stdin is closed too, through CloseIO, as soon as proc hands
// over the process (before that, it has no stdin to close).
//
// On error everything is closed and the FIFOs are removed.
func (c *Client) processIO(ctx context.Context, fifos *cio.FIFOSet, proc *processHandoff, attachStdio types.StdioCallback) (_ cio.IO, retErr error) {
	if attachStdio == nil {
		_ = fifos.Close()
		return nil, fmt.Errorf("stdio callback is nil: %w", errdefs.ErrInvalidArgument)
	}
	dio, err := newDirectIO(ctx, fifos)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			dio.Cancel()
			_ = dio.Close()
		}
	}()
	if dio.Stdin != nil {
		dio.Stdin = &stdinCloser{WriteCloser: dio.Stdin, proc: proc, client: c}
	}
	rio, err := callStdio(attachStdio, dio)
	if err != nil {
		return nil, err
	}
	if rio == nil {
		return nil, fmt.Errorf("stdio callback returned no io: %w", errdefs.ErrInvalidArgument)
	}
	return rio, nil
}

// callStdio runs the engine's callback, turning a panic into an error so
// that a faulty callback cannot leave FIFOs and a half-created task behind.
func callStdio(attachStdio types.StdioCallback, dio *cio.DirectIO) (rio cio.IO, err error) {
	defer func() {
		if r := recover(); r != nil {
			rio, err = nil, fmt.Errorf("stdio callback panicked: %v: %w", r, errdefs.ErrInternal)
		}
	}()
	rio, err = attachStdio(dio)
	if err != nil {
		return nil, fmt.Errorf("stdio callback: %w", err)
	}
	return rio, nil
}

// fifoOwner names, for the log, the process a FIFO set is made for; the
// log entry is made only when there is something to log.
type fifoOwner struct {
	logger      *log.Entry
	containerID string
	execID      string // "" for the init process
}

func (o fifoOwner) log() *log.Entry {
	l := o.logger.WithField("container", o.containerID)
	if o.execID != "" {
		l = l.WithField("exec", o.execID)
	}
	return l
}

// processHandoff hands the process created with an IO over to the IO's
// stdin closer, which needs it to close the process's stdin in the shim.
// The creator calls created with the process, or abandon when creating it
// failed; whichever comes first counts, so `defer h.abandon()` right after
// newProcessHandoff covers every error path.
type processHandoff struct {
	c    chan containerd.Process // receives the process, then is closed
	once sync.Once
}

func newProcessHandoff() *processHandoff {
	return &processHandoff{c: make(chan containerd.Process, 1)}
}

func (h *processHandoff) created(p containerd.Process) {
	h.once.Do(func() {
		h.c <- p
		close(h.c)
	})
}

func (h *processHandoff) abandon() { h.once.Do(func() { close(h.c) }) }

// stdinCloser closes a process's stdin FIFO and then, once, the process's
// stdin in the shim, so that the process sees EOF even while the shim holds
// the FIFO open.
type stdinCloser struct {
	io.WriteCloser
	proc   *processHandoff
	client *Client

	once sync.Once
	err  error
}

func (s *stdinCloser) Close() error {
	s.once.Do(func() {
		s.err = s.WriteCloser.Close()
		select {
		case p, ok := <-s.proc.c:
			if ok {
				s.err = errors.Join(s.err, closeStdin(context.Background(), s.client.ns, p))
			}
		default:
			// The process does not exist yet; close its stdin once it
			// does, unless the client is closed first.
			s.client.goOwned(func(ctx context.Context) {
				select {
				case p, ok := <-s.proc.c:
					if !ok {
						return
					}
					if err := closeStdin(ctx, s.client.ns, p); err != nil {
						s.client.logger.WithError(err).WithField("process", p.ID()).Error("failed to close process stdin")
					}
				case <-ctx.Done():
				}
			})
		}
	})
	return s.err
}

func closeStdin(ctx context.Context, ns string, p containerd.Process) error {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ns), closeStdinTimeout)
	defer cancel()
	err := wrapError(p.CloseIO(ctx, containerd.WithStdinCloser))
	// A process that is gone or a shim that went away has no stdin left.
	if errdefs.IsNotFound(err) || errdefs.IsUnavailable(err) {
		return nil
	}
	return err
}

// taskIO is the IO of a task as handed to containerd. containerd's
// Task.Start closes the IO on any error, which would remove the FIFOs of a
// task that may well be running (a Start while containerd restarts, or a
// second Start): Task.Start holds the IO meanwhile. Holds are counted
// (Starts may run concurrently); a Close that arrives during a hold runs
// when the last hold is released if the task was deleted meanwhile (a
// Delete racing a Start); otherwise it came from a failed Start, and the
// IO is closed by the task's Delete or, at the latest, by Client.Close.
type taskIO struct {
	cio.IO
	client *Client

	mu           sync.Mutex
	holds        int
	closeWanted  bool // Close was called during a hold
	deleted      bool // the task was deleted through the API
	closed       bool
	closeErr     error
	trackedByCli bool // waits in the client for Close
}

// hold keeps Close from running until release.
func (t *taskIO) hold() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.holds++
}

func (t *taskIO) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holds--; t.holds > 0 || !t.closeWanted || t.closed {
		return
	}
	if t.deleted {
		t.closeLocked()
		return
	}
	if !t.trackedByCli {
		t.trackedByCli = true
		t.client.trackIO(t)
	}
}

// markDeleted records that the task was deleted: its IO is closed for good.
func (t *taskIO) markDeleted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleted = true
	if t.holds == 0 && t.closeWanted {
		t.closeLocked()
	}
}

func (t *taskIO) Cancel() {
	t.mu.Lock()
	held := t.holds > 0
	t.mu.Unlock()
	if !held {
		t.IO.Cancel()
	}
}

func (t *taskIO) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holds > 0 {
		t.closeWanted = true
		return nil
	}
	return t.closeLocked()
}

// closeForClient closes the IO when the client closes.
func (t *taskIO) closeForClient() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeLocked()
}

func (t *taskIO) closeLocked() error {
	if !t.closed {
		t.closed = true
		t.closeErr = t.IO.Close()
		if t.trackedByCli {
			t.client.untrackIO(t)
		}
	}
	return t.closeErr
}
