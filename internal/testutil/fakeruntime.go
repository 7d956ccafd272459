package testutil

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// FakeRuntimeRecordAnnotation is the spec annotation that names the
// directory where the fake runtime records the checkpoint files it wrote
// (checkpoint/) and received (restore/). It must match RecordAnnotation in
// ./fakeruntime.
const FakeRuntimeRecordAnnotation = "ctrkit.libcontainerd.test/fakeruntime-record"

var fakeRuntimes struct {
	mu     sync.Mutex
	builds map[*Daemon]*fakeRuntimeBuild
}

type fakeRuntimeBuild struct {
	once sync.Once
	path string
	err  error
}

// FakeRuntime returns the path of the fake runtime (the program in
// ./fakeruntime: runc, except for checkpoint and restore) for use as the
// runc shim's BinaryName on d. It is built on first use for d, into d's
// directory, and goes away with d.
func (d *Daemon) FakeRuntime(t testing.TB) string {
	t.Helper()
	fakeRuntimes.mu.Lock()
	if fakeRuntimes.builds == nil {
		fakeRuntimes.builds = make(map[*Daemon]*fakeRuntimeBuild)
	}
	b := fakeRuntimes.builds[d]
	if b == nil {
		b = &fakeRuntimeBuild{}
		fakeRuntimes.builds[d] = b
	}
	fakeRuntimes.mu.Unlock()
	b.once.Do(func() {
		b.path, b.err = buildFakeRuntime(filepath.Join(d.Dir, "fakeruntime"))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func buildFakeRuntime(out string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("build fake runtime: cannot locate its source")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build fake runtime: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "fakeruntime")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fake runtime: %w\n%s", err, b)
	}
	return out, nil
}
