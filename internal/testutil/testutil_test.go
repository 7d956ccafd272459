package testutil

import (
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
)

func TestMain(m *testing.M) { Main(m) }

// TestHarness proves the repository's use of the kit: the daemon of the
// selected flavor is the one that answers. (Running a container on the
// kit's daemon, rootfs and spec is the kit's own test.)
func TestHarness(t *testing.T) {
	d := Shared(t)
	ctx, _ := Context(t, d)
	v, err := d.Client(t).Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMajor := map[string]string{FlavorV2: "2.", FlavorDebian: "1.6"}[d.Flavor]
	if !strings.HasPrefix(v.Version, wantMajor) {
		t.Fatalf("containerd version %q, want %s*", v.Version, wantMajor)
	}
	t.Logf("containerd %s (%s)", v.Version, v.Revision)
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
