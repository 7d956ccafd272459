package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestWrapError(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   error
		is   func(error) bool
	}{
		{"grpc not found", status.Error(codes.NotFound, "container x"), errdefs.IsNotFound},
		{"grpc already exists is conflict", status.Error(codes.AlreadyExists, "id x"), errdefs.IsConflict},
		{"native already exists is conflict", fmt.Errorf("x: %w", errdefs.ErrAlreadyExists), errdefs.IsConflict},
		{"grpc invalid argument", status.Error(codes.InvalidArgument, "bad"), errdefs.IsInvalidArgument},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection error"), errdefs.IsUnavailable},
		{"grpc failed precondition", status.Error(codes.FailedPrecondition, "not running"), errdefs.IsFailedPrecondition},
		{"runc text", errors.New("runc: container does not exist"), errdefs.IsNotFound},
		{"unknown status with not found text", status.Error(codes.Unknown, "process does not exist abc"), errdefs.IsNotFound},
		{"no metrics of a restored task", errors.New("no metrics received"), errdefs.IsNotFound},
		{"transport closing", errors.New("ttrpc: transport is closing"), errdefs.IsUnavailable},
		{"unknown shim", errors.New(`failed to create shim task: runtime "io.containerd.nope.v1" binary not installed "containerd-shim-nope-v1": file does not exist`), errdefs.IsFailedPrecondition},
		{"socket refused", errors.New("dial unix /x.sock: connect: connection refused"), errdefs.IsUnavailable},
		{"already classified kept", fmt.Errorf("ctx: %w", errdefs.ErrNotImplemented), errdefs.IsNotImplemented},
		{"context canceled kept", fmt.Errorf("op: %w", context.Canceled), func(err error) bool { return errors.Is(err, context.Canceled) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wrapError(tc.in)
			if !tc.is(got) {
				t.Fatalf("wrapError(%v) = %v: wrong class", tc.in, got)
			}
			if !strings.Contains(got.Error(), strings.TrimPrefix(tc.in.Error(), "rpc error: code = ")) &&
				!strings.Contains(got.Error(), status.Convert(tc.in).Message()) {
				t.Fatalf("wrapError(%v) = %v: lost the original message", tc.in, got)
			}
		})
	}
	if wrapError(nil) != nil {
		t.Fatal("wrapError(nil) != nil")
	}
	plain := errors.New("something else broke")
	if got := wrapError(plain); got != plain {
		t.Fatalf("unclassifiable error changed: %v", got)
	}
}
