package testutil

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// NewSpec returns an OCI spec for container id that runs args in the
// busybox root filesystem rootfs (read-only, with a tmpfs on /tmp), in a
// cgroup named after the namespace in ctx. opts are applied last. It is
// Spec for programs that are not tests (examples, benchmarks).
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
