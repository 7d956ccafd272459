// Package testutil is this repository's use of the containerdtest kit: it
// picks the containerd the tests run against and keeps the helpers the
// library's tests call by their old names.
//
// A test package shares one daemon: call Main from TestMain and Shared from
// each integration test. Tests that kill or restart containerd start their
// own with NewDaemon so they do not disturb the others.
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		d := testutil.Shared(t)
//		ctx, ns := testutil.Context(t, d)
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
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// Environment variables read by the harness.
const (
	EnvFlavor             = "LIBCONTAINERD_TEST_CONTAINERD"
	EnvRequireIntegration = containerdtest.EnvRequireIntegration
	EnvToolsDir           = "LIBCONTAINERD_TOOLS_DIR"
)

// Flavors of containerd the harness can start.
const (
	FlavorV2     = "v2"
	FlavorDebian = "debian"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = containerdtest.DefaultBusybox

// Daemon is a private containerd of a flavor.
type Daemon struct {
	*containerdtest.Daemon
	Flavor string
}

// Start starts the daemon again after Kill, within 30 s.
func (d *Daemon) Start() error { return d.Daemon.Start(context.Background()) }

// Restart kills the daemon and starts it again, within 30 s.
func (d *Daemon) Restart() error { return d.Daemon.Restart(context.Background()) }

// Stop ends the daemon for good: it is the kit's Close.
func (d *Daemon) Stop() error { return d.Close() }

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

// Config returns the kit's configuration for a flavor, checked: the error
// says why it cannot run here.
func Config(flavor string) (containerdtest.Config, error) {
	var cfg containerdtest.Config
	switch flavor {
	case FlavorV2:
		cfg.BinDir = ToolsDir()
	case FlavorDebian:
		cfg.BinDir = "/usr/bin"
	default:
		return cfg, fmt.Errorf("unknown %s=%q: want %q or %q", EnvFlavor, flavor, FlavorV2, FlavorDebian)
	}
	if err := cfg.Check(); err != nil {
		return cfg, fmt.Errorf("containerd %s: %w (run `make tools`)", flavor, err)
	}
	return cfg, nil
}

// NewDaemon starts a private containerd of the selected flavor for t alone
// and closes it when t ends (see containerdtest.New).
func NewDaemon(t testing.TB) *Daemon {
	t.Helper()
	cfg, err := Config(Flavor())
	if err != nil {
		containerdtest.SkipOrFail(t, err)
	}
	return &Daemon{Daemon: containerdtest.New(t, cfg), Flavor: Flavor()}
}

// StartDaemon starts a containerd of the given flavor; the caller must
// Stop it.
func StartDaemon(flavor string) (*Daemon, error) {
	cfg, err := Config(flavor)
	if err != nil {
		return nil, err
	}
	d, err := containerdtest.Start(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &Daemon{Daemon: d, Flavor: flavor}, nil
}

var shared struct {
	mu  sync.Mutex
	kit *containerdtest.Shared
	d   *Daemon
}

// Shared returns the test package's daemon, starting it on first use; Main
// closes it. It skips or fails t when integration tests cannot run here.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	flavor := Flavor()
	cfg, err := Config(flavor)
	if err != nil {
		containerdtest.SkipOrFail(t, err)
	}
	shared.mu.Lock()
	if shared.kit == nil {
		shared.kit = &containerdtest.Shared{Config: cfg}
	}
	kit := shared.kit
	shared.mu.Unlock()

	kd := kit.Daemon(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.d == nil {
		shared.d = &Daemon{Daemon: kd, Flavor: flavor}
	}
	return shared.d
}

// Main runs the package's tests, then closes the shared daemon and removes
// the shared rootfs. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	kit := shared.kit
	shared.mu.Unlock()
	if kit != nil {
		if err := kit.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: close containerd: %v\n", err)
			code = 1
		}
	}
	if rootfs.dir != "" {
		_ = os.RemoveAll(rootfs.dir)
	}
	os.Exit(code)
}

// Context gives t a namespace of its own on d (see
// containerdtest.Daemon.Namespace).
func Context(t testing.TB, d *Daemon) (context.Context, string) {
	t.Helper()
	return d.Namespace(t)
}

// ID turns t's name plus parts into a containerd identifier (see
// containerdtest.ID).
func ID(t testing.TB, parts ...string) string { return containerdtest.ID(t, parts...) }

var rootfs struct {
	once sync.Once
	dir  string
	err  error
}

// Rootfs returns a read-only busybox root filesystem shared by all tests of
// the process, whichever daemon they use; Main removes it.
func Rootfs(t testing.TB) string {
	t.Helper()
	rootfs.once.Do(func() {
		rootfs.dir, rootfs.err = BuildRootfs()
	})
	if rootfs.err != nil {
		containerdtest.SkipOrFail(t, rootfs.err)
	}
	return rootfs.dir
}

// BuildRootfs builds a busybox rootfs in a new temporary directory; the
// caller removes it.
func BuildRootfs() (string, error) {
	dir, err := os.MkdirTemp("", "lcd-rootfs-")
	if err != nil {
		return "", err
	}
	if err := containerdtest.BuildRootfs(dir, BusyboxPath); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// Spec returns an OCI spec for container id that runs args in the shared
// busybox rootfs (see containerdtest.NewSpec).
func Spec(t testing.TB, ctx context.Context, id string, args []string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	s, err := containerdtest.NewSpec(ctx, Rootfs(t), id, args, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewSpec is containerdtest.NewSpec, for programs that are not tests.
func NewSpec(ctx context.Context, rootfs, id string, args []string, opts ...oci.SpecOpts) (*specs.Spec, error) {
	return containerdtest.NewSpec(ctx, rootfs, id, args, opts...)
}
