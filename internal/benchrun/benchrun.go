// Package benchrun measures libcontainerd against baselines that do the
// same work in the same run, on a private containerd it starts itself:
//
//   - container lifecycles, execs and stdout throughput against the raw
//     containerd v2 client (cio FIFOs, Wait, Start, Delete);
//   - lifecycles and execs also against moby's own libcontainerd, when the
//     caller supplies it (Config.MobyClient);
//   - the event queue against a goroutine-per-callback chain
//     (internal/chainqueue);
//   - event latency against a raw event subscription to the same events;
//   - exits missed while containerd was down against a raw client asking
//     the status of every task once containerd is back.
//
// Library and baseline runs alternate (ABBA) after a warm-up, so that drift
// in the machine's load hits both alike. Run returns a Result whose Table
// is what `make bench` prints and writes into docs/benchmarks.md:
//
//	res, err := benchrun.Run(ctx, benchrun.Config{Flavor: testutil.FlavorV2, Scale: 1, Progress: os.Stderr})
//	fmt.Print(res.Table())
package benchrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd"
	"github.com/ctrkit/libcontainerd/containerdtest"
	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

const runcShim = "io.containerd.runc.v2"

// waitTimeout bounds every wait for an exit or for output: a failure
// deadline, not part of any measurement.
const waitTimeout = 60 * time.Second

// Phases, in the order they run.
const (
	PhaseQueue     = "queue"
	PhaseLifecycle = "lifecycle"
	PhaseParallel  = "parallel"
	PhaseExec      = "exec"
	PhaseStdout    = "stdout"
	PhaseEvents    = "events"
	PhaseRecovery  = "recovery"
)

// AllPhases lists every phase in run order.
var AllPhases = []string{PhaseQueue, PhaseLifecycle, PhaseParallel, PhaseExec, PhaseStdout, PhaseEvents, PhaseRecovery}

// Config says what to run.
type Config struct {
	// Flavor is the containerd to start: testutil.FlavorV2 or FlavorDebian.
	Flavor string
	// Scale multiplies every iteration count: 1 is the full run (a few
	// minutes), 0.1 a smoke test. Counts never go below a small minimum.
	Scale float64
	// Phases to run; empty means AllPhases.
	Phases []string
	// Progress receives a line per phase and step; nil discards them.
	Progress io.Writer
	// MobyClient, if set, makes moby's libcontainerd client (the code this
	// module succeeds) behind this module's types; the lifecycle, parallel
	// and exec phases then run it as one more arm. It is a function so
	// that this module need not require moby: internal/cmd/lcdbench, a
	// module of its own, supplies it. The client's event loop must stop
	// when ctx is cancelled.
	MobyClient func(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend) (types.Client, error)
}

// env is what the phases share: one daemon, one containerd client used by
// both the library and the raw baseline, and one library client. The
// library and the baseline work in namespaces of their own, so that neither
// sees the other's events.
type env struct {
	cfg      Config
	d        *testutil.Daemon
	cli      *containerd.Client
	lib      *libcontainerd.Client
	be       *backend
	calls    *callCounter // requests on cli, by namespace
	moby     types.Client // nil without Config.MobyClient
	mobyBe   *backend
	mobyNS   string
	mobyCtx  context.Context
	mobyStop context.CancelFunc // ends moby's event loop
	rootfs   string
	work     string // temporary directory: the library's state dir, the raw FIFOs
	libNS    string
	rawNS    string
	libCtx   context.Context
	rawCtx   context.Context
	rawIO    cio.Creator // FIFOs in rawFIFOs, copied into a sink
	rawFIFOs string
	seq      atomic.Int64
	res      *Result
	started  time.Time
}

// Run starts a private containerd of cfg.Flavor, runs the phases and stops
// it, leaving nothing behind. It needs root.
func Run(ctx context.Context, cfg Config) (_ *Result, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("benchmarks need root (containerd and runc)")
	}
	if cfg.Scale <= 0 {
		cfg.Scale = 1
	}
	if len(cfg.Phases) == 0 {
		cfg.Phases = AllPhases
	}
	for _, p := range cfg.Phases {
		if !slices.Contains(AllPhases, p) {
			return nil, fmt.Errorf("unknown phase %q (phases: %v)", p, AllPhases)
		}
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	suffix := randomSuffix()
	e := &env{
		cfg:     cfg,
		be:      newBackend(),
		calls:   newCallCounter(),
		libNS:   "lcdbench-lib-" + suffix,
		rawNS:   "lcdbench-raw-" + suffix,
		mobyNS:  "lcdbench-moby-" + suffix,
		started: time.Now(),
	}
	e.res = &Result{Flavor: cfg.Flavor, Started: e.started, Scale: cfg.Scale}
	e.res.Machine = readMachine()
	defer func() {
		if err := e.teardown(); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	if err := e.setup(ctx); err != nil {
		return nil, err
	}

	phases := map[string]func(context.Context) error{
		PhaseQueue:     e.queuePhase,
		PhaseLifecycle: e.lifecyclePhase,
		PhaseParallel:  e.parallelPhase,
		PhaseExec:      e.execPhase,
		PhaseStdout:    e.stdoutPhase,
		PhaseEvents:    e.eventsPhase,
		PhaseRecovery:  e.recoveryPhase,
	}
	for _, name := range AllPhases {
		if !slices.Contains(cfg.Phases, name) {
			continue
		}
		start := time.Now()
		e.progress("== %s", name)
		if err := phases[name](ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		e.progress("   %s done in %v", name, time.Since(start).Round(time.Millisecond))
	}
	e.res.Elapsed = time.Since(e.started)
	e.res.Machine.LoadAfter = readLoadavg()
	return e.res, nil
}

func (e *env) setup(ctx context.Context) error {
	var err error
	if e.d, err = testutil.StartDaemon(e.cfg.Flavor); err != nil {
		return err
	}
	if e.rootfs, err = testutil.BuildRootfs(); err != nil {
		return err
	}
	if e.work, err = os.MkdirTemp("", "lcd-bench-"); err != nil {
		return err
	}
	if e.cli, err = containerd.New(e.d.Address, containerd.WithTimeout(10*time.Second), containerd.WithExtraDialOpts(e.calls.dialOpts())); err != nil {
		return err
	}
	v, err := e.cli.Version(ctx)
	if err != nil {
		return err
	}
	e.res.Daemon = "containerd " + v.Version
	if v.Revision != "" {
		e.res.Daemon += " (" + v.Revision + ")"
	}
	e.res.Runc = runcVersion()

	e.libCtx = namespaces.WithNamespace(ctx, e.libNS)
	e.rawCtx = namespaces.WithNamespace(ctx, e.rawNS)
	stateDir := filepath.Join(e.work, "lib")
	if e.lib, err = libcontainerd.New(ctx, e.cli, stateDir, e.libNS, e.be); err != nil {
		return err
	}
	e.rawFIFOs = filepath.Join(e.work, "raw")
	e.rawIO = cio.NewCreator(cio.WithStreams(nil, sink{}, sink{}), cio.WithFIFODir(e.rawFIFOs))
	if e.cfg.MobyClient != nil {
		e.mobyBe = newBackend()
		var loopCtx context.Context
		loopCtx, e.mobyStop = context.WithCancel(context.WithoutCancel(ctx))
		e.mobyCtx = namespaces.WithNamespace(ctx, e.mobyNS)
		if e.moby, err = e.cfg.MobyClient(loopCtx, e.cli, filepath.Join(e.work, "moby"), e.mobyNS, e.mobyBe); err != nil {
			return fmt.Errorf("moby's client: %w", err)
		}
		e.res.Moby = "(unknown)"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, dep := range bi.Deps {
				if dep.Path == "github.com/docker/docker" {
					e.res.Moby = dep.Version
				}
			}
		}
		e.progress("containerd %s at %s; namespaces %s (library), %s (raw) and %s (moby)", v.Version, e.d.Address, e.libNS, e.rawNS, e.mobyNS)
		return nil
	}
	e.progress("containerd %s at %s; namespaces %s (library) and %s (raw)", v.Version, e.d.Address, e.libNS, e.rawNS)
	return nil
}

// teardown closes the clients, stops the daemon and removes everything the
// run made, also after a failure.
func (e *env) teardown() error {
	var errs []error
	if e.lib != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, e.lib.CloseContext(ctx))
		cancel()
	}
	if e.mobyStop != nil {
		e.mobyStop()
	}
	if e.cli != nil {
		errs = append(errs, e.cli.Close())
	}
	if e.d != nil {
		errs = append(errs, e.d.Stop())
		if pids := containerdtest.Shims(e.d.Address); len(pids) > 0 {
			errs = append(errs, fmt.Errorf("shims left running: %v", pids))
		}
	}
	for _, ns := range []string{e.libNS, e.rawNS, e.mobyNS} {
		errs = append(errs, containerdtest.RemoveNamespace(ns))
	}
	for _, dir := range []string{e.rootfs, e.work} {
		if dir != "" {
			errs = append(errs, os.RemoveAll(dir))
		}
	}
	return errors.Join(errs...)
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.cfg.Progress, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// n scales an iteration count, keeping at least lo.
func (e *env) n(full, lo int) int {
	return max(lo, int(float64(full)*e.cfg.Scale))
}

// id returns a new container or exec ID.
func (e *env) id(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, e.seq.Add(1))
}

// libSpec and rawSpec return the spec of a busybox container running args
// in the library's or the baseline's namespace (which names its cgroup).
func (e *env) libSpec(id string, args ...string) (*specs.Spec, error) {
	return testutil.NewSpec(e.libCtx, e.rootfs, id, args)
}

func (e *env) rawSpec(id string, args ...string) (*specs.Spec, error) {
	return testutil.NewSpec(e.rawCtx, e.rootfs, id, args)
}

func (e *env) mobySpec(id string, args ...string) (*specs.Spec, error) {
	return testutil.NewSpec(e.mobyCtx, e.rootfs, id, args)
}

// libContainer and rawContainer create a container the same way the
// lifecycle phase does.
func (e *env) libContainer(ctx context.Context, id string, spec *specs.Spec) (types.Container, error) {
	return e.lib.NewContainer(ctx, id, spec, runcShim, &runcoptions.Options{})
}

func (e *env) mobyContainer(id string, spec *specs.Spec) (types.Container, error) {
	return e.moby.NewContainer(e.mobyCtx, id, spec, runcShim, &runcoptions.Options{})
}

func (e *env) rawContainer(id string, spec *specs.Spec) (containerd.Container, error) {
	return e.cli.NewContainer(e.rawCtx, id, containerd.WithSpec(spec), containerd.WithRuntime(runcShim, &runcoptions.Options{}))
}

// retryUnavailable runs op until it returns something other than an
// Unavailable error: calls made right after a containerd restart, while
// the shared client's connection is still in gRPC's reconnect backoff.
func retryUnavailable(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		err := op()
		if err == nil || !errdefs.IsUnavailable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
