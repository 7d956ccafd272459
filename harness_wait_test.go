package libcontainerd

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// waitTimeout bounds every wait for an event or output in tests; it is a
// failure deadline, not a way to order anything.
const waitTimeout = 30 * time.Second

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

// errGiveUp stops a retry at once.
var errGiveUp = errors.New("giving up")

// retry runs op until it succeeds, for calls made while containerd
// restarts. It may run on any goroutine.
func retry(what string, op func() error) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		err := op()
		if err == nil || errors.Is(err, errGiveUp) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(20 * time.Millisecond) // waiting for containerd to serve again
	}
}

// settle waits until measure() <= want, failing t after a deadline.
func settle(t testing.TB, what string, want int, measure func() int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := measure()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want <= %d", what, n, want)
		}
		time.Sleep(10 * time.Millisecond) // closed streams and FIFOs are released asynchronously
	}
}
