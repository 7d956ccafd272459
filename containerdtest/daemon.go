// Package testutil starts private containerd daemons for integration tests
// and gives each test its own namespace, IDs and busybox rootfs.
//
// A test package shares one daemon: call Main from TestMain and Shared from
// each integration test. Tests that kill or restart containerd start their
// own with NewDaemon so they do not disturb the others.
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		d := testutil.Shared(t)
//		ctx, ns := testutil.Context(t)
//		cli := d.Client(t)
//		...
//	}
//
// Which containerd runs is chosen by LIBCONTAINERD_TEST_CONTAINERD: "v2"
// (default, the 2.4 build in the repository's tools dir, see `make tools`)
// or "debian" (containerd 1.6 and runc from Debian's packages). Without
// root or without the daemon's binaries, integration tests skip with the
// reason, unless LIBCONTAINERD_REQUIRE_INTEGRATION=1, which turns a skip
// into a failure.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/ctrkit/libcontainerd/internal/leftover"
)

// Environment variables read by the harness.
const (
	EnvFlavor             = "LIBCONTAINERD_TEST_CONTAINERD"
	EnvRequireIntegration = "LIBCONTAINERD_REQUIRE_INTEGRATION"
	EnvToolsDir           = "LIBCONTAINERD_TOOLS_DIR"
)

// Flavors of containerd the harness can start.
const (
	FlavorV2     = "v2"
	FlavorDebian = "debian"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// Daemon is a private containerd with its own root, state and socket under
// one temporary directory. Methods are safe for concurrent use.
type Daemon struct {
	Flavor  string
	Dir     string // everything the daemon owns lives under Dir
	Root    string
	State   string
	Address string // gRPC socket
	LogPath string

	binary string
	path   string // PATH the daemon runs with, so that it finds its shim

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	logf   *os.File
}

// Flavor returns the containerd flavor selected by the environment.
func Flavor() string {
	if f := os.Getenv(EnvFlavor); f != "" {
		return f
	}
	return FlavorV2
}

// ToolsDir is where `make tools` installs the containerd 2.4 binaries: the
// repository's .tools/bin unless LIBCONTAINERD_TOOLS_DIR says otherwise.
func ToolsDir() string {
	if d := os.Getenv(EnvToolsDir); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ".tools/bin"
	}
	return filepath.Join(filepath.Dir(file), "..", "..", ".tools", "bin")
}

// binaries returns the containerd binary of a flavor and the directory of
// its shim, which goes first on the daemon's PATH.
func binaries(flavor string) (daemon, shimDir string, err error) {
	var dir string
	switch flavor {
	case FlavorV2:
		dir = ToolsDir()
	case FlavorDebian:
		dir = "/usr/bin"
	default:
		return "", "", fmt.Errorf("unknown %s=%q: want %q or %q", EnvFlavor, flavor, FlavorV2, FlavorDebian)
	}
	for _, name := range []string{"containerd", "containerd-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", "", fmt.Errorf("containerd %s: %s not found in %s (run `make tools`): %w", flavor, name, dir, err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/runc"); err2 != nil {
			return "", "", fmt.Errorf("runc not found (run `make tools`): %w", err)
		}
	}
	return filepath.Join(dir, "containerd"), dir, nil
}

// preconditions says why integration tests cannot run here, or nil.
func preconditions() error {
	if os.Geteuid() != 0 {
		return errors.New("integration tests need root")
	}
	_, _, err := binaries(Flavor())
	return err
}

// skipOrFail skips t with reason, or fails it when integration tests are
// required.
func skipOrFail(t testing.TB, reason error) {
	t.Helper()
	if os.Getenv(EnvRequireIntegration) == "1" {
		t.Fatalf("integration test cannot run (%s=1): %v", EnvRequireIntegration, reason)
	}
	t.Skipf("skipping integration test: %v", reason)
}

// NewDaemon starts a private containerd of the selected flavor for t alone
// and stops it, removing its directories, when t ends. The daemon's log is
// printed if t failed.
func NewDaemon(t testing.TB) *Daemon {
	t.Helper()
	if err := preconditions(); err != nil {
		skipOrFail(t, err)
	}
	d, err := StartDaemon(Flavor())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			d.DumpLog(t)
		}
		if err := d.Stop(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
	})
	return d
}

// StartDaemon starts a containerd of the given flavor under a new temporary
// directory and waits until it serves. The caller must call Stop.
func StartDaemon(flavor string) (*Daemon, error) {
	bin, shimDir, err := binaries(flavor)
	if err != nil {
		return nil, err
	}
	// Short paths: the socket path must fit in sockaddr_un.
	dir, err := os.MkdirTemp("", "lcd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		Flavor:  flavor,
		Dir:     dir,
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		Address: filepath.Join(dir, "c.sock"),
		LogPath: filepath.Join(dir, "containerd.log"),
		binary:  bin,
		path:    shimDir + string(os.PathListSeparator) + "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}
	if err := d.writeConfig(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := d.Start(); err != nil {
		_ = d.Stop()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) configPath() string { return filepath.Join(d.Dir, "config.toml") }

func (d *Daemon) writeConfig() error {
	// Version 2 is read by containerd 1.6 and migrated by 2.x. CRI and the
	// snapshotters the tests never use are disabled: the tests give runc a
	// rootfs path, not snapshots.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, d.Root, d.State, d.Address, d.Address+".ttrpc", filepath.Join(d.Dir, "opt"))
	return os.WriteFile(d.configPath(), []byte(cfg), 0o600)
}

// Start runs the daemon on its root and state and waits until it serves. It
// is used for the first start and to restart after Kill.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return errors.New("containerd already running")
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.binary, "--config", d.configPath())
	cmd.Env = append(os.Environ(), "PATH="+d.path)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group, so that a Ctrl-C on the test does not reach it
	// before the harness stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	d.cmd, d.exited, d.logf = cmd, exited, logf

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := d.waitServing(ctx, exited); err != nil {
		d.killLocked(syscall.SIGKILL)
		return fmt.Errorf("containerd %s did not come up: %w\n%s", d.Flavor, err, d.tailLog(4096))
	}
	return nil
}

func (d *Daemon) waitServing(ctx context.Context, exited <-chan struct{}) error {
	for {
		select {
		case <-exited:
			return errors.New("containerd exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if _, err := os.Stat(d.Address); err == nil {
			// A fresh client per try with a short deadline: one client would
			// wait out gRPC's reconnect backoff after a refused dial.
			cli, err := containerd.New(d.Address, containerd.WithTimeout(time.Second))
			if err == nil {
				tryCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				serving, err := cli.IsServing(tryCtx)
				cancel()
				cli.Close()
				if err == nil && serving {
					return nil
				}
			}
		}
		select {
		case <-exited:
			return errors.New("containerd exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to the daemon and waits for it to die. Shims and their
// containers keep running, as when containerd crashes.
func (d *Daemon) Kill() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("containerd not running")
	}
	d.killLocked(syscall.SIGKILL)
	return nil
}

// Restart kills the daemon with SIGKILL and starts it again on the same root
// and state.
func (d *Daemon) Restart() error {
	if err := d.Kill(); err != nil {
		return err
	}
	return d.Start()
}

// killLocked signals the daemon, waits for it to exit (SIGKILL after
// stopTimeout) and forgets it.
func (d *Daemon) killLocked(sig syscall.Signal) {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.logf.Close()
	d.cmd, d.exited, d.logf = nil, nil, nil
}

// Stop stops the daemon with SIGTERM (SIGKILL if it does not exit in time),
// kills the shims it left behind and removes its directories.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	d.killLocked(syscall.SIGTERM)
	d.mu.Unlock()
	killShims(d.Address)
	d.deleteRuncState()
	unmountUnder(d.Dir)
	return os.RemoveAll(d.Dir)
}

// deleteRuncState force-deletes, with runc, the containers of the tasks the
// daemon still has on disk, so that a test that failed halfway leaves no
// processes, cgroups or runc state behind.
func (d *Daemon) deleteRuncState() {
	taskDirs, _ := filepath.Glob(filepath.Join(d.State, "io.containerd.runtime.v2.task", "*", "*"))
	for _, dir := range taskDirs {
		ns, id := filepath.Base(filepath.Dir(dir)), filepath.Base(dir)
		_ = exec.Command(runcBinary(), "--root", filepath.Join(leftover.RuncRoot, ns), "delete", "--force", id).Run()
		_ = leftover.RemoveNamespace(ns)
	}
}

// killShims kills the shim processes serving the daemon at address.
func killShims(address string) {
	for _, pid := range leftover.Shims(address) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder lazily unmounts whatever a crashed test left mounted below
// dir, deepest first, so that the directory can be removed.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// Client returns a containerd client for the daemon, closed when t ends.
func (d *Daemon) Client(t testing.TB) *containerd.Client {
	t.Helper()
	cli, err := containerd.New(d.Address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// DumpLog writes the daemon's log to t.
func (d *Daemon) DumpLog(t testing.TB) {
	t.Helper()
	t.Logf("containerd %s log (%s):\n%s", d.Flavor, d.LogPath, d.tailLog(64<<10))
}

func (d *Daemon) tailLog(max int64) string {
	f, err := os.Open(d.LogPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

var shared struct {
	once sync.Once
	d    *Daemon
	err  error
}

// Shared returns the test package's daemon, starting it on first use; Main
// stops it. It skips or fails t when integration tests cannot run here.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	if err := preconditions(); err != nil {
		skipOrFail(t, err)
	}
	shared.once.Do(func() {
		shared.d, shared.err = StartDaemon(Flavor())
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			shared.d.DumpLog(t)
		}
	})
	return shared.d
}

// Main runs the package's tests, then stops the shared daemon and removes
// the shared rootfs. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.d != nil {
		if err := shared.d.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: stop containerd: %v\n", err)
			code = 1
		}
	}
	removeRootfs()
	os.Exit(code)
}

func runcBinary() string {
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	return "/usr/sbin/runc"
}
