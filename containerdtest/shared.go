package containerdtest

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// Shared is one daemon shared by the tests of a package: started by the
// first test that asks for it, closed by Close, which TestMain calls after
// the tests have run. The zero value starts a daemon of the zero Config.
// Tests that kill or restart containerd take a daemon of their own with New
// instead, so as not to disturb the others.
type Shared struct {
	// Config is the daemon's configuration; set it before the first call
	// to Daemon.
	Config Config

	once sync.Once
	d    *Daemon
	err  error
}

// Daemon returns the shared daemon, starting it on first use. Like New, it
// skips or fails t when no daemon can run here, and prints the daemon's
// log when t fails.
func (s *Shared) Daemon(t testing.TB) *Daemon {
	t.Helper()
	if err := s.Config.Check(); err != nil {
		SkipOrFail(t, err)
	}
	s.once.Do(func() {
		s.d, s.err = Start(context.Background(), s.Config)
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.d.DumpLog(t)
		}
	})
	return s.d
}

// Close closes the shared daemon if it was started (see Daemon.Close).
// It must not be called while tests use the daemon.
func (s *Shared) Close() error {
	s.once.Do(func() { s.err = errors.New("shared containerd daemon is closed") })
	if s.d == nil {
		return nil
	}
	return s.d.Close()
}
