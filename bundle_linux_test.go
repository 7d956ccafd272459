package libcontainerd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ctrkit/libcontainerd/internal/testutil"
)

// TestSweepOrphans checks what NewClient removes from its state directory:
// old bundles, with or without FIFOs, of containers containerd does not
// have, and nothing else. The state directory is laid out as in dockerd's
// default setup, where it is also its managed containerd's
// (<exec-root>/containerd) and where the plugin executor keeps sockets.
func TestSweepOrphans(t *testing.T) {
	t.Parallel()
	d := testutil.Shared(t)
	ctx, ns := testutil.Context(t, d)
	cli := d.Client(t)
	stateDir := t.TempDir()
	outside := t.TempDir()
	old := time.Now().Add(-2 * orphanMinAge)

	var kept, removed []string
	path := func(name string) string { return filepath.Join(stateDir, name) }
	mkdir := func(name string) string {
		p := path(name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := func(p string) string {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := func(p string) string { return writeFile(t, filepath.Dir(p), filepath.Base(p), "x") }
	socket := func(p string) string {
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return p
	}
	bindMount := func(src, dst string) {
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
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

	// Bundles of live containers, also in moby's user-namespace layout.
	kept = append(kept, fifo(filepath.Join(mkdir(live), live+"-stdout")))
	kept = append(kept, fifo(filepath.Join(mkdir(otherLive), otherLive+"-stdout")))
	kept = append(kept, fifo(filepath.Join(mkdir(live+".1000.1000"), live+"-stdout")))

	// dockerd's managed containerd: sockets, pid file, config, its state.
	for _, s := range []string{"containerd.sock", "containerd.sock.ttrpc", "containerd-debug.sock"} {
		kept = append(kept, socket(path(s)))
	}
	kept = append(kept, file(path("containerd.pid")), file(path("containerd.toml")))
	shimState := mkdir("daemon/io.containerd.runtime.v2.task/moby/abc")
	kept = append(kept, file(filepath.Join(shimState, "config.json")), socket(filepath.Join(shimState, "s")))
	kept = append(kept, mkdir("daemon/io.containerd.grpc.v1.cri"))
	// A v1 plugin's socket directory.
	kept = append(kept, socket(filepath.Join(mkdir("plugin1"), "p.sock")))

	// Directories that look like bundles but are not provably orphans.
	bound := mkdir("bound")
	kept = append(kept, fifo(filepath.Join(bound, "bound-stdout")))
	rootfs := filepath.Join(bound, "rootfs")
	if err := os.Mkdir(rootfs, 0o700); err != nil {
		t.Fatal(err)
	}
	bindMount(outside, rootfs)
	kept = append(kept, file(filepath.Join(outside, "precious")))
	mountedSrc := t.TempDir()
	fifo(filepath.Join(mountedSrc, "m-stdout"))
	mounted := mkdir("mounted")
	bindMount(mountedSrc, mounted)
	kept = append(kept, filepath.Join(mounted, "m-stdout"))
	kept = append(kept, file(filepath.Join(mkdir("with-file"), "with-file-stdout")))
	kept = append(kept, fifo(filepath.Join(mkdir("bad-fifo-name"), "stdout")))
	kept = append(kept, fifo(filepath.Join(mkdir("fresh-orphan"), "fresh-orphan-stdout")))
	kept = append(kept, fifo(filepath.Join(mkdir(".not-an-id"), "x-stdout")))
	if err := os.Symlink(outside, path("planted-link")); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, path("planted-link"))

	// True orphans: with FIFOs, and empty.
	orphan := mkdir("orphan")
	removed = append(removed, fifo(filepath.Join(orphan, "orphan-stdout")), fifo(filepath.Join(orphan, "exec1-stdin")), orphan)
	removed = append(removed, mkdir("empty-orphan"))

	// Age everything but the fresh orphan (and the mount point's source,
	// which the sweep must not look into at all).
	err = filepath.Walk(stateDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == stateDir || filepath.Dir(p) == path("fresh-orphan") || p == path("fresh-orphan") {
			return err
		}
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The sweep must not be fooled by a mount point's old contents.
	if err := os.Chtimes(mountedSrc, old, old); err != nil {
		t.Fatal(err)
	}

	c, err := New(ctx, cli, stateDir, ns, newRecordingBackend())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	for _, p := range removed {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
}

// TestWithBundleUserNamespace checks the bundle of a container with a user
// namespace: owned by the uid and gid root maps to, behind a parent it can
// search, in moby's layout.
func TestWithBundleUserNamespace(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	base, stateDir := searchableStateDir(t)
	spec := remappedSpec()
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.MountNamespace})
	// labelled runs WithBundle for dir and returns the bundle it labels.
	labelled := func(dir string, spec *specs.Spec) string {
		t.Helper()
		var md containers.Container
		if err := WithBundle(dir, spec)(context.Background(), nil, &md); err != nil {
			t.Fatal(err)
		}
		return md.Labels[DockerContainerBundlePath]
	}
	owned := filepath.Join(base, "state.100000.100000")
	bundle := filepath.Join(owned, "userns.100000.100000")
	if got := labelled(filepath.Join(stateDir, "userns"), spec); got != bundle {
		t.Fatalf("bundle label %q, want %q", got, bundle)
	}
	for _, p := range []string{owned, bundle} {
		if uid, gid := owner(t, p); uid != 100000 || gid != 100000 {
			t.Errorf("%s owned by %d:%d, want 100000:100000", p, uid, gid)
		}
		assertPrivate(t, p, os.ModeDir)
	}
	if left := dirEntries(t, stateDir); len(left) != 0 {
		t.Fatalf("created in the state dir root cannot search: %v", left)
	}
	// An existing bundle the remapped root can search is used as it is.
	open := filepath.Join(base, "open", "ctr")
	if err := os.MkdirAll(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := labelled(open, spec); got != open {
		t.Fatalf("bundle label %q, want the searchable %q", got, open)
	}

	// Without a user namespace the bundle is root's, at the path asked for.
	plain := filepath.Join(stateDir, "plain")
	if got := labelled(plain, &specs.Spec{}); got != plain {
		t.Fatalf("bundle label %q, want %q", got, plain)
	}
	if uid, gid := owner(t, plain); uid != 0 || gid != 0 {
		t.Fatalf("bundle owned by %d:%d, want root", uid, gid)
	}
	assertPrivate(t, plain, os.ModeDir)
}
