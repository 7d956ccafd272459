package benchrun

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// counter counts what is written to it, noting when the first write came,
// and closes done once target bytes have arrived. Like sink it has no
// ReadFrom. One goroutine writes to it.
type counter struct {
	n           atomic.Int64
	target      int64
	first, last time.Time // set by the writer; read after done
	once        sync.Once
	done        chan struct{}
}

func newCounter(target int64) *counter {
	return &counter{target: target, done: make(chan struct{})}
}

func (c *counter) Write(p []byte) (int, error) {
	if c.first.IsZero() {
		c.first = time.Now()
	}
	if c.n.Add(int64(len(p))) >= c.target {
		c.once.Do(func() {
			c.last = time.Now()
			close(c.done)
		})
	}
	return len(p), nil
}

// elapsed is the time from the first byte to the last.
func (c *counter) elapsed() time.Duration { return c.last.Sub(c.first) }

func (c *counter) wait(what string) error {
	select {
	case <-c.done:
		return nil
	case <-time.After(waitTimeout):
		return fmt.Errorf("%s: %d of %d bytes within %v", what, c.n.Load(), c.target, waitTimeout)
	}
}

// producer writes size bytes (a multiple of 64 KiB) of zeros to stdout in
// 64 KiB writes. busybox's head -c copies in 4 KiB pieces and, at about
// 300 MiB/s, would measure itself rather than the FIFOs.
func producer(size int64) []string {
	return []string{"dd", "if=/dev/zero", "bs=65536", fmt.Sprintf("count=%d", size/65536)}
}

// libStdout runs a container writing size bytes to stdout through the
// library and returns the time from the first to the last byte read from
// the stdout FIFO.
func (e *env) libStdout(ctx context.Context, size int64) (time.Duration, error) {
	id := e.id("out")
	spec, err := e.libSpec(id, producer(size)...)
	if err != nil {
		return 0, err
	}
	ctr, err := e.libContainer(ctx, id, spec)
	if err != nil {
		return 0, err
	}
	cnt := newCounter(size)
	exitC := e.be.expectExit(id, id)
	task, err := ctr.NewTask(ctx, "", false, func(dio *cio.DirectIO) (cio.IO, error) {
		go drain(cnt, dio.Stdout)
		go drain(sink{}, dio.Stderr)
		return dio, nil
	})
	if err != nil {
		return 0, err
	}
	d, err := startCounted(ctx, task, cnt, id)
	if err != nil {
		return 0, err
	}
	if _, err := waitExit(ctx, exitC, id); err != nil {
		return 0, err
	}
	if _, err := task.Delete(ctx); err != nil {
		return 0, err
	}
	return d, ctr.Delete(ctx)
}

// startCounted starts the task of container id, whose stdout goes to
// cnt, and returns the time from the first to the last byte cnt counted.
func startCounted(ctx context.Context, task interface{ Start(context.Context) error }, cnt *counter, id string) (time.Duration, error) {
	if err := task.Start(ctx); err != nil {
		return 0, err
	}
	if err := cnt.wait(id); err != nil {
		return 0, err
	}
	return cnt.elapsed(), nil
}

// rawStdout does the same with the raw client and cio.WithStreams.
func (e *env) rawStdout(size int64) (time.Duration, error) {
	ctx := e.rawCtx
	id := e.id("out")
	spec, err := e.rawSpec(id, producer(size)...)
	if err != nil {
		return 0, err
	}
	ctr, err := e.rawContainer(id, spec)
	if err != nil {
		return 0, err
	}
	cnt := newCounter(size)
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, cnt, sink{}), cio.WithFIFODir(e.rawFIFOs)))
	if err != nil {
		return 0, err
	}
	statusC, err := task.Wait(ctx)
	if err != nil {
		return 0, err
	}
	d, err := startCounted(ctx, task, cnt, id)
	if err != nil {
		return 0, err
	}
	<-statusC
	if _, err := task.Delete(ctx); err != nil {
		return 0, err
	}
	return d, ctr.Delete(ctx)
}

// orders are the six orders of the three arms; round i uses orders[i%6],
// so that over six rounds each arm runs first, second and third equally
// often.
var orders = [6][arms]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}, {2, 0, 1}, {0, 2, 1}, {1, 2, 0}}

// stdoutPhase measures stdout throughput through the FIFOs. Besides the
// library and the raw client it runs the raw client a second time as an
// A/A control: how far two identical arms drift apart here is the noise
// the library-vs-raw ratio has to be read against.
func (e *env) stdoutPhase(ctx context.Context) error {
	// Three processes share the 2 CPUs here (the producer, the shim's
	// copy loop, the reader), so a run's speed depends on where the
	// scheduler puts them: many short runs rather than a few long ones.
	size := int64(128 << 20)
	if e.cfg.Scale < 1 {
		size = 64 << 20
	}
	run := [arms]func(int64) (time.Duration, error){
		armLib:      func(n int64) (time.Duration, error) { return e.libStdout(ctx, n) },
		armRaw:      e.rawStdout,
		armRawAgain: e.rawStdout,
	}
	for _, arm := range run[:armRawAgain] {
		if _, err := arm(size / 8); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	rounds := e.n(36, 2)
	mibs := float64(size) / (1 << 20)
	var rates [arms][]float64
	for i := range rounds {
		for _, a := range orders[i%len(orders)] {
			d, err := run[a](size)
			if err != nil {
				return err
			}
			rates[a] = append(rates[a], mibs/d.Seconds())
		}
		e.progress("   round %d/%d: library %.0f MiB/s, raw %.0f MiB/s, raw again %.0f MiB/s", i+1, rounds,
			rates[armLib][i], rates[armRaw][i], rates[armRawAgain][i])
	}
	e.add(Row{Metric: fmt.Sprintf("stdout through FIFOs, %d MiB", size>>20), Unit: "MiB/s",
		Lib: median(rates[armLib]), Base: median(slices.Concat(rates[armRaw], rates[armRawAgain])), BaseName: "raw client",
		Target: Target{RatioAtLeast, 0.95}})
	e.add(Row{Metric: "stdout A/A control: raw arm 2 vs arm 1", Unit: "MiB/s",
		Lib: median(rates[armRawAgain]), Base: median(rates[armRaw]), BaseName: "raw arm 1"})
	e.note("Stdout: a container runs `dd if=/dev/zero bs=65536 count=%d`; time from the first to the last byte read from the stdout FIFO, both sides copying with "+
		"io.CopyBuffer and 32 KiB buffers (as cio does) into a counting writer; median of %d runs each, the three arms (library, raw, raw again) "+
		"rotating through all six orders; the baseline pools both raw arms. The A/A row puts raw arm 2 in the library's column against arm 1: its distance from 1 is run-to-run noise.", size/65536, rounds)
	return nil
}
