package libcontainerd

import (
	"context"
	"time"
)

// Option configures a Client. Options are additive to moby's NewClient
// signature: a program that passes none gets moby's behaviour plus the
// guarantees this package documents.
type Option func(*clientOptions)

// ClosePolicy says what Close does with events that are queued for the
// Backend but not yet delivered.
type ClosePolicy int

const (
	// CloseDrain delivers every queued event before Close returns (bounded
	// by the context given to CloseContext). This is the default.
	CloseDrain ClosePolicy = iota
	// CloseAbandon drops queued events that have not started; an event that
	// is being delivered finishes.
	CloseAbandon
)

type clientOptions struct {
	retryAttempts   int
	retryMinBackoff time.Duration
	retryMaxBackoff time.Duration
	reconnectMin    time.Duration
	reconnectMax    time.Duration
	closePolicy     ClosePolicy
	tombstoneTTL    time.Duration
	tombstoneMax    int
	// loseStreamEvent, set by tests only, drops the stream's events it
	// returns true for, as containerd 2.x loses the TaskExit and
	// TaskDelete of a task whose shim shuts down right after its delete.
	loseStreamEvent func(taskEvent) bool
	// beforeDeferredDeletes, set by tests only, runs before each round of
	// deferred deletes: a test holds them back with it.
	beforeDeferredDeletes func(context.Context)
}

func defaultClientOptions() clientOptions {
	return clientOptions{
		retryAttempts:   1,
		retryMinBackoff: 50 * time.Millisecond,
		retryMaxBackoff: 2 * time.Second,
		reconnectMin:    100 * time.Millisecond,
		reconnectMax:    5 * time.Second,
		closePolicy:     CloseDrain,
		tombstoneTTL:    2 * time.Minute,
		tombstoneMax:    10000,
	}
}

// WithEventRetry makes the client call Backend.ProcessEvent again when it
// returns an error: attempts calls in all (>= 1), with a backoff between
// them that doubles from minBackoff up to maxBackoff. Later events of the
// same container wait behind the event being retried; other containers
// are not held up. After the last attempt the event is dropped, logged and
// counted in Metrics.Dropped.
//
// The Backend must then be idempotent: a ProcessEvent that did part of its
// work before failing is called again for the same event. dockerd's is
// not (its exit handler records the exit, emits "die" and schedules a
// restart before it can fail saving the container), which is why the
// default is moby's: one call, the error logged.
func WithEventRetry(attempts int, minBackoff, maxBackoff time.Duration) Option {
	return func(o *clientOptions) {
		if attempts < 1 {
			attempts = 1
		}
		o.retryAttempts = attempts
		o.retryMinBackoff = minBackoff
		o.retryMaxBackoff = max(minBackoff, maxBackoff)
	}
}

// WithReconnectBackoff sets the bounds of the exponential backoff (with
// jitter) between attempts to re-subscribe to containerd's events after the
// stream broke. Default: 100 ms to 5 s.
func WithReconnectBackoff(minBackoff, maxBackoff time.Duration) Option {
	return func(o *clientOptions) {
		o.reconnectMin = minBackoff
		o.reconnectMax = max(minBackoff, maxBackoff)
	}
}

// WithClosePolicy sets what Close does with queued events. Default:
// CloseDrain.
func WithClosePolicy(p ClosePolicy) Option {
	return func(o *clientOptions) { o.closePolicy = p }
}
