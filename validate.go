package libcontainerd

import (
	"fmt"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// validateID checks a container or exec ID against containerd's identifier
// rules before the ID is used as a path component. The error is of class
// errdefs.ErrInvalidArgument.
func validateID(kind, id string) error {
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("invalid %s id: %w", kind, err)
	}
	return nil
}

// validateSpec checks that spec can run a container.
func validateSpec(spec *specs.Spec) error {
	switch {
	case spec == nil:
		return fmt.Errorf("spec is nil: %w", errdefs.ErrInvalidArgument)
	case spec.Root == nil:
		return fmt.Errorf("spec has no root: %w", errdefs.ErrInvalidArgument)
	case spec.Process == nil:
		return fmt.Errorf("spec has no process: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
