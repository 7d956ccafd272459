package libcontainerd

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/ctrkit/libcontainerd/queue"
	"github.com/ctrkit/libcontainerd/types"
)

// Metrics is a snapshot of the client's event counters.
type Metrics struct {
	Received     uint64 // task events read from containerd, TaskDelete (never delivered) included
	Delivered    uint64 // ProcessEvent calls that succeeded
	Deduplicated uint64 // events not delivered: repeated exits, starts after an exit, exits the engine got from its Delete
	Synthesized  uint64 // exits made up from a TaskDelete or by reconciliation after a reconnect
	Retried      uint64 // ProcessEvent calls repeated after an error (WithEventRetry)
	Dropped      uint64 // events given up: ProcessEvent failed (after its retries), abandoned on Close, or emitted after it
	Reconnects   uint64 // times the event stream was re-established after breaking
	// DeletesDeferred counts deletes (task, exec, container) that failed
	// because containerd was unavailable and that the client took over;
	// DeletesCompleted those of them it completed once containerd was back.
	// DeletesAbandoned those still waiting when the client was closed: Close
	// does not wait for containerd to come back, and logs each of them.
	DeletesDeferred  uint64
	DeletesCompleted uint64
	DeletesAbandoned uint64
	// HoldsExpired counts deletes through the API that ran past
	// deleteHoldLimit (5 s): the container's events stopped waiting for
	// them.
	HoldsExpired uint64
	QueueDepth   int // events queued or being delivered now
}

type eventCounters struct {
	received, delivered, deduplicated, synthesized, retried, dropped, reconnects atomic.Uint64
	deletesDeferred, deletesCompleted, deletesAbandoned, holdsExpired            atomic.Uint64
}

// Metrics returns a snapshot of the client's event counters.
func (c *Client) Metrics() Metrics {
	m := &c.events.counters
	return Metrics{
		Received:         m.received.Load(),
		Delivered:        m.delivered.Load(),
		Deduplicated:     m.deduplicated.Load(),
		Synthesized:      m.synthesized.Load(),
		Retried:          m.retried.Load(),
		Dropped:          m.dropped.Load(),
		Reconnects:       m.reconnects.Load(),
		DeletesDeferred:  m.deletesDeferred.Load(),
		DeletesCompleted: m.deletesCompleted.Load(),
		DeletesAbandoned: m.deletesAbandoned.Load(),
		HoldsExpired:     m.holdsExpired.Load(),
		QueueDepth:       c.events.delivery.q.Len(),
	}
}

// delivery hands events to the Backend: per container in order, one at a
// time, through the queue, each with one call (moby's behaviour) unless
// WithEventRetry asked for more.
type delivery struct {
	q        queue.Queue
	backend  types.Backend
	logger   *log.Entry
	opts     clientOptions
	counters *eventCounters
	// abandonC is closed when queued events are to be dropped (close).
	abandonC chan struct{}
}

func newDelivery(b types.Backend, logger *log.Entry, opts clientOptions, counters *eventCounters) *delivery {
	return &delivery{backend: b, logger: logger, opts: opts, counters: counters, abandonC: make(chan struct{})}
}

// enqueue queues ev for its container. It does not block.
func (d *delivery) enqueue(ev taskEvent) {
	if !d.q.TryAppend(ev.info.ContainerID, func() { d.deliver(ev) }) {
		// The client is closed: an API call or a late check emitted it.
		d.counters.dropped.Add(1)
	}
}

// deliver calls the Backend; with WithEventRetry it retries with backoff on
// error while later events of the container wait in the queue.
func (d *delivery) deliver(ev taskEvent) {
	// Made only when there is something to log: the common path is one
	// call that succeeds.
	logger := func() *log.Entry {
		return d.logger.WithFields(log.Fields{"container": ev.info.ContainerID, "event": ev.typ, "process": ev.info.ProcessID})
	}
	backoff := d.opts.retryMinBackoff
	for attempt := 1; ; attempt++ {
		if d.abandoned() {
			d.counters.dropped.Add(1)
			return
		}
		err := d.backend.ProcessEvent(ev.info.ContainerID, ev.typ, ev.info)
		if err == nil {
			d.counters.delivered.Add(1)
			return
		}
		if attempt >= d.opts.retryAttempts {
			d.counters.dropped.Add(1)
			logger().WithError(err).WithField("attempts", attempt).Error("failed to process event")
			return
		}
		logger().WithError(err).WithField("attempt", attempt).Warn("failed to process event, retrying")
		d.counters.retried.Add(1)
		select {
		case <-time.After(jitter(backoff)):
		case <-d.abandonC:
		}
		backoff = min(2*backoff, d.opts.retryMaxBackoff)
	}
}

func (d *delivery) abandoned() bool {
	select {
	case <-d.abandonC:
		return true
	default:
		return false
	}
}

// close stops the queue and drains it or abandons what is queued,
// according to the close policy and ctx.
func (d *delivery) close(ctx context.Context) error {
	d.q.Close()
	if d.opts.closePolicy == CloseAbandon {
		close(d.abandonC)
		return d.q.Wait(context.WithoutCancel(ctx))
	}
	err := d.q.Wait(ctx)
	if err != nil {
		// Out of time: drop the rest, then wait for the event in flight.
		close(d.abandonC)
		_ = d.q.Wait(context.WithoutCancel(ctx))
	}
	return err
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
