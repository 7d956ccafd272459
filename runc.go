package libcontainerd

import (
	"fmt"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
)

// What the library knows of runc, containerd's default runtime: the type of
// its options, which its shim trusts blindly, and the IO owner it needs
// with a user namespace.

// checkRuntimeOptions refuses runtime options the shim cannot take: the
// runc shim asserts the type of its options and crashes on any other, which
// containerd reports as Unavailable.
func checkRuntimeOptions(id, shim string, runtimeOptions any) error {
	if runtimeOptions == nil {
		return nil
	}
	ro, err := typeurl.MarshalAny(runtimeOptions)
	if err != nil {
		return fmt.Errorf("container %s: runtime options of type %T: %w: %w", id, runtimeOptions, errdefs.ErrInvalidArgument, err)
	}
	if isRuncShim(shim) && !typeurl.Is(ro, &runcoptions.Options{}) {
		return fmt.Errorf("container %s: runtime options of type %T are not runc options: %w", id, runtimeOptions, errdefs.ErrInvalidArgument)
	}
	return nil
}

// isRuncShim reports whether shim names containerd's runc shim, whose
// options are runcoptions.Options.
func isRuncShim(shim string) bool {
	return strings.HasPrefix(shim, "io.containerd.runc.")
}

// isRunc reports whether the container runs with runc, the only runtime
// whose checkpoint options are known.
func isRunc(c *container, md containers.Container) bool {
	if c.runcOptions != nil || strings.HasPrefix(md.Runtime.Name, "io.containerd.runc.") {
		return true
	}
	return md.Runtime.Options != nil && typeurl.Is(md.Runtime.Options, &runcoptions.Options{})
}

// taskRuncOptions returns the runc options for a new task: the container's,
// with the IO owned by the user root maps to. It returns nil for other
// shims, whose options containerd passes on unchanged.
func (c *container) taskRuncOptions(md containers.Container, spec *specs.Spec) (*runcoptions.Options, error) {
	base := c.runcOptions
	// A container created without runtime options comes back from
	// containerd with a nil *anypb.Any in a non-nil interface: its type URL
	// is empty.
	if base == nil && md.Runtime.Options != nil && md.Runtime.Options.GetTypeUrl() != "" {
		if !typeurl.Is(md.Runtime.Options, &runcoptions.Options{}) {
			// Another client made the container: the runc shim would
			// crash on these options; other shims get them unchanged.
			if isRuncShim(md.Runtime.Name) {
				return nil, fmt.Errorf("container %s: runtime options %s are not runc options: %w", md.ID, md.Runtime.Options.GetTypeUrl(), errdefs.ErrFailedPrecondition)
			}
			return nil, nil
		}
		v, err := typeurl.UnmarshalAny(md.Runtime.Options)
		if err != nil {
			return nil, fmt.Errorf("container %s: decode runtime options: %w", md.ID, errdefs.ErrFailedPrecondition)
		}
		base, _ = v.(*runcoptions.Options)
	}
	if base == nil {
		return nil, nil
	}
	opts := proto.Clone(base).(*runcoptions.Options)
	uid, gid := remappedRoot(spec)
	opts.IoUid, opts.IoGid = uint32(uid), uint32(gid)
	return opts, nil
}
