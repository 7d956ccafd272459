package benchrun

import (
	"context"
	"fmt"
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
	if err := task.Start(ctx); err != nil {
		return 0, err
	}
	if err := cnt.wait(id); err != nil {
		return 0, err
	}
	d := cnt.elapsed()
	if _, err := waitExit(ctx, exitC, id); err != nil {
		return 0, err
	}
	if _, err := task.Delete(ctx); err != nil {
		return 0, err
	}
	return d, ctr.Delete(ctx)
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
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, cnt, sink{}), cio.WithFIFODir(e.work+"/raw")))
	if err != nil {
		return 0, err
	}
	statusC, err := task.Wait(ctx)
	if err != nil {
		return 0, err
	}
	if err := task.Start(ctx); err != nil {
		return 0, err
	}
	if err := cnt.wait(id); err != nil {
		return 0, err
	}
	d := cnt.elapsed()
	<-statusC
	if _, err := task.Delete(ctx); err != nil {
		return 0, err
	}
	return d, ctr.Delete(ctx)
}

// stdoutPhase measures stdout throughput through the FIFOs, alternating
// library and raw runs (ABBA).
func (e *env) stdoutPhase(ctx context.Context) error {
	// Three processes share the 2 CPUs here (the producer, the shim's
	// copy loop, the reader), so a run's speed depends on where the
	// scheduler puts them: many short runs rather than a few long ones.
	size := int64(128 << 20)
	if e.cfg.Scale < 1 {
		size = 64 << 20
	}
	if _, err := e.libStdout(ctx, size/8); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := e.rawStdout(size / 8); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rounds := e.n(12, 2)
	var lib, raw []float64
	mibs := float64(size) / (1 << 20)
	for i := range rounds {
		for _, isLib := range []bool{abba(i), !abba(i)} {
			var d time.Duration
			var err error
			if isLib {
				d, err = e.libStdout(ctx, size)
			} else {
				d, err = e.rawStdout(size)
			}
			if err != nil {
				return err
			}
			if isLib {
				lib = append(lib, mibs/d.Seconds())
			} else {
				raw = append(raw, mibs/d.Seconds())
			}
		}
		e.progress("   round %d/%d: library %.0f MiB/s, raw %.0f MiB/s", i+1, rounds, lib[len(lib)-1], raw[len(raw)-1])
	}
	e.add(Row{Metric: fmt.Sprintf("stdout through FIFOs, %d MiB", size>>20), Unit: "MiB/s", Lib: median(lib), Base: median(raw), BaseName: "raw client",
		Target: Target{RatioAtLeast, 0.95}})
	e.note("Stdout: a container runs `dd if=/dev/zero bs=65536 count=%d`; time from the first to the last byte read from the stdout FIFO, both sides copying with "+
		"io.CopyBuffer and 32 KiB buffers (as cio does) into a counting writer; median of %d runs each (ABBA).", size/65536, rounds)
	return nil
}
