package containerdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

const (
	// startTimeout bounds a start whose context has no deadline.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Close waits after SIGTERM before SIGKILL.
	stopTimeout = 15 * time.Second
	// logTail is how much of the log DumpLog prints.
	logTail = 64 << 10
)

// Daemon is a private containerd with its own root, state and socket under
// one temporary directory. Its methods are safe for concurrent use.
//
// Start and New return a serving daemon. Kill and Terminate stop it the
// hard and the polite way; the shims and their containers keep running, as
// they do when containerd crashes or is upgraded, and Start brings the
// daemon back on the same root and state. Close ends it for good.
type Daemon struct {
	Dir     string // the temporary directory; everything below is in it
	Root    string // containerd's root directory (persistent state)
	State   string // containerd's state directory (runtime state)
	Address string // the gRPC socket
	LogPath string // containerd's stdout and stderr

	cfg Config // resolved

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{} // closed when cmd has been waited for
	logf       *os.File
	closed     bool
	namespaces map[string]struct{} // given out by Namespace

	rootfs struct {
		once sync.Once
		dir  string
		err  error
	}
}

// New starts a private containerd for t alone and closes it when t ends,
// printing its log first if t failed. When no daemon can run here (see
// Config.Check), New skips t or, with LIBCONTAINERD_REQUIRE_INTEGRATION=1,
// fails it.
func New(t testing.TB, cfg Config) *Daemon {
	t.Helper()
	if err := cfg.Check(); err != nil {
		SkipOrFail(t, err)
	}
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			d.DumpLog(t)
		}
		if err := d.Close(); err != nil {
			t.Errorf("close containerd: %v", err)
		}
	})
	return d
}

// Start starts a containerd under a new temporary directory and waits until
// it serves, or ctx is done (30 s when ctx has no deadline). The caller
// must Close the daemon. Programs that are not tests use Start; tests use
// New.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "ctrd-")
	if err != nil {
		return nil, err
	}
	// containerd's temporary files go below Dir: it leaves the checkpoint
	// a task was restored from in a temporary directory of its own.
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	d := &Daemon{
		Dir:        dir,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		Address:    filepath.Join(dir, "c.sock"),
		LogPath:    filepath.Join(dir, "containerd.log"),
		cfg:        cfg,
		namespaces: make(map[string]struct{}),
	}
	if err := d.writeConfig(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Daemon) configPath() string { return filepath.Join(d.Dir, "config.toml") }

func (d *Daemon) writeConfig() error {
	// Version 2 is read by containerd 1.6 and migrated by 2.x. CRI and the
	// snapshotters are disabled: tests give runc a rootfs path, not
	// snapshots, and CRI would reach for the host's CNI and images.
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
  level = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, d.Root, d.State, d.Address, d.Address+".ttrpc", d.cfg.LogLevel, filepath.Join(d.Dir, "opt"))
	return os.WriteFile(d.configPath(), []byte(cfg), 0o600)
}

// Start runs the daemon again on its root and state, after Kill or
// Terminate, and waits until it serves or ctx is done (30 s when ctx has
// no deadline). It fails if the daemon is running or closed.
func (d *Daemon) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("containerd daemon is closed")
	}
	if d.cmd != nil {
		return errors.New("containerd already running")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.cfg.BinDir, "containerd"), "--config", d.configPath())
	cmd.Env = append(append(os.Environ(), "PATH="+d.cfg.path(), "TMPDIR="+filepath.Join(d.Dir, "tmp")), d.cfg.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
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

	if err := d.waitServing(ctx, exited); err != nil {
		d.stopLocked(context.Background(), os.Kill)
		return fmt.Errorf("containerd did not come up: %w\n%s", err, d.tail(4096))
	}
	return nil
}

func (d *Daemon) waitServing(ctx context.Context, exited <-chan struct{}) error {
	for {
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

// Kill sends SIGKILL to the daemon and waits for it to die, as when
// containerd crashes. Shims and their containers keep running; Start brings
// the daemon back.
func (d *Daemon) Kill() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("containerd not running")
	}
	d.stopLocked(context.Background(), os.Kill)
	return nil
}

// Terminate sends SIGTERM to the daemon and waits for it to exit, as a
// service manager stops containerd; when ctx is done first, it sends
// SIGKILL. Shims and their containers keep running; Start brings the daemon
// back.
func (d *Daemon) Terminate(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("containerd not running")
	}
	d.stopLocked(ctx, syscall.SIGTERM)
	return nil
}

// Restart kills the daemon with SIGKILL and starts it again on the same
// root and state; see Kill and Start.
func (d *Daemon) Restart(ctx context.Context) error {
	if err := d.Kill(); err != nil {
		return err
	}
	return d.Start(ctx)
}

// Running reports whether the daemon process is running (it may not be
// serving yet, or any more).
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd != nil
}

// stopLocked signals the daemon, waits for it to exit (SIGKILL once ctx is
// done) and forgets it.
func (d *Daemon) stopLocked(ctx context.Context, sig os.Signal) {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-ctx.Done():
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.logf.Close()
	d.cmd, d.exited, d.logf = nil, nil, nil
}

// Close ends the daemon for good: it stops containerd (SIGTERM, SIGKILL
// after 15 s), kills the shims serving it, force-deletes the runc
// containers of its tasks, removes the runc state and cgroups of the
// namespaces it gave out and of its tasks, unmounts what is left mounted
// below Dir and removes Dir, with the temporary files of containerd and
// its shims (their TMPDIR is in Dir). It is safe to call more than once; the error
// says what could not be cleaned up.
func (d *Daemon) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	d.stopLocked(ctx, syscall.SIGTERM)
	cancel()
	namespaces := make([]string, 0, len(d.namespaces))
	for ns := range d.namespaces {
		namespaces = append(namespaces, ns)
	}
	d.mu.Unlock()

	var errs []error
	// Before the shims: a hung CRIU would outlive them, holding its
	// container's processes frozen and traced.
	d.KillCRIU("")
	for _, pid := range d.Shims() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
	errs = append(errs, d.deleteRuncState(namespaces))
	unmountUnder(d.Dir)
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Shims returns the pids of the shim processes serving the daemon.
func (d *Daemon) Shims() []int { return Shims(d.Address) }

// Client returns a containerd client connected to the daemon, closed when
// t ends. opts come after a 10 s dial timeout.
func (d *Daemon) Client(t testing.TB, opts ...containerd.Opt) *containerd.Client {
	t.Helper()
	cli, err := containerd.New(d.Address, append([]containerd.Opt{containerd.WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// DumpLog writes the end of the daemon's log to t.
func (d *Daemon) DumpLog(t testing.TB) {
	t.Helper()
	t.Logf("containerd log (%s):\n%s", d.LogPath, d.tail(logTail))
}

func (d *Daemon) tail(max int64) string {
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
