package queue_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ctrkit/libcontainerd/queue"
)

// Events for one container are handled in order, one at a time, while
// different containers are handled concurrently.
func Example() {
	var q queue.Queue // the zero value is ready to use

	// Each container's log is only touched by that container's callbacks,
	// which never run at the same time, so it needs no lock.
	handled := map[string]*[]string{"c1": new([]string), "c2": new([]string)}
	for _, ev := range []struct{ id, event string }{
		{"c1", "start"}, {"c2", "start"}, {"c1", "oom"}, {"c1", "exit"}, {"c2", "exit"},
	} {
		log := handled[ev.id]
		q.Append(ev.id, func() { *log = append(*log, ev.event) })
	}

	// Shut down: refuse new events and let the queued ones finish.
	q.Close()
	if !q.TryAppend("c1", func() {}) {
		fmt.Println("closed: new events are dropped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Wait(ctx); err != nil {
		fmt.Println("still pending:", q.Len(), err)
		return
	}
	fmt.Println("c1:", *handled["c1"])
	fmt.Println("c2:", *handled["c2"])
	// Output:
	// closed: new events are dropped
	// c1: [start oom exit]
	// c2: [start exit]
}

// A callback that blocks holds back the later callbacks of its own id only:
// other ids keep running.
func ExampleQueue_Append() {
	var q queue.Queue
	release := make(chan struct{})
	done := make(chan struct{})

	q.Append("slow", func() { <-release })
	q.Append("slow", func() {
		fmt.Println("slow: second callback, once the first returned")
		close(done)
	})
	q.Append("fast", func() {
		fmt.Println("fast: runs while slow is blocked")
		close(release)
	})

	<-done
	// Output:
	// fast: runs while slow is blocked
	// slow: second callback, once the first returned
}
