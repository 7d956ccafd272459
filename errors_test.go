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

func TestValidateID(t *testing.T) {
	valid := []string{"a", "abc", "A1", "ctr-1", "ctr_1", "ctr.1", "0", "a-b_c.d", strings.Repeat("x", 76),
		"4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c"}
	invalid := []string{"", "..", "../x", "../../x", "a/b", "/abs", ".hidden", "a..b", "a b", "a\x00b",
		"-lead", "trail-", "a:b", "é", strings.Repeat("x", 77), "a\nb"}
	for _, id := range valid {
		t.Run("valid/"+id[:min(len(id), 20)], func(t *testing.T) {
			if err := validateID("container", id); err != nil {
				t.Fatalf("validateID(%q) = %v, want nil", id, err)
			}
		})
	}
	for _, id := range invalid {
		t.Run(fmt.Sprintf("invalid/%q", id[:min(len(id), 20)]), func(t *testing.T) {
			err := validateID("exec", id)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("validateID(%q) = %v, want InvalidArgument", id, err)
			}
			if !strings.Contains(err.Error(), "invalid exec id") {
				t.Fatalf("error %q does not name the kind of id", err)
			}
		})
	}
}
