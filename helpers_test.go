package libcontainerd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

const (
	runcShim = "io.containerd.runc.v2"
	// waitTimeout bounds every wait for an event or output in tests; it is
	// a failure deadline, not a way to order anything.
	waitTimeout = 30 * time.Second
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
// any goroutine.
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

// testClient is a Client on the shared daemon with its own namespace and
// state directory, closed when the test ends.
type testClient struct {
	*Client
	ctx      context.Context
	ns       string
	stateDir string
	backend  *recordingBackend
	daemon   *testutil.Daemon
}

func newTestClient(t *testing.T, opts ...Option) *testClient {
	t.Helper()
	return newTestClientOn(t, testutil.Shared(t), opts...)
}

func newTestClientOn(t *testing.T, d *testutil.Daemon, opts ...Option) *testClient {
	t.Helper()
	ctx, ns := testutil.Context(t, d)
	b := newRecordingBackend()
	stateDir := t.TempDir()
	c, err := New(ctx, d.Client(t), stateDir, ns, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.CloseContext(context.Background()); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return &testClient{Client: c, ctx: ctx, ns: ns, stateDir: stateDir, backend: b, daemon: d}
}

// spec returns a busybox spec running args for container id.
func (tc *testClient) spec(t testing.TB, id string, args []string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	return testutil.Spec(t, tc.ctx, id, args, opts...)
}

// newContainer creates container id running args with the runc shim.
func (tc *testClient) newContainer(t testing.TB, id string, args []string, opts ...oci.SpecOpts) types.Container {
	t.Helper()
	ctr, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, args, opts...), runcShim, &runcoptions.Options{})
	if err != nil {
		t.Fatalf("NewContainer(%s): %v", id, err)
	}
	return ctr
}

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
	deadline := time.Now().Add(waitTimeout)
	for {
		c.mu.Lock()
		got := c.stdout.String()
		c.mu.Unlock()
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stdout %q does not contain %q", got, want)
		}
		time.Sleep(5 * time.Millisecond) // polling for output, not ordering
	}
}

// dirEntries lists what is under dir, for leftover checks.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// eventually polls cond until it holds, failing t after waitTimeout with
// what and cond's last report. It is for state the test cannot be told
// about (the kernel's, containerd's, counters), never to order events.
func eventually(t testing.TB, what string, cond func() (ok bool, report string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, report := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, report)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
