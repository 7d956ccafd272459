package containerdtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Spec returns an OCI spec for container id that runs args in the daemon's
// busybox rootfs (see Rootfs and NewSpec). ctx must carry the namespace the
// container is created in, as Namespace's does.
func (d *Daemon) Spec(t testing.TB, ctx context.Context, id string, args []string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	s, err := NewSpec(ctx, d.Rootfs(t), id, args, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewSpec returns an OCI spec for container id that runs args as root in
// rootfs, read-only, with a tmpfs on /tmp, PATH and HOME set, in the cgroup
// /<namespace>/<id> of the namespace in ctx (which RemoveNamespace cleans
// up). opts are applied last.
func NewSpec(ctx context.Context, rootfs, id string, args []string, opts ...oci.SpecOpts) (*specs.Spec, error) {
	all := append([]oci.SpecOpts{
		oci.WithRootFSPath(rootfs),
		oci.WithRootFSReadonly(),
		oci.WithProcessArgs(args...),
		oci.WithProcessCwd("/"),
		oci.WithEnv([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}),
		oci.WithNamespacedCgroup(),
		oci.WithMounts([]specs.Mount{{
			Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "size=16m"},
		}}),
	}, opts...)
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, all...)
	if err != nil {
		return nil, fmt.Errorf("generate spec: %w", err)
	}
	return s, nil
}
