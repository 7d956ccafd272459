// Package chainqueue is the baseline the queue package is measured against:
// the goroutine-per-callback design of the original libcontainerd queue.
// Every Append starts a goroutine that waits for the previous callback of
// the same id to finish, runs its callback and then signals its own
// completion, so a backlog of n callbacks costs n goroutines.
//
//	var q chainqueue.Queue
//	q.Append("ctr", first)
//	q.Append("ctr", second) // runs after first returns
//
// It is for benchmarks only.
package chainqueue

import "sync"

// Queue runs callbacks serially per id. The zero value is ready to use; it
// is safe for concurrent use.
type Queue struct {
	mu   sync.Mutex
	tail map[string]chan struct{} // completion of the last callback per id
}

// Append starts a goroutine that runs f once every callback appended
// earlier with the same id has returned.
func (c *Queue) Append(id string, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tail == nil {
		c.tail = make(map[string]chan struct{})
	}
	prev := c.tail[id] // nil, and so skipped below, if id is idle
	done := make(chan struct{})
	c.tail[id] = done
	go func() {
		if prev != nil {
			<-prev
		}
		f()
		close(done)
		c.mu.Lock()
		if c.tail[id] == done {
			delete(c.tail, id)
		}
		c.mu.Unlock()
	}()
}
