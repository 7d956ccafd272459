package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"
)

// wrapError gives err a containerd/errdefs class. It is applied once, where
// an error comes back from containerd or a shim, so that callers can use
// errdefs.IsNotFound, errdefs.IsConflict and so on whatever the transport.
//
// The containerd client already converts most gRPC errors, but errors that
// come through a shim's ttrpc connection, a broken event stream or a dead
// socket arrive as plain gRPC statuses or strings; those are classified here.
func wrapError(err error) error {
	if err == nil {
		return nil
	}
	if isClassified(err) {
		if errdefs.IsAlreadyExists(err) && !errdefs.IsConflict(err) {
			return fmt.Errorf("%w: %w", errdefs.ErrConflict, err)
		}
		return err
	}
	if _, ok := status.FromError(err); ok {
		if native := errgrpc.ToNative(err); isClassified(native) {
			return wrapError(native)
		}
	}
	if cls := classFromMessage(err.Error()); cls != nil {
		return fmt.Errorf("%w: %w", cls, err)
	}
	return err
}

// isClassified reports whether err already carries an errdefs class or is a
// context error the caller can test with errors.Is.
func isClassified(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, is := range []func(error) bool{
		errdefs.IsNotFound, errdefs.IsAlreadyExists, errdefs.IsConflict,
		errdefs.IsInvalidArgument, errdefs.IsUnavailable, errdefs.IsFailedPrecondition,
		errdefs.IsNotImplemented, errdefs.IsPermissionDenied, errdefs.IsDeadlineExceeded,
		errdefs.IsCanceled, errdefs.IsAborted, errdefs.IsOutOfRange,
		errdefs.IsResourceExhausted, errdefs.IsUnauthorized, errdefs.IsDataLoss,
		errdefs.IsInternal,
	} {
		if is(err) {
			return true
		}
	}
	return false
}

// messageClasses are the error texts of containerd, its shims and gRPC that
// come without a class. This is the only place the library matches on error
// strings; each entry names where the text comes from.
var messageClasses = []struct {
	substr string
	class  error
}{
	{"container does not exist", errdefs.ErrNotFound}, // runc via the shim
	{"no such container", errdefs.ErrNotFound},        // older shims
	{"process does not exist", errdefs.ErrNotFound},   // shim, exec lookup
	{"not found", errdefs.ErrNotFound},                // ttrpc errors without a status
	// containerd 2.x's shim has no cgroup for a task restored from a
	// checkpoint and says so without a class.
	{"no metrics received", errdefs.ErrNotFound},
	{"transport is closing", errdefs.ErrUnavailable}, // gRPC/ttrpc connection lost
	{"connection refused", errdefs.ErrUnavailable},   // daemon socket gone
	{"ttrpc: closed", errdefs.ErrUnavailable},        // shim connection closed
	// An unknown or missing shim, found by containerd at task create.
	{"binary not installed", errdefs.ErrFailedPrecondition},
	{"invalid runtime name", errdefs.ErrFailedPrecondition},
	{"invalid custom binary path", errdefs.ErrFailedPrecondition},
	{"failed to resolve runtime path", errdefs.ErrFailedPrecondition},
	{"error reading from server: EOF", errdefs.ErrUnavailable},
}

func classFromMessage(msg string) error {
	for _, m := range messageClasses {
		if strings.Contains(msg, m.substr) {
			return m.class
		}
	}
	return nil
}

// fsError gives a local file system error an errdefs class.
func fsError(err error) error {
	var cls error
	switch {
	case err == nil:
		return nil
	case isClassified(err):
		return err
	case errors.Is(err, fs.ErrNotExist):
		cls = errdefs.ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		cls = errdefs.ErrPermissionDenied
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		cls = errdefs.ErrAlreadyExists
	case errors.Is(err, syscall.ENOTDIR):
		cls = errdefs.ErrInvalidArgument
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		cls = errdefs.ErrResourceExhausted
	default:
		return err
	}
	// wrapError adds Conflict to AlreadyExists, as for containerd's errors.
	return wrapError(fmt.Errorf("%w: %w", cls, err))
}
