package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// failAfter bounds how long a test waits for something that should happen
// promptly. It only turns a hang into a failure; no test relies on it for
// ordering.
const failAfter = 10 * time.Second

// waitCh fails the test if ch is not closed within failAfter.
func waitCh(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(failAfter):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// mustWait waits for q to drain, failing the test if it takes too long.
func mustWait(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if err := q.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v (Len=%d)", err, q.Len())
	}
}

// waitGoroutines polls until runtime.NumGoroutine() <= limit, failing the
// test if that does not happen before the deadline. Worker goroutines exit
// just after Wait observes the queue empty, so a fixed sleep would be racy.
func waitGoroutines(t *testing.T, limit int) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		n := runtime.NumGoroutine()
		if n <= limit {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines still running, want <= %d\n%s", n, limit, buf)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// assertDrained checks that q holds no per-key state once it is empty.
func assertDrained(t *testing.T, q *Queue) {
	t.Helper()
	q.Lock()
	defer q.Unlock()
	if len(q.keys) != 0 {
		t.Errorf("queue still tracks %d keys after draining", len(q.keys))
	}
	if q.idle != nil {
		t.Errorf("idle channel left behind after draining")
	}
	if n := q.n.Load(); n != 0 {
		t.Errorf("Len = %d after draining, want 0", n)
	}
}

func TestZeroValue(t *testing.T) {
	var q Queue
	if n := q.Len(); n != 0 {
		t.Fatalf("Len of zero Queue = %d, want 0", n)
	}
	if err := q.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on zero Queue: %v", err)
	}
	done := make(chan struct{})
	q.Append("a", func() { close(done) })
	waitCh(t, done, "callback on zero Queue")
	mustWait(t, &q)
	assertDrained(t, &q)
}

// TestPerKeyOrder has many goroutines append numbered sequences, each to a
// key of its own and to a few keys shared by all of them, and checks that
// every key sees each appender's sequence in order. The per-key logs are
// written without locks, so the race detector also checks that callbacks
// for one key never overlap.
func TestPerKeyOrder(t *testing.T) {
	tests := []struct {
		name       string
		appenders  int
		sharedKeys int
		perKey     int
	}{
		{"one-appender", 1, 1, 1000},
		{"few-appenders", 4, 2, 500},
		{"many-appenders", 32, 4, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type entry struct{ appender, seq int }
			logs := make(map[string]*[]entry)
			var ids []string
			for a := range tt.appenders {
				ids = append(ids, fmt.Sprintf("own-%d", a))
			}
			for s := range tt.sharedKeys {
				ids = append(ids, fmt.Sprintf("shared-%d", s))
			}
			for _, id := range ids {
				logs[id] = new([]entry)
			}

			var q Queue
			var wg sync.WaitGroup
			start := make(chan struct{})
			for a := range tt.appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					own := fmt.Sprintf("own-%d", a)
					for i := range tt.perKey {
						for _, id := range []string{own, fmt.Sprintf("shared-%d", (a+i)%tt.sharedKeys)} {
							log := logs[id]
							q.Append(id, func() { *log = append(*log, entry{a, i}) })
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			mustWait(t, &q)
			assertDrained(t, &q)

			total := 0
			for _, id := range ids {
				last := make(map[int]int)
				for _, e := range *logs[id] {
					if prev, ok := last[e.appender]; ok && e.seq <= prev {
						t.Fatalf("key %s: appender %d ran seq %d after %d", id, e.appender, e.seq, prev)
					}
					last[e.appender] = e.seq
				}
				total += len(*logs[id])
			}
			if want := 2 * tt.appenders * tt.perKey; total != want {
				t.Fatalf("ran %d callbacks, want %d", total, want)
			}
			if own := len(*logs["own-0"]); own != tt.perKey {
				t.Fatalf("own-0 ran %d callbacks, want %d", own, tt.perKey)
			}
		})
	}
}

func TestBlockedKeyDoesNotBlockOthers(t *testing.T) {
	var q Queue
	started := make(chan struct{})
	release := make(chan struct{})
	var aRan []int

	q.Append("A", func() {
		close(started)
		<-release
		aRan = append(aRan, 0)
	})
	q.Append("A", func() { aRan = append(aRan, 1) })
	waitCh(t, started, "key A to start")

	const nB = 100
	bDone := make(chan struct{})
	bRan := 0
	for i := range nB {
		q.Append("B", func() {
			bRan++
			if i == nB-1 {
				close(bDone)
			}
		})
	}
	waitCh(t, bDone, "key B to finish while A is blocked")
	if bRan != nB {
		t.Fatalf("key B ran %d callbacks, want %d", bRan, nB)
	}
	if len(aRan) != 0 {
		t.Fatalf("key A made progress while blocked: %v", aRan)
	}

	close(release)
	mustWait(t, &q)
	if fmt.Sprint(aRan) != "[0 1]" {
		t.Fatalf("key A ran %v, want [0 1]", aRan)
	}
	assertDrained(t, &q)
}

// TestGoroutineBound checks that a Queue uses one goroutine per busy key,
// not one per callback, and that none is left once the work drains.
func TestGoroutineBound(t *testing.T) {
	tests := []struct {
		keys, backlog int
	}{
		{1, 1000},
		{10, 100},
		{100, 50},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.keys, tt.backlog), func(t *testing.T) {
			base := runtime.NumGoroutine()
			var q Queue
			release := make(chan struct{})
			var started sync.WaitGroup
			var ran atomic.Int64
			started.Add(tt.keys)
			for k := range tt.keys {
				id := fmt.Sprint("key-", k)
				q.Append(id, func() {
					started.Done()
					<-release
					ran.Add(1)
				})
				for range tt.backlog {
					q.Append(id, func() { ran.Add(1) })
				}
			}
			started.Wait()

			const slack = 3 // the test runner's own goroutines may come and go
			if n := runtime.NumGoroutine() - base; n > tt.keys+slack {
				t.Fatalf("%d goroutines added for %d busy keys, want <= %d", n, tt.keys, tt.keys+slack)
			}
			if n, want := q.Len(), tt.keys*(tt.backlog+1); n != want {
				t.Fatalf("Len = %d, want %d", n, want)
			}

			close(release)
			mustWait(t, &q)
			if n, want := ran.Load(), int64(tt.keys*(tt.backlog+1)); n != want {
				t.Fatalf("ran %d callbacks, want %d", n, want)
			}
			assertDrained(t, &q)
			waitGoroutines(t, base)
		})
	}
}

func TestNoGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	var q Queue
	var ran atomic.Int64
	for i := range 10000 {
		q.Append(fmt.Sprint(i%257), func() { ran.Add(1) })
	}
	mustWait(t, &q)
	if n := ran.Load(); n != 10000 {
		t.Fatalf("ran %d callbacks, want 10000", n)
	}
	assertDrained(t, &q)
	waitGoroutines(t, base)

	// The queue keeps working after it has drained completely.
	done := make(chan struct{})
	q.Append("again", func() { close(done) })
	waitCh(t, done, "callback after drain")
	mustWait(t, &q)
	waitGoroutines(t, base)
}

func TestLen(t *testing.T) {
	var q Queue
	started := make(chan struct{})
	release := make(chan struct{})
	q.Append("a", func() { close(started); <-release })
	waitCh(t, started, "blocking callback")
	if n := q.Len(); n != 1 {
		t.Fatalf("Len with one running callback = %d, want 1", n)
	}
	for i := range 5 {
		q.Append("a", func() {})
		if n, want := q.Len(), i+2; n != want {
			t.Fatalf("Len after %d more appends = %d, want %d", i+1, n, want)
		}
	}

	// Each callback sees itself and everything queued behind it.
	var seen []int
	for range 3 {
		q.Append("a", func() { seen = append(seen, q.Len()) })
	}
	close(release)
	mustWait(t, &q)
	if fmt.Sprint(seen) != "[3 2 1]" {
		t.Fatalf("Len seen from callbacks = %v, want [3 2 1]", seen)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len after Wait = %d, want 0", n)
	}
}

func TestWait(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		var q Queue
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := q.Wait(ctx); err != nil {
			t.Fatalf("Wait on empty queue = %v, want nil", err)
		}
	})

	t.Run("timeout-then-release", func(t *testing.T) {
		for _, closeFirst := range []bool{false, true} {
			t.Run(fmt.Sprint("close=", closeFirst), func(t *testing.T) {
				var q Queue
				started := make(chan struct{})
				release := make(chan struct{})
				ran := false
				q.Append("a", func() { close(started); <-release })
				q.Append("a", func() { ran = true })
				waitCh(t, started, "blocking callback")
				if closeFirst {
					q.Close()
				}

				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				if err := q.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Wait while blocked = %v, want DeadlineExceeded", err)
				}

				ctx, cancel = context.WithCancel(context.Background())
				cancel()
				if err := q.Wait(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait with canceled ctx while blocked = %v, want Canceled", err)
				}

				close(release)
				mustWait(t, &q)
				if !ran {
					t.Fatal("Wait returned before the queued callback ran")
				}
				assertDrained(t, &q)
			})
		}
	})

	t.Run("many-waiters", func(t *testing.T) {
		var q Queue
		release := make(chan struct{})
		var ran atomic.Int64
		for k := range 10 {
			q.Append(fmt.Sprint(k), func() { <-release; ran.Add(1) })
		}
		errs := make(chan error, 20)
		for range cap(errs) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), failAfter)
				defer cancel()
				err := q.Wait(ctx)
				if err == nil && ran.Load() != 10 {
					err = fmt.Errorf("Wait returned after %d of 10 callbacks", ran.Load())
				}
				errs <- err
			}()
		}
		close(release)
		for range cap(errs) {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("includes-work-appended-while-waiting", func(t *testing.T) {
		var q Queue
		release := make(chan struct{})
		second := false
		q.Append("a", func() {
			<-release
			q.Append("b", func() { second = true })
		})
		waitDone := make(chan error)
		go func() { waitDone <- q.Wait(context.Background()) }()
		close(release)
		select {
		case err := <-waitDone:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(failAfter):
			t.Fatal("Wait did not return")
		}
		if !second {
			t.Fatal("Wait returned before a callback appended by a callback ran")
		}
	})
}

func TestClose(t *testing.T) {
	tests := []struct {
		name   string
		append func(q *Queue, id string, f func()) bool
	}{
		{"Append", func(q *Queue, id string, f func()) bool { q.Append(id, f); return true }},
		{"TryAppend", func(q *Queue, id string, f func()) bool { return q.TryAppend(id, f) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Queue
			started := make(chan struct{})
			release := make(chan struct{})
			var ran []string
			if !tt.append(&q, "a", func() { close(started); <-release; ran = append(ran, "before-1") }) {
				t.Fatal("append to open queue reported failure")
			}
			tt.append(&q, "a", func() { ran = append(ran, "before-2") })
			waitCh(t, started, "blocking callback")

			q.Close()
			q.Close() // idempotent
			tt.append(&q, "a", func() { ran = append(ran, "after-close") })
			tt.append(&q, "b", func() { t.Error("callback appended after Close ran") })
			if q.TryAppend("c", func() { t.Error("callback appended after Close ran") }) {
				t.Error("TryAppend after Close = true, want false")
			}
			if n := q.Len(); n != 2 {
				t.Errorf("Len after Close = %d, want 2", n)
			}

			close(release)
			mustWait(t, &q)
			if got := strings.Join(ran, ","); got != "before-1,before-2" {
				t.Fatalf("ran %s, want before-1,before-2", got)
			}
			assertDrained(t, &q)
		})
	}

	t.Run("from-callback", func(t *testing.T) {
		var q Queue
		accepted := make(chan bool, 1)
		q.Append("a", func() {
			q.Close()
			accepted <- q.TryAppend("a", func() { t.Error("callback appended after Close ran") })
		})
		mustWait(t, &q)
		if <-accepted {
			t.Fatal("TryAppend from a callback after Close = true")
		}
	})
}

func TestReentrantAppend(t *testing.T) {
	t.Run("same-key-chain", func(t *testing.T) {
		var q Queue
		const depth = 1000
		var got []int
		var step func(i int) func()
		step = func(i int) func() {
			return func() {
				got = append(got, i)
				if i+1 < depth {
					q.Append("a", step(i+1))
				}
			}
		}
		q.Append("a", step(0))
		mustWait(t, &q)
		if len(got) != depth {
			t.Fatalf("ran %d callbacks, want %d", len(got), depth)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("callback %d ran as #%d", v, i)
			}
		}
	})

	t.Run("runs-after-already-queued", func(t *testing.T) {
		var q Queue
		started := make(chan struct{})
		release := make(chan struct{})
		var got []string
		q.Append("a", func() {
			close(started)
			<-release
			got = append(got, "first")
			q.Append("a", func() { got = append(got, "nested") })
			got = append(got, "first-returns")
		})
		waitCh(t, started, "first callback")
		q.Append("a", func() { got = append(got, "second") })
		close(release)
		mustWait(t, &q)
		if s := strings.Join(got, ","); s != "first,first-returns,second,nested" {
			t.Fatalf("order %s, want first,first-returns,second,nested", s)
		}
	})

	t.Run("other-keys", func(t *testing.T) {
		var q Queue
		var ran atomic.Int64
		q.Append("root", func() {
			for k := range 100 {
				q.Append(fmt.Sprint("child-", k), func() {
					ran.Add(1)
					q.Append("root", func() { ran.Add(1) })
				})
			}
		})
		mustWait(t, &q)
		if n := ran.Load(); n != 200 {
			t.Fatalf("ran %d callbacks, want 200", n)
		}
		assertDrained(t, &q)
	})
}

// TestRaceFanOut hammers a Queue from many goroutines with many keys while
// other goroutines call Len and Wait. Its job is to give the race detector
// something to find: per-key state is touched without locks, relying only
// on the ordering the Queue promises.
func TestRaceFanOut(t *testing.T) {
	const (
		appenders = 16
		keys      = 64
		perApp    = 2000
	)
	var q Queue
	type state struct {
		count int
		last  map[int]int
	}
	states := make([]*state, keys)
	for i := range states {
		states[i] = &state{last: make(map[int]int)}
	}
	var total atomic.Int64

	stop := make(chan struct{})
	var observers sync.WaitGroup
	for range 2 {
		observers.Add(1)
		go func() {
			defer observers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n := q.Len(); n < 0 {
					t.Errorf("Len = %d", n)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				_ = q.Wait(ctx)
				cancel()
			}
		}()
	}

	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perApp {
				k := (a*7 + i*13) % keys
				s := states[k]
				q.Append(fmt.Sprint(k), func() {
					if prev, ok := s.last[a]; ok && prev >= i {
						t.Errorf("key %d: appender %d ran %d after %d", k, a, i, prev)
					}
					s.last[a] = i
					s.count++
					total.Add(1)
					if i%100 == 0 {
						// Re-entrant append to a neighbouring key.
						n := states[(k+1)%keys]
						q.Append(fmt.Sprint((k+1)%keys), func() { n.count++; total.Add(1) })
					}
				})
			}
		}()
	}
	wg.Wait()
	mustWait(t, &q)
	close(stop)
	observers.Wait()

	sum := 0
	for _, s := range states {
		sum += s.count
	}
	want := appenders*perApp + appenders*(perApp/100)
	if sum != want || total.Load() != int64(want) {
		t.Fatalf("ran %d (counted %d) callbacks, want %d", sum, total.Load(), want)
	}
	assertDrained(t, &q)
}

func TestNilCallbackPanics(t *testing.T) {
	var q Queue
	defer func() {
		if recover() == nil {
			t.Fatal("Append(nil) did not panic")
		}
		if n := q.Len(); n != 0 {
			t.Fatalf("Len after rejected nil callback = %d", n)
		}
	}()
	q.Append("a", nil)
}

// TestCallbackPanicCrashes checks the documented behaviour that a panicking
// callback is not swallowed: it takes the process down. The panic happens in
// a child copy of the test binary.
func TestCallbackPanicCrashes(t *testing.T) {
	if os.Getenv("QUEUE_TEST_PANIC") == "1" {
		var q Queue
		q.Append("a", func() { panic("callback boom") })
		_ = q.Wait(context.Background())
		os.Exit(0) // not reached if the panic propagates
	}
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCallbackPanicCrashes$")
	cmd.Env = append(os.Environ(), "QUEUE_TEST_PANIC=1")
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("child exited with %v, want a crash; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "callback boom") {
		t.Fatalf("child output lacks the panic value:\n%s", out)
	}
}
