//go:build linux

package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
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
	failing, healthy := testutil.ID(t, "failing"), testutil.ID(t, "healthy")
	b := newRecordingBackend()
	healthyDone := make(chan struct{})
	b.fail = func(containerID string, _ types.EventType, _ types.EventInfo) error {
		if containerID != failing {
			return nil
		}
		select {
		case <-healthyDone:
			return nil
		default:
			return errors.New("backend busy")
		}
	}
	tc := newTestClient(t, withBackend(b), withClientOptions(WithEventRetry(100000, time.Millisecond, 10*time.Millisecond)))
	fctr, ft, _ := tc.run(t, failing, false, []string{"true"})
	hctr, ht, _ := tc.run(t, healthy, false, []string{"true"})
	b.waitEvent(t, healthy, types.EventExit, healthy)
	if n := len(b.of(failing)); n != 0 {
		t.Fatalf("failing container has %d events delivered before release", n)
	}
	close(healthyDone)
	b.waitEvent(t, failing, types.EventExit, failing)
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventExit}
	if got := eventTypes(b.of(failing)); !slices.Equal(got, want) {
		t.Fatalf("failing container's events %v, want %v", got, want)
	}
	if m := tc.Metrics(); m.Retried == 0 || m.Dropped != 0 {
		t.Fatalf("metrics %+v: want retries and no drops", m)
	}
	tc.remove(t, fctr, ft)
	tc.remove(t, hctr, ht)
}

// TestBackendErrorAttempts checks how often a failing ProcessEvent is
// called: once by default, as moby does (dockerd's handler has side effects
// before it can fail), and the configured attempts with WithEventRetry;
// then the event is dropped and the container's next event goes on.
func TestBackendErrorAttempts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name           string
		opts           []Option
		calls, retried uint64
	}{
		{"default", nil, 1, 0},
		{"WithEventRetry", []Option{WithEventRetry(3, time.Millisecond, time.Millisecond)}, 3, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
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
			tc := newTestClient(t, withBackend(b), withClientOptions(c.opts...))
			ctr, task, _ := tc.run(t, id, false, []string{"true"})
			b.waitEvent(t, id, types.EventExit, id)
			if n := calls.Load(); n != c.calls {
				t.Fatalf("create delivered %d times, want %d", n, c.calls)
			}
			if m := tc.Metrics(); m.Dropped != 1 || m.Retried != c.retried {
				t.Fatalf("metrics %+v: want 1 dropped, %d retried", m, c.retried)
			}
			tc.remove(t, ctr, task)
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
			// The environment connects first: the gRPC connection's
			// goroutines are the containerd client's, not ours.
			env := newTestEnv(t, d)
			before := runtime.NumGoroutine()

			id := testutil.ID(t)
			b := newRecordingBackend()
			entered, released := make(chan struct{}), make(chan struct{})
			release := sync.OnceFunc(func() { close(released) })
			var once sync.Once
			b.fail = func(containerID string, et types.EventType, _ types.EventInfo) error {
				once.Do(func() { close(entered); <-released })
				return nil
			}
			tc := env.client(t, t.TempDir(), b, WithClosePolicy(policy))
			// A test that fails before the release must not leave the
			// Close of the client's cleanup waiting on the Backend.
			t.Cleanup(release)
			ctr, task, _ := tc.run(t, id, false, []string{"true"})
			<-entered
			// Create is blocked in the Backend; wait for start and exit to
			// be queued behind it.
			eventually(t, "start and exit received", func() (bool, string) {
				m := tc.Metrics()
				return m.Received >= 3, fmt.Sprintf("metrics %+v", m)
			})
			closed := make(chan error)
			go func() { closed <- tc.Close() }()
			if policy == CloseAbandon {
				// Release the Backend only once Close abandons the queue.
				eventually(t, "Close to abandon the queue", func() (bool, string) {
					return tc.events.delivery.abandoned(), "queue not abandoned"
				})
			}
			release()
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			m := tc.Metrics()
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
			tc.remove(t, ctr, task)
			settle(t, "goroutines", before, runtime.NumGoroutine)
		})
	}

	t.Run("containerd down", func(t *testing.T) {
		env := newTestEnv(t, d)
		before := runtime.NumGoroutine()
		tc := env.client(t, t.TempDir(), newRecordingBackend())
		if _, err := tc.Version(tc.ctx); err != nil {
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
		if err := tc.CloseContext(closeCtx); err != nil {
			t.Fatal(err)
		}
		settle(t, "goroutines", before, runtime.NumGoroutine)
	})
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, 100 * time.Millisecond, 5 * time.Second} {
		for range 100 {
			j := jitter(d)
			if j < d/2 || (d > 1 && j >= d) {
				t.Fatalf("jitter(%v) = %v, want in [d/2, d)", d, j)
			}
		}
	}
}
