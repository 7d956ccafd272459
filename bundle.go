package libcontainerd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// WithBundle creates the bundle directory bundleDir for a container with
// spec and records it in the container's DockerContainerBundlePath label.
//
// Without a user namespace the directory is owned by root with mode 0700.
// With one, every component of bundleDir that the remapped root could not
// traverse, the bundle itself included, is replaced by a sibling
// "<component>.<uid>.<gid>" owned by the uid and gid root maps to (moby's
// layout); the label then names that path.
func WithBundle(bundleDir string, ociSpec *specs.Spec) containerd.NewContainerOpts {
	return withBundle(bundleDir, ociSpec, nil)
}

// bundleRecord receives the bundle directory a withBundle option settled on
// and whether that option created it.
type bundleRecord struct {
	path    string
	created bool
}

func withBundle(bundleDir string, ociSpec *specs.Spec, rec *bundleRecord) containerd.NewContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		if ociSpec == nil {
			return fmt.Errorf("bundle %s: spec is nil: %w", bundleDir, errdefs.ErrInvalidArgument)
		}
		path, created, err := makeBundle(bundleDir, ociSpec)
		if rec != nil {
			rec.path, rec.created = path, created
		}
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = make(map[string]string)
		}
		c.Labels[DockerContainerBundlePath] = path
		return nil
	}
}

// remappedRoot returns the host uid and gid that the container's root maps
// to when the spec has a user namespace, else 0, 0.
func remappedRoot(ociSpec *specs.Spec) (uid, gid int) {
	if ociSpec == nil || ociSpec.Linux == nil {
		return 0, 0
	}
	for _, ns := range ociSpec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return hostID(0, ociSpec.Linux.UIDMappings), hostID(0, ociSpec.Linux.GIDMappings)
		}
	}
	return 0, 0
}

func hostID(id uint32, mappings []specs.LinuxIDMapping) int {
	for _, m := range mappings {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return 0
}

func (c *Client) bundleDir(id string) string {
	return filepath.Join(c.stateDir, id)
}

// ownsBundle reports whether bundle, the container's label, names a
// directory of the container's own, which Delete may remove: <id>, or
// <id>.<uid>.<gid>, where moby's WithBundle puts the bundle of a container
// with a user namespace. The label is not trusted beyond that.
func ownsBundle(md containers.Container, bundle string) bool {
	if !filepath.IsAbs(bundle) {
		return false
	}
	base := filepath.Base(bundle)
	if base == md.ID {
		return true
	}
	var spec specs.Spec
	if md.Spec == nil || json.Unmarshal(md.Spec.GetValue(), &spec) != nil {
		return false
	}
	uid, gid := remappedRoot(&spec)
	return (uid != 0 || gid != 0) && base == fmt.Sprintf("%s.%d.%d", md.ID, uid, gid)
}

// orphanMinAge keeps the sweep away from bundles that may belong to a
// container being created right now by another client on the same state
// directory: its bundle exists before containerd knows the container.
const orphanMinAge = time.Minute

// remappedBundleOwner returns the container ID of a bundle named
// <id>.<uid>.<gid> (moby's layout with a user namespace).
func remappedBundleOwner(name string) (string, bool) {
	rest, gid, ok := cutLast(name, ".")
	if !ok || !isDigits(gid) {
		return "", false
	}
	id, uid, ok := cutLast(rest, ".")
	if !ok || !isDigits(uid) || id == "" {
		return "", false
	}
	return id, true
}

func cutLast(s, sep string) (before, after string, ok bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// allContainerIDs lists the container IDs of every namespace: a state
// directory may be shared by clients of several namespaces.
func (c *Client) allContainerIDs(ctx context.Context) (map[string]struct{}, error) {
	nss, err := c.c8dClient.NamespaceService().List(ctx)
	if err != nil {
		return nil, wrapError(err)
	}
	ids := make(map[string]struct{})
	for _, ns := range nss {
		ctrs, err := c.c8dClient.ContainerService().List(namespaces.WithNamespace(ctx, ns))
		if err != nil {
			return nil, wrapError(err)
		}
		for _, ctr := range ctrs {
			ids[ctr.ID] = struct{}{}
		}
	}
	return ids, nil
}
