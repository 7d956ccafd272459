// Command demo shows libcontainerd at work against a containerd of its own.
//
// It starts a private containerd (2.4.2 from the repository's .tools/bin by
// default, Debian's 1.6 with -containerd debian) under a temporary
// directory, builds a busybox root filesystem, and drives one container
// through the library: create, stream its output, round-trip its stdin, run
// an exec, pause and resume, read its cgroup stats, checkpoint it with CRIU
// and restore it (when `criu check` passes; `make tools` provides a criu
// that passed a dump-and-restore self-test), kill and delete it. Each CRIU
// step runs under a deadline: a CRIU that hangs is killed, with its
// version and the end of its log printed, and the demo cleans up.
// Every event the library delivers to its Backend is printed as it arrives.
// At the end it shuts everything down and checks that nothing is left: no
// shim, no temporary directory, no runc state or cgroup of its namespace.
//
// Run it as root with `make demo` (which installs what it needs first), or:
//
//	go run ./examples/demo -containerd debian
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/log"

	"github.com/ctrkit/libcontainerd"
	"github.com/ctrkit/libcontainerd/containerdtest"
	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

const (
	runcShim    = "io.containerd.runc.v2"
	containerID = "demo"
	execID      = "probe"
	// stepTimeout bounds every wait for an event or a line of output.
	stepTimeout = 15 * time.Second
)

// initScript is the container's process: it greets, echoes its stdin until
// EOF, then counts ticks (in its memory only, which a restore must bring
// back) until SIGTERM, which it answers with exit status 143. SIGUSR1 makes
// it print the count.
const initScript = `echo "hello from $(hostname), pid $$"
while read -r line; do echo "you said: $line"; done
echo "stdin closed"
n=0
trap 'echo "tick $n"' USR1
trap 'echo "got SIGTERM after $n ticks, exiting"; exit 143' TERM
while :; do n=$((n+1)); sleep 0.1; done`

func main() {
	flavor := flag.String("containerd", testutil.FlavorV2,
		`containerd to start: "v2" (2.4.2 from .tools/bin, installed by make tools) or "debian" (Debian's containerd 1.6)`)
	flag.Parse()
	// The library logs warnings only; the demo prints what happens.
	_ = log.SetLevel("warn")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	con := newConsole(os.Stdout)
	if err := run(ctx, con, *flavor); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

// preflight names the missing piece, if any, before anything is started.
func preflight(flavor string) error {
	if os.Geteuid() != 0 {
		return errors.New("not root: containerd and runc need root (run: sudo make demo)")
	}
	switch flavor {
	case testutil.FlavorV2:
		bin := filepath.Join(testutil.ToolsDir(), "containerd")
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("containerd 2.4.2 is missing (%s not found): run make tools", bin)
		}
	case testutil.FlavorDebian:
		if _, err := os.Stat("/usr/bin/containerd"); err != nil {
			return errors.New("Debian's containerd is missing (/usr/bin/containerd not found): run make tools")
		}
	default:
		return fmt.Errorf("unknown -containerd %q: want %q or %q", flavor, testutil.FlavorV2, testutil.FlavorDebian)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			return errors.New("runc is missing: run make tools")
		}
	}
	if _, err := os.Stat(testutil.BusyboxPath); err != nil {
		return fmt.Errorf("busybox is missing (%s not found, package busybox-static): run make tools", testutil.BusyboxPath)
	}
	return nil
}

func run(ctx context.Context, con *console, flavor string) (retErr error) {
	if err := preflight(flavor); err != nil {
		return err
	}

	// Everything made here is undone in reverse order by the defers below,
	// also when a step fails or the demo is interrupted; the last one
	// checks that nothing is left.
	var (
		d        *testutil.Daemon
		rootfs   string
		stateDir string
		ns       = "lcd-demo-" + randomSuffix()
	)
	defer func() {
		if d != nil {
			if err := d.Stop(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("stop containerd: %w", err))
			}
			con.ok("containerd stopped, its directory %s removed", d.Dir)
		}
		if err := containerdtest.RemoveNamespace(ns); err != nil {
			retErr = errors.Join(retErr, err)
		}
		for _, dir := range []string{rootfs, stateDir} {
			if dir != "" {
				if err := os.RemoveAll(dir); err != nil {
					retErr = errors.Join(retErr, err)
				}
			}
		}
		con.ok("rootfs, state dir, runc state and cgroups of namespace %s removed", ns)
		if err := checkClean(d, ns, rootfs, stateDir); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		con.ok("nothing left behind: no shim, no temporary directory, no runc state, no cgroup")
	}()

	con.section("set up")
	var err error
	if d, err = testutil.StartDaemon(flavor); err != nil {
		return fmt.Errorf("start containerd %s: %w", flavor, err)
	}
	cli, err := containerd.New(d.Address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to containerd: %w", err)
	}
	defer cli.Close()
	v, err := cli.Version(ctx)
	if err != nil {
		return fmt.Errorf("containerd version: %w", err)
	}
	con.ok("containerd %s (%s) serving at %s", v.Version, flavor, d.Address)

	if rootfs, err = testutil.BuildRootfs(); err != nil {
		return err
	}
	con.ok("busybox rootfs at %s", rootfs)
	if stateDir, err = os.MkdirTemp("", "lcd-demo-state-"); err != nil {
		return err
	}

	backend := newPrintingBackend(con)
	client, err := libcontainerd.New(ctx, cli, stateDir, ns, backend)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := client.CloseContext(closeCtx); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("close client: %w", err))
		}
		con.ok("libcontainerd client closed: %+v", client.Metrics())
	}()
	con.ok("libcontainerd client on namespace %s, bundles under %s", ns, stateDir)
	defer con.section("shut down")

	return drive(ctx, con, client, backend, d, rootfs, ns)
}

// drive runs the container through its life.
func drive(ctx context.Context, con *console, client *libcontainerd.Client, backend *printingBackend, d *testutil.Daemon, rootfs, ns string) (retErr error) {
	con.section("create container %q and start it", containerID)
	spec, err := testutil.NewSpec(namespaces.WithNamespace(ctx, ns), rootfs, containerID,
		[]string{"sh", "-c", initScript}, oci.WithHostname(containerID))
	if err != nil {
		return err
	}
	ctr, err := client.NewContainer(ctx, containerID, spec, runcShim, &runcoptions.Options{})
	if err != nil {
		return err
	}
	con.ok("container created")
	defer func() {
		// On success the task is gone and this only deletes the container;
		// after a failure it kills what is left first.
		if t, err := ctr.Task(context.WithoutCancel(ctx)); err == nil {
			_ = t.ForceDelete(context.WithoutCancel(ctx))
		}
		if err := ctr.Delete(context.WithoutCancel(ctx)); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		con.ok("container deleted")
	}()

	out := newStream(con, "stdout")
	errOut := newStream(con, "stderr")
	var stdin io.WriteCloser
	task, err := ctr.NewTask(ctx, "", true, func(dio *cio.DirectIO) (cio.IO, error) {
		stdin = dio.Stdin
		go out.follow(dio.Stdout)
		go errOut.follow(dio.Stderr)
		return dio, nil
	})
	if err != nil {
		return err
	}
	con.ok("task created, pid %d", task.Pid())
	if err := task.Start(ctx); err != nil {
		return err
	}
	con.ok("task started")
	if err := out.waitFor(ctx, "hello from"); err != nil {
		return err
	}

	con.section("round-trip stdin")
	con.info("writing %q to the container's stdin", "ping")
	if _, err := io.WriteString(stdin, "ping\n"); err != nil {
		return fmt.Errorf("write stdin: %w", err)
	}
	if err := out.waitFor(ctx, "you said: ping"); err != nil {
		return err
	}
	con.info("closing stdin")
	if err := stdin.Close(); err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	if err := out.waitFor(ctx, "stdin closed"); err != nil {
		return err
	}

	con.section("exec %q in the container", execID)
	execOut := newStream(con, "exec stdout")
	execErr := newStream(con, "exec stderr")
	execSpec := *spec.Process
	execSpec.Args = []string{"sh", "-c", `echo "pid 1 of the container is $(cat /proc/1/comm)"; exit 7`}
	proc, err := task.Exec(ctx, execID, &execSpec, false, func(dio *cio.DirectIO) (cio.IO, error) {
		go execOut.follow(dio.Stdout)
		go execErr.follow(dio.Stderr)
		return dio, nil
	})
	if err != nil {
		return err
	}
	con.ok("exec started, pid %d", proc.Pid())
	if _, err := backend.waitFor(ctx, types.EventExit, execID); err != nil {
		return err
	}
	execOut.wait(ctx)
	st, err := proc.Delete(ctx)
	if err != nil {
		return err
	}
	con.ok("exec deleted, exit status %d", st.ExitCode())

	con.section("pause and resume")
	if err := task.Pause(ctx); err != nil {
		return err
	}
	if _, err := backend.waitFor(ctx, types.EventPaused, ""); err != nil {
		return err
	}
	if s, err := task.Status(ctx); err == nil {
		con.ok("status: %s", s.Status)
	}
	if err := task.Resume(ctx); err != nil {
		return err
	}
	if _, err := backend.waitFor(ctx, types.EventResumed, ""); err != nil {
		return err
	}
	if s, err := task.Status(ctx); err == nil {
		con.ok("status: %s", s.Status)
	}

	con.section("stats")
	stats, err := task.Stats(ctx)
	if err != nil {
		return err
	}
	printStats(con, stats)

	// After the stats: containerd 2.4's shim has no cgroup for a restored
	// task, whose Stats then fail.
	crs := criuSteps{con: con, d: d, ns: ns}
	if task, out, err = checkpointRestore(ctx, crs, ctr, task, backend, out); err != nil {
		return err
	}

	con.section("kill and delete")
	con.info("sending SIGTERM")
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil {
		return err
	}
	exit, err := backend.waitFor(ctx, types.EventExit, containerID)
	if err != nil {
		return err
	}
	con.ok("exited with status %d at %s", exit.ExitCode, exit.ExitedAt.Local().Format("15:04:05.000"))
	out.wait(ctx)
	st, err = task.Delete(ctx)
	if err != nil {
		return err
	}
	con.ok("task deleted, exit status %d", st.ExitCode())
	return nil
}

// askCount sends SIGUSR1 to the task and returns the count it prints.
func askCount(ctx context.Context, task types.Task, out *stream) (int, error) {
	if err := task.Kill(ctx, syscall.SIGUSR1); err != nil {
		return 0, err
	}
	line, err := out.waitLine(ctx, "tick ")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "tick ")))
}

// dirSize counts the files under dir and their bytes.
func dirSize(dir string) (files int, size int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	return files, size, err
}

func printStats(con *console, s *types.Stats) {
	switch m := s.Metrics.(type) {
	case *cgroup1stats.Metrics:
		con.ok("cgroup v1, read at %s", s.Read.Local().Format("15:04:05.000"))
		con.info("memory usage  %s", mib(m.GetMemory().GetUsage().GetUsage()))
		con.info("memory limit  %s", mib(m.GetMemory().GetUsage().GetLimit()))
		con.info("cpu time      %s", time.Duration(m.GetCPU().GetUsage().GetTotal()).Round(time.Microsecond))
		con.info("pids          %d", m.GetPids().GetCurrent())
	case *cgroup2stats.Metrics:
		con.ok("cgroup v2, read at %s", s.Read.Local().Format("15:04:05.000"))
		con.info("memory usage  %s", mib(m.GetMemory().GetUsage()))
		con.info("cpu time      %s", (time.Duration(m.GetCPU().GetUsageUsec()) * time.Microsecond))
		con.info("pids          %d", m.GetPids().GetCurrent())
	default:
		con.info("metrics of type %T", s.Metrics)
	}
}

func mib(b uint64) string {
	if b >= 1<<60 {
		return "unlimited"
	}
	return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20))
}

// checkClean reports what the demo left behind, if anything.
func checkClean(d *testutil.Daemon, ns string, dirs ...string) error {
	var left []string
	if d != nil {
		for _, pid := range containerdtest.Shims(d.Address) {
			left = append(left, fmt.Sprintf("shim process %d", pid))
		}
		dirs = append(dirs, d.Dir)
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(dir); err == nil {
			left = append(left, dir)
		}
	}
	left = append(left, containerdtest.Leftovers(ns)...)
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// console prints timestamped lines, one at a time: the event and output
// goroutines print while the main flow does.
type console struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func newConsole(w io.Writer) *console { return &console{w: w} }

func (c *console) printf(kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s  %-11s %s\n", time.Now().Format("15:04:05.000"), kind, fmt.Sprintf(format, args...))
}

func (c *console) section(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	fmt.Fprintf(c.w, "\n== %d. %s\n", c.n, fmt.Sprintf(format, args...))
}

func (c *console) ok(format string, args ...any)   { c.printf("ok", format, args...) }
func (c *console) info(format string, args ...any) { c.printf("", format, args...) }

// printingBackend is the demo's Backend: it prints every event as it
// arrives and hands it to the main flow, which waits for some of them.
type printingBackend struct {
	con    *console
	events chan delivered
}

type delivered struct {
	typ  types.EventType
	info types.EventInfo
}

func newPrintingBackend(con *console) *printingBackend {
	return &printingBackend{con: con, events: make(chan delivered, 256)}
}

// ProcessEvent prints the event and passes it on; it never blocks, as a
// Backend must not hold up the container's later events.
func (b *printingBackend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	line := fmt.Sprintf("%-8s %-13s", containerID, et)
	if ei.ProcessID != "" {
		line += fmt.Sprintf(" process=%s", ei.ProcessID)
	}
	if ei.Pid != 0 {
		line += fmt.Sprintf(" pid=%d", ei.Pid)
	}
	if et == types.EventExit {
		line += fmt.Sprintf(" exit=%d", ei.ExitCode)
	}
	if ei.Error != nil {
		line += fmt.Sprintf(" error=%q", ei.Error)
	}
	b.con.printf("EVENT", "%s", strings.TrimSpace(line))
	select {
	case b.events <- delivered{et, ei}:
	default:
	}
	return nil
}

// waitFor waits for an event of type et (of process processID, if set).
func (b *printingBackend) waitFor(ctx context.Context, et types.EventType, processID string) (types.EventInfo, error) {
	timeout := time.NewTimer(stepTimeout)
	defer timeout.Stop()
	for {
		select {
		case e := <-b.events:
			if e.typ == et && (processID == "" || e.info.ProcessID == processID) {
				return e.info, nil
			}
		case <-ctx.Done():
			return types.EventInfo{}, ctx.Err()
		case <-timeout.C:
			return types.EventInfo{}, fmt.Errorf("no %s event for %q within %v", et, processID, stepTimeout)
		}
	}
}

// stream prints the lines of one output of a process and lets the main flow
// wait for a line.
type stream struct {
	con   *console
	name  string
	lines chan string
	done  chan struct{}
}

func newStream(con *console, name string) *stream {
	return &stream{con: con, name: name, lines: make(chan string, 64), done: make(chan struct{})}
}

// follow prints r line by line until EOF.
func (s *stream) follow(r io.Reader) {
	defer close(s.done)
	if r == nil {
		return
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.con.printf(s.name, "%s", sc.Text())
		select {
		case s.lines <- sc.Text():
		default:
		}
	}
}

// waitFor waits for a line that contains want.
func (s *stream) waitFor(ctx context.Context, want string) error {
	_, err := s.waitLine(ctx, want)
	return err
}

// waitLine waits for a line that contains want and returns it.
func (s *stream) waitLine(ctx context.Context, want string) (string, error) {
	timeout := time.NewTimer(stepTimeout)
	defer timeout.Stop()
	for {
		select {
		case l := <-s.lines:
			if strings.Contains(l, want) {
				return l, nil
			}
		case <-ctx.Done():
			return "", ctx.Err()
		case <-timeout.C:
			return "", fmt.Errorf("no line %q on %s within %v", want, s.name, stepTimeout)
		}
	}
}

// wait waits, for a moment at most, until the stream reached EOF, so that
// the process's last lines print before what follows.
func (s *stream) wait(ctx context.Context) {
	select {
	case <-s.done:
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
}

var _ types.Backend = (*printingBackend)(nil)
