package libcontainerd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// oomCheckTimeout bounds the memory cgroup check of an exit. The exit, and
// the events of its container after it, wait for the check (other
// containers' events do not); an answer that does not come in time counts
// as no OOM kill.
const oomCheckTimeout = 500 * time.Millisecond

// startOOMCheck is the store's checkOOM: it checks the memory cgroup of
// exit ev on a goroutine of the monitor's own and hands the answer to done.
// It is called from the event loop only, so close waits for it.
func (m *eventMonitor) startOOMCheck(ev taskEvent, done func(killed bool)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		done(m.oomKilled(m.runCtx, ev))
	}()
}

// oomKilled reports whether exit ev, for which the store asked (its
// TaskOOM may have been lost: containerd was down, or the shim missed the
// cgroup's notification), ended a container whose memory cgroup recorded
// an OOM kill, as containerd's CRI checks at exit. The counter is read from
// the cgroup itself where the client knows where that is (see
// oomCounters), else from containerd's task metrics, as the CRI does,
// which costs the shim reading every statistic of the cgroup. What cannot
// be known (the task or its cgroup is gone, containerd does not answer in
// time) counts as no OOM kill: nothing is invented.
func (m *eventMonitor) oomKilled(ctx context.Context, ev taskEvent) bool {
	id := ev.info.ContainerID
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, m.ns), oomCheckTimeout)
	defer cancel()
	killed, err := m.oomKilledInCgroup(ctx, id)
	if err != nil {
		killed, err = m.oomKilledInMetrics(ctx, id)
	}
	logger := m.logger.WithFields(log.Fields{"container": id, "pid": ev.info.Pid})
	switch {
	case errdefs.IsNotFound(err), errdefs.IsCanceled(err):
		logger.WithError(err).Debug("exit 137: no memory cgroup to check for an OOM kill")
	case err != nil:
		logger.WithError(err).Warn("exit 137: cannot check the memory cgroup for an OOM kill")
	case killed:
		logger.Debug("exit 137: the memory cgroup recorded an OOM kill")
	}
	return err == nil && killed
}

// oomKilledInCgroup reads whether container id's memory cgroup recorded an
// OOM kill from the cgroup's own counter. The task is stopped but not
// deleted when its exit is checked: the engine deletes it only once it has
// the exit, and the cgroup, with the counter, lives until then.
func (m *eventMonitor) oomKilledInCgroup(ctx context.Context, id string) (bool, error) {
	file, ok := m.oomCounters.file(id)
	if !ok {
		md, err := m.conn.ContainerService().Get(ctx, id)
		if err != nil {
			return false, fmt.Errorf("container %s: %w", id, wrapError(err))
		}
		file = counterFileOf(md)
		m.oomCounters.put(id, file)
	}
	if file == "" {
		return false, fmt.Errorf("container %s: memory cgroup not known here: %w", id, errdefs.ErrNotImplemented)
	}
	n, err := readOOMKills(file)
	return n > 0, err
}

// oomKilledInMetrics reads whether container id's memory cgroup recorded
// an OOM kill from containerd's task metrics.
func (m *eventMonitor) oomKilledInMetrics(ctx context.Context, id string) (bool, error) {
	resp, err := m.conn.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil {
		return false, fmt.Errorf("metrics of task %s: %w", id, wrapError(err))
	}
	for _, mt := range resp.Metrics {
		if mt.ID != id || mt.Data == nil {
			continue
		}
		v, err := typeurl.UnmarshalAny(mt.Data)
		if err != nil {
			return false, fmt.Errorf("metrics of task %s: decode %s: %w", id, mt.Data.GetTypeUrl(), err)
		}
		killed, ok := oomKillRecorded(v)
		if !ok {
			return false, fmt.Errorf("metrics of task %s: no OOM kill counter in %T: %w", id, v, errdefs.ErrNotImplemented)
		}
		return killed, nil
	}
	return false, fmt.Errorf("metrics of task %s: %w", id, errdefs.ErrNotFound)
}

// oomCounters remembers, per container, the file of its memory cgroup
// that counts OOM kills (see oomCounterFile): worked out from the spec
// NewContainer was given, or else from containerd's record of the
// container, read once. "" marks a container whose cgroup the library does
// not resolve (another runtime than runc, a cgroup path relative to the
// shim's): its checks ask containerd. Bounded: beyond max containers, one
// remembered is forgotten for each new one. An entry that went stale costs
// no wrong answer: the cgroup of a deleted task is gone, and its file with
// it.
type oomCounters struct {
	mu    sync.Mutex
	files map[string]string
	max   int
}

func newOOMCounters(max int) *oomCounters {
	return &oomCounters{files: make(map[string]string), max: max}
}

// note remembers the counter of container id, created with spec, run by
// shim with runtimeOptions.
func (c *oomCounters) note(id, shim string, spec *specs.Spec, runtimeOptions any) {
	file := ""
	if isRuncShim(shim) {
		ro, _ := runtimeOptions.(*runcoptions.Options)
		file = oomCounterFile(spec, ro.GetSystemdCgroup())
	}
	c.put(id, file)
}

// forget forgets container id, deleted.
func (c *oomCounters) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.files, id)
}

func (c *oomCounters) put(id, file string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[id]; !ok && len(c.files) >= c.max {
		for k := range c.files {
			delete(c.files, k)
			break
		}
	}
	c.files[id] = file
}

func (c *oomCounters) file(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[id]
	return f, ok
}

// counterFileOf returns the OOM kill counter of the container containerd
// recorded as md, or "" when it is not known here.
func counterFileOf(md containers.Container) string {
	if !isRuncShim(md.Runtime.Name) || md.Spec == nil {
		return ""
	}
	v, err := typeurl.UnmarshalAny(md.Spec)
	if err != nil {
		return ""
	}
	spec, _ := v.(*specs.Spec)
	var ro *runcoptions.Options
	if o := md.Runtime.Options; o != nil && o.GetTypeUrl() != "" && typeurl.Is(o, &runcoptions.Options{}) {
		if v, err := typeurl.UnmarshalAny(o); err == nil {
			ro, _ = v.(*runcoptions.Options)
		}
	}
	return oomCounterFile(spec, ro.GetSystemdCgroup())
}

// readOOMKills returns the oom_kill count of a memory cgroup's
// memory.oom_control (cgroup v1) or memory.events (v2).
func readOOMKills(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("read OOM kill counter: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("oom_kill ")); ok {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: oom_kill %q: %w", file, v, errdefs.ErrNotImplemented)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no oom_kill counter: %w", file, errdefs.ErrNotImplemented)
}
