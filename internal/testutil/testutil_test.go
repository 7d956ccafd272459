package testutil

import (
	"bytes"
	"io"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
)

func TestMain(m *testing.M) { Main(m) }

// TestHarness proves the repository's use of the kit: the daemon of the
// selected flavor answers Version, and a container built from the shared
// busybox rootfs and Spec runs /bin/echo through the raw containerd client
// with its output read back.
func TestHarness(t *testing.T) {
	d := Shared(t)
	ctx, _ := Context(t, d)
	cli := d.Client(t)

	v, err := cli.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMajor := map[string]string{FlavorV2: "2.", FlavorDebian: "1.6"}[d.Flavor]
	if !strings.HasPrefix(v.Version, wantMajor) {
		t.Fatalf("containerd version %q, want %s*", v.Version, wantMajor)
	}
	t.Logf("containerd %s (%s)", v.Version, v.Revision)

	id := ID(t)
	ctr, err := cli.NewContainer(ctx, id,
		containerd.WithSpec(Spec(t, ctx, id, []string{"/bin/echo", "hello from", id})),
		containerd.WithRuntime("io.containerd.runc.v2", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Delete(ctx)

	var out bytes.Buffer // stdout only: stderr copies run concurrently
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, io.Discard), cio.WithFIFODir(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(ctx, containerd.WithProcessKill)
	exitC, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := <-exitC
	if st.ExitCode() != 0 {
		t.Fatalf("exit code %d, output %q", st.ExitCode(), out.String())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "hello from "+id+"\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

// TestRestart proves Restart and Start without a context: a private daemon
// is killed and restarted on its root and state, and a container created
// before survives.
func TestRestart(t *testing.T) {
	d := NewDaemon(t)
	ctx, _ := Context(t, d)
	cli := d.Client(t)
	id := ID(t)
	if _, err := cli.NewContainer(ctx, id, containerd.WithSpec(Spec(t, ctx, id, []string{"true"}))); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	cli2 := d.Client(t)
	ctr, err := cli2.LoadContainer(ctx, id)
	if err != nil {
		t.Fatalf("container lost across restart: %v", err)
	}
	if err := ctr.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
