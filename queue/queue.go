// Package queue serializes callbacks per key while letting different keys
// proceed in parallel.
//
// It is a drop-in replacement for the queue used by libcontainerd to order
// events per container: callbacks appended under the same id run one at a
// time, in the order they were appended, while callbacks for different ids
// run concurrently. Unlike a goroutine-per-callback design, a Queue runs at
// most one goroutine per id that has pending work, and that goroutine exits
// as soon as the id's backlog is empty, so an idle Queue owns no goroutines
// and a large backlog costs one slice slot per callback rather than one
// goroutine.
//
// Usage:
//
//	var q queue.Queue // the zero value is ready to use
//
//	q.Append(containerID, func() { handleExit(containerID) })
//	q.Append(containerID, func() { cleanup(containerID) }) // runs after handleExit returns
//
//	// On shutdown: refuse new work and let what is queued finish.
//	q.Close()
//	if err := q.Wait(ctx); err != nil {
//		log.Printf("%d callbacks still pending: %v", q.Len(), err)
//	}
package queue

import (
	"context"
	"sync"
	"sync/atomic"
)

// maxReuse is the largest buffer capacity, in callbacks, that a key's state
// keeps for reuse once its backlog has drained. Larger buffers, left behind
// by an unusual burst, are dropped so that the garbage collector can reclaim
// them.
const maxReuse = 1024

// Queue runs callbacks serially per key and concurrently across keys.
//
// The embedded sync.Mutex guards the Queue's internal state; it is exported
// only so that the method set matches the original libcontainerd queue.
// Callers should not lock it: holding it while calling any method of the
// Queue deadlocks, and holding it at all stalls every worker.
//
// The zero value is an empty, open Queue ready for use. A Queue is safe for
// concurrent use by multiple goroutines and must not be copied after first
// use.
//
// Ordering: callbacks appended with the same id run one after another, in
// the order in which their Append calls acquired the Queue's lock. For two
// Append calls where one happens before the other (for example, sequential
// calls from one goroutine), that is their program order; Append calls that
// race with each other are ordered arbitrarily but consistently. Each
// callback for an id returns before the next one for that id starts, and
// everything a callback did happens before the next callback for the same
// id begins. Callbacks for different ids are not ordered with respect to
// each other and may run in parallel.
//
// Panics: a Queue does not recover panics. A callback that panics crashes
// the program exactly as a panic in any other goroutine would, since
// silently dropping the failure would leave the id's later callbacks
// running against state the failed callback never finished updating.
type Queue struct {
	sync.Mutex

	keys   map[string]*keyQueue // ids with pending work; each has one worker
	closed bool                 // set by Close; Append then drops callbacks
	idle   chan struct{}        // closed when keys becomes empty; nil unless a Wait is blocked
	n      atomic.Int64         // callbacks queued or running
}

// keyQueue is the backlog of one id. The callback that finds the id idle is
// handed to the new worker in first; later ones are added to pending under
// the Queue's lock. The worker runs first, then repeatedly swaps pending for
// spare, an empty buffer it owns, and runs the swapped-out batch without
// holding the lock. Handing over first directly means a lone callback, the
// common case for sparse events, costs the worker a single lock
// acquisition.
//
// keyQueues are recycled through keyQueuePool together with their buffers
// and their bound worker function, so that starting a worker for an idle id
// usually allocates nothing but the goroutine.
type keyQueue struct {
	q       *Queue
	id      string
	first   func() // the callback that started the worker
	pending []func()
	spare   []func()
	run     func() // k.drain, bound once per keyQueue
}

var keyQueuePool sync.Pool // of *keyQueue

// getKeyQueue returns an empty keyQueue for id, recycled if possible.
func (q *Queue) getKeyQueue(id string) *keyQueue {
	k, _ := keyQueuePool.Get().(*keyQueue)
	if k == nil {
		k = new(keyQueue)
		k.run = k.drain
	}
	k.q, k.id = q, id
	return k
}

// Append queues f to run after every callback previously appended with the
// same id has returned. It never blocks on callbacks: if id has no pending
// work, Append starts a worker goroutine for it; otherwise f is added to the
// id's backlog.
//
// After Close, Append silently drops f; use TryAppend to find out whether a
// callback was accepted. Append may be called from within a callback,
// including one running for the same id, in which case f runs after the
// current callback and anything queued before f. Append panics if f is nil.
func (q *Queue) Append(id string, f func()) {
	q.TryAppend(id, f)
}

// TryAppend is like Append but reports whether f was queued. It returns
// false, and drops f, once Close has been called.
func (q *Queue) TryAppend(id string, f func()) bool {
	if f == nil {
		panic("queue: nil callback")
	}
	q.Lock()
	if q.closed {
		q.Unlock()
		return false
	}
	q.n.Add(1)
	if k, ok := q.keys[id]; ok {
		k.pending = append(k.pending, f)
		q.Unlock()
		return true
	}
	if q.keys == nil {
		q.keys = make(map[string]*keyQueue)
	}
	k := q.getKeyQueue(id)
	k.first = f
	q.keys[id] = k
	q.Unlock()
	go k.run()
	return true
}

// drain is the worker for k.id. It runs k.first and then k's backlog a
// batch at a time, taking the Queue's lock once per batch, and exits as soon
// as the backlog is empty.
func (k *keyQueue) drain() {
	q := k.q
	first := k.first
	k.first = nil
	first()
	q.n.Add(-1)

	batch := k.spare
	k.spare = nil
	for {
		q.Lock()
		if len(k.pending) == 0 {
			// Nothing is left for the id; no Append can reach k once it
			// is removed from the map, so k may be recycled.
			delete(q.keys, k.id)
			if len(q.keys) == 0 && q.idle != nil {
				close(q.idle)
				q.idle = nil
			}
			q.Unlock()
			k.q, k.id = nil, ""
			k.spare = reusable(batch)
			k.pending = reusable(k.pending)
			keyQueuePool.Put(k)
			return
		}
		batch, k.pending = k.pending, batch[:0]
		q.Unlock()

		for i, f := range batch {
			f()
			batch[i] = nil // let f and what it captured be collected
			q.n.Add(-1)
		}
	}
}

// reusable returns buf emptied for reuse, or nil if it is too large to keep.
func reusable(buf []func()) []func() {
	if cap(buf) > maxReuse {
		return nil
	}
	return buf[:0]
}

// Len returns the number of callbacks that have been appended and have not
// yet returned, counting both those waiting in a backlog and those running.
// It is meant for metrics: with concurrent activity the value may be stale
// by the time it is used.
func (q *Queue) Len() int {
	return int(q.n.Load())
}

// Close stops the Queue from accepting new callbacks: afterwards Append
// drops its callback and TryAppend returns false. Callbacks already queued,
// by Append calls that returned before Close was called, still run; use Wait
// to wait for them. Close does not block and may be called more than once.
func (q *Queue) Close() {
	q.Lock()
	q.closed = true
	q.Unlock()
}

// Wait blocks until the Queue is empty, that is, until every callback
// appended so far has returned and no further callback is queued. It
// returns nil then, or ctx.Err() if ctx is done first; it returns nil
// without waiting if the Queue is already empty.
//
// Wait works whether or not Close has been called. On an open Queue,
// callbacks appended while Wait is blocked are waited for as well, so a
// steady stream of Append calls can keep Wait from returning until ctx is
// done; call Close first to wait for a bounded amount of work.
//
// A callback must not call Wait without a deadline: the callback itself
// keeps the Queue from becoming empty.
func (q *Queue) Wait(ctx context.Context) error {
	q.Lock()
	if len(q.keys) == 0 {
		q.Unlock()
		return nil
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	idle := q.idle
	q.Unlock()

	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
