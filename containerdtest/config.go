package containerdtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Environment variables read by the package.
const (
	// EnvRequireIntegration set to "1" turns every skip of SkipOrFail (and
	// so of New and Shared.Daemon) into a failure.
	EnvRequireIntegration = "LIBCONTAINERD_REQUIRE_INTEGRATION"
	// EnvBinDir is the containerd binary directory used when
	// Config.BinDir is empty.
	EnvBinDir = "LIBCONTAINERD_TEST_BIN_DIR"
)

// DefaultBusybox is where Debian's and Ubuntu's busybox-static package
// installs a statically linked busybox.
const DefaultBusybox = "/bin/busybox"

// systemPath ends the daemon's PATH, so that runc is found in the usual
// places even when the test runs with a short PATH.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config says which containerd to start and how. The zero value is ready
// to use.
type Config struct {
	// BinDir is the directory holding the containerd and
	// containerd-shim-runc-v2 binaries. Empty means $LIBCONTAINERD_TEST_BIN_DIR,
	// or else the directory of the containerd found in PATH.
	BinDir string
	// TempDir is where the daemon's directory is created; empty means
	// os.TempDir(). The socket lives there, and a Unix socket path must fit
	// in 108 bytes: keep it short.
	TempDir string
	// LogLevel is containerd's log level; empty means "info". The log is
	// printed when a test using the daemon fails.
	LogLevel string
	// Busybox is a statically linked busybox binary for Daemon.Rootfs;
	// empty means DefaultBusybox.
	Busybox string
	// Env is added to the environment of containerd and its shims, as
	// "KEY=value" entries. PATH (see the package documentation) and TMPDIR
	// (a directory in Daemon.Dir) are set by the package; an entry here
	// replaces them.
	Env []string
}

// resolve fills in the defaults of c.
func (c Config) resolve() (Config, error) {
	if c.BinDir == "" {
		c.BinDir = os.Getenv(EnvBinDir)
	}
	if c.BinDir == "" {
		p, err := exec.LookPath("containerd")
		if err != nil {
			return c, fmt.Errorf("containerd not found in PATH (set Config.BinDir or %s): %w", EnvBinDir, err)
		}
		c.BinDir = filepath.Dir(p)
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Busybox == "" {
		c.Busybox = DefaultBusybox
	}
	return c, nil
}

// path is the PATH containerd and its shims run with: the binary directory
// first, so that containerd finds the shim that belongs to it, then the
// test's PATH, then the system directories.
func (c Config) path() string {
	parts := []string{c.BinDir}
	if p := os.Getenv("PATH"); p != "" {
		parts = append(parts, p)
	}
	return strings.Join(append(parts, systemPath), string(os.PathListSeparator))
}

// Check says why a daemon of this configuration cannot run here (another
// operating system, not root, containerd, its runc shim or runc missing),
// or returns nil.
func (c Config) Check() error {
	if err := platformCheck(); err != nil {
		return err
	}
	c, err := c.resolve()
	if err != nil {
		return err
	}
	for _, name := range []string{"containerd", "containerd-shim-runc-v2"} {
		if err := isExecutable(filepath.Join(c.BinDir, name)); err != nil {
			return fmt.Errorf("%s not found in %s: %w", name, c.BinDir, err)
		}
	}
	if _, err := lookPathIn("runc", c.path()); err != nil {
		return fmt.Errorf("runc not found in PATH: %w", err)
	}
	return nil
}

func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// lookPathIn finds an executable name in the directories of path.
func lookPathIn(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// Required reports whether integration tests must run: whether
// LIBCONTAINERD_REQUIRE_INTEGRATION is "1".
func Required() bool { return os.Getenv(EnvRequireIntegration) == "1" }

// SkipOrFail ends t because an integration test cannot run here for
// reason: it skips t, or fails it when Required. Like t.Skip and t.Fatal, it
// must be called from the test's goroutine.
func SkipOrFail(t testing.TB, reason error) {
	t.Helper()
	if reason == nil {
		reason = errors.New("no reason given")
	}
	if Required() {
		t.Fatalf("integration test cannot run (%s=1): %v", EnvRequireIntegration, reason)
	}
	t.Skipf("skipping integration test: %v", reason)
}
