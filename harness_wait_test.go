package libcontainerd

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// waitTimeout bounds every wait for an event or output in tests; it is a
// failure deadline, not a way to order anything.
const waitTimeout = 30 * time.Second

// poll is the tests' one polling loop: it calls cond until it holds or
// timeout has passed, and reports whether it held. It is for state nothing
// tells the test about (the kernel's, containerd's, counters, output being
// copied), never to order events: those are waited for on the Backend. It
// may run on any goroutine.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for interval := time.Millisecond; ; interval = min(2*interval, 20*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// eventually polls cond until it holds, failing t after waitTimeout with
// what and cond's last report.
func eventually(t testing.TB, what string, cond func() (ok bool, report string)) {
	t.Helper()
	var report string
	if !poll(waitTimeout, func() bool {
		var ok bool
		ok, report = cond()
		return ok
	}) {
		t.Fatalf("timed out waiting for %s: %s", what, report)
	}
}

// errGiveUp stops a retry at once.
var errGiveUp = errors.New("giving up")

// retry runs op until it succeeds or gives up with errGiveUp, for calls
// made while containerd restarts, and returns op's last error. It may run
// on any goroutine.
func retry(what string, op func() error) error {
	var err error
	if poll(waitTimeout, func() bool {
		err = op()
		return err == nil || errors.Is(err, errGiveUp)
	}) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ignoreNotFound is err unless it says that what was to be deleted is
// gone already: for clean-ups retried across restarts.
func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// settle waits until measure() <= want, failing t after waitTimeout:
// goroutines, streams and FIFOs that were closed are released
// asynchronously.
func settle(t testing.TB, what string, want int, measure func() int) {
	t.Helper()
	eventually(t, what, func() (bool, string) {
		n := measure()
		return n <= want, fmt.Sprintf("%d, want <= %d", n, want)
	})
}

// inParallel runs f(0) to f(n-1) at once and returns their errors joined.
func inParallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
