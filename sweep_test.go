package libcontainerd

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"

	"github.com/ctrkit/libcontainerd/internal/testutil"
)

// TestSweepOrphans checks what NewClient removes from its state directory:
// old bundles of containers containerd does not have, and nothing else.
func TestSweepOrphans(t *testing.T) {
	t.Parallel()
	d := testutil.Shared(t)
	ctx, ns := testutil.Context(t, d)
	cli := d.Client(t)
	stateDir := t.TempDir()
	outside := t.TempDir()
	old := time.Now().Add(-2 * orphanMinAge)

	mkdir := func(name string, mtime time.Time) string {
		p := filepath.Join(stateDir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(p, name+"-stdout"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// A container that containerd has, in this namespace and in another.
	live := testutil.ID(t, "live")
	if _, err := cli.NewContainer(ctx, live, containerd.WithSpec(testutil.Spec(t, ctx, live, []string{"true"}))); err != nil {
		t.Fatal(err)
	}
	otherCtx := namespaces.WithNamespace(ctx, ns+"-b")
	otherLive := testutil.ID(t, "live-elsewhere")
	other, err := cli.NewContainer(otherCtx, otherLive, containerd.WithSpec(testutil.Spec(t, otherCtx, otherLive, []string{"true"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = other.Delete(otherCtx)
		_ = cli.NamespaceService().Delete(otherCtx, ns+"-b")
	})

	keepLive := mkdir(live, old)
	keepOther := mkdir(otherLive, old)
	keepFresh := mkdir("fresh-orphan", time.Now())
	keepNotAnID := mkdir(".not-an-id", old)
	orphan := mkdir("orphan", old)
	target := filepath.Join(outside, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(stateDir, "planted-link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lutimes(link, []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}); err != nil {
		t.Fatal(err)
	}

	c, err := New(ctx, cli, stateDir, ns, newRecordingBackend())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, p := range []string{keepLive, keepOther, keepFresh, keepNotAnID, target} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	for _, p := range []string{orphan, link} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
}
