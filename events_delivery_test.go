package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// TestBackendRetry fails every event of one container until another
// container's whole lifecycle was delivered: the failing container's
// events then arrive complete and in order, and the other was not held up.
func TestBackendRetry(t *testing.T) {
	t.Parallel()
	d := testutil.Shared(t)
	ctx, ns := testutil.Context(t, d)
	failing, healthy := testutil.ID(t, "failing"), testutil.ID(t, "healthy")
	b := newRecordingBackend()
	healthyDone := make(chan struct{})
	var failures int
	b.fail = func(containerID string, et types.EventType, ei types.EventInfo) error {
		if containerID != failing {
			return nil
		}
		select {
		case <-healthyDone:
			return nil
		default:
			failures++ // only the failing container's worker runs this
			return errors.New("backend busy")
		}
	}
	c, err := New(ctx, d.Client(t), t.TempDir(), ns, b, WithEventRetry(100000, time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}

	run := func(id string) types.Task {
		ctr := tc.newContainer(t, id, []string{"true"})
		task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
		return task
	}
	ft := run(failing)
	ht := run(healthy)
	b.waitEvent(t, healthy, types.EventExit, healthy)
	if n := len(b.of(failing)); n != 0 {
		t.Fatalf("failing container has %d events delivered before release", n)
	}
	close(healthyDone)
	b.waitEvent(t, failing, types.EventExit, failing)
	var got []types.EventType
	for _, e := range b.of(failing) {
		got = append(got, e.Type)
	}
	if fmt.Sprint(got) != fmt.Sprint([]types.EventType{types.EventCreate, types.EventStart, types.EventExit}) {
		t.Fatalf("failing container's events %v, want create start exit", got)
	}
	if m := c.Metrics(); m.Retried == 0 || m.Dropped != 0 {
		t.Fatalf("metrics %+v: want retries and no drops", m)
	}
	for _, task := range []types.Task{ft, ht} {
		if _, err := task.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackendErrorAttempts checks how often a failing ProcessEvent is
// called: once by default, as moby does (dockerd's handler has side effects
// before it can fail), and the configured attempts with WithEventRetry;
// then the event is dropped and the container's next event goes on.
func TestBackendErrorAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		opts           []Option
		calls, retried uint64
	}{
		{"default", nil, 1, 0},
		{"WithEventRetry", []Option{WithEventRetry(3, time.Millisecond, time.Millisecond)}, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := testutil.Shared(t)
			ctx, ns := testutil.Context(t, d)
			id := testutil.ID(t)
			b := newRecordingBackend()
			var calls atomic.Uint64
			b.fail = func(_ string, et types.EventType, _ types.EventInfo) error {
				if et == types.EventCreate {
					calls.Add(1)
					return errors.New("rejected")
				}
				return nil
			}
			c, err := New(ctx, d.Client(t), t.TempDir(), ns, b, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}
			ctr := client.newContainer(t, id, []string{"true"})
			task := client.createAndStart(t, ctr, false, (&capture{}).attach)
			b.waitEvent(t, id, types.EventExit, id)
			if n := calls.Load(); n != tc.calls {
				t.Fatalf("create delivered %d times, want %d", n, tc.calls)
			}
			if m := c.Metrics(); m.Dropped != 1 || m.Retried != tc.retried {
				t.Fatalf("metrics %+v: want 1 dropped, %d retried", m, tc.retried)
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseWithQueuedEvents closes a client whose Backend is blocked with
// events queued behind it, and one whose containerd is down: Close returns
// and every goroutine the client started is gone. Not parallel: it counts
// the process's goroutines.
func TestCloseWithQueuedEvents(t *testing.T) {
	d := testutil.NewDaemon(t)
	for _, policy := range []ClosePolicy{CloseAbandon, CloseDrain} {
		t.Run(fmt.Sprint("policy", policy), func(t *testing.T) {
			ctx, ns := testutil.Context(t, d)
			cli := d.Client(t)
			// Connect first: the gRPC connection's goroutines are the
			// containerd client's, not ours.
			if _, err := cli.Version(ctx); err != nil {
				t.Fatal(err)
			}
			before := runtime.NumGoroutine()

			id := testutil.ID(t)
			b := newRecordingBackend()
			entered := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			b.fail = func(containerID string, et types.EventType, _ types.EventInfo) error {
				once.Do(func() { close(entered); <-release })
				return nil
			}
			c, err := New(ctx, cli, t.TempDir(), ns, b, WithClosePolicy(policy))
			if err != nil {
				t.Fatal(err)
			}
			tc := &testClient{Client: c, ctx: ctx, ns: ns, backend: b, daemon: d}
			ctr := tc.newContainer(t, id, []string{"true"})
			task := tc.createAndStart(t, ctr, false, (&capture{}).attach)
			<-entered
			// Create is blocked in the Backend; wait for start and exit to
			// be queued behind it.
			eventually(t, "start and exit received", func() (bool, string) {
				m := c.Metrics()
				return m.Received >= 3, fmt.Sprintf("metrics %+v", m)
			})
			closed := make(chan error)
			go func() { closed <- c.Close() }()
			if policy == CloseAbandon {
				// Release the Backend only once Close abandons the queue.
				eventually(t, "Close to abandon the queue", func() (bool, string) {
					return c.events.delivery.abandoned(), "queue not abandoned"
				})
			}
			close(release)
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			m := c.Metrics()
			switch policy {
			case CloseAbandon:
				if m.Dropped != 2 || len(b.of(id)) != 1 {
					t.Fatalf("abandon: metrics %+v, delivered %v", m, b.of(id))
				}
			case CloseDrain:
				if m.Dropped != 0 || len(b.of(id)) != 3 {
					t.Fatalf("drain: metrics %+v, delivered %v", m, b.of(id))
				}
			}
			if m.QueueDepth != 0 {
				t.Fatalf("queue depth %d after close", m.QueueDepth)
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ctr.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			settle(t, "goroutines", before, runtime.NumGoroutine)
		})
	}

	t.Run("containerd down", func(t *testing.T) {
		ctx, ns := testutil.Context(t, d)
		cli := d.Client(t)
		if _, err := cli.Version(ctx); err != nil {
			t.Fatal(err)
		}
		before := runtime.NumGoroutine()
		c, err := New(ctx, cli, t.TempDir(), ns, newRecordingBackend())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Version(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Kill(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
		}()
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.CloseContext(closeCtx); err != nil {
			t.Fatal(err)
		}
		settle(t, "goroutines", before, runtime.NumGoroutine)
	})
}
