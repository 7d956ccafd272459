package libcontainerd

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// errorClasses are the errdefs classes, in the order classesOf reports
// them. Canceled also holds for context.Canceled.
var errorClasses = []struct {
	name string
	is   func(error) bool
}{
	{"Canceled", errdefs.IsCanceled},
	{"DeadlineExceeded", errdefs.IsDeadlineExceeded},
	{"NotFound", errdefs.IsNotFound},
	{"Conflict", errdefs.IsConflict},
	{"AlreadyExists", errdefs.IsAlreadyExists},
	{"InvalidArgument", errdefs.IsInvalidArgument},
	{"FailedPrecondition", errdefs.IsFailedPrecondition},
	{"Unavailable", errdefs.IsUnavailable},
	{"PermissionDenied", errdefs.IsPermissionDenied},
	{"ResourceExhausted", errdefs.IsResourceExhausted},
	{"NotImplemented", errdefs.IsNotImplemented},
	{"Internal", errdefs.IsInternal},
	{"Aborted", errdefs.IsAborted},
	{"OutOfRange", errdefs.IsOutOfRange},
	{"Unauthorized", errdefs.IsUnauthorized},
	{"DataLoss", errdefs.IsDataLoss},
	{"Unknown", errdefs.IsUnknown},
}

// classesOf names the errdefs classes of err, "+"-separated; "" when it
// has none.
func classesOf(err error) string {
	var names []string
	for _, c := range errorClasses {
		if c.is(err) {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, "+")
}

// wantClass fails t unless err is of errdefs class want, and logs the
// classes it has, so that a run shows what each daemon gave.
func wantClass(t testing.TB, what string, err error, want string) {
	t.Helper()
	got := classesOf(err)
	t.Logf("%s: [%s] %v", what, got, err)
	if err == nil || !slices.Contains(strings.Split(got, "+"), want) {
		t.Errorf("%s: %v (classes %q), want %s", what, err, got, want)
	}
}

// assertRuntimeError fails t unless err has a class, and one that does not
// mislead an engine: not Unavailable (retry) nor NotFound (the container
// is gone). containerd 1.6 and 2.4 report a shim they cannot resolve as
// Unknown.
func assertRuntimeError(t testing.TB, what string, err error) {
	t.Helper()
	cls := classesOf(err)
	t.Logf("%s: [%s] %v", what, cls, err)
	if err == nil || cls == "" || errdefs.IsUnavailable(err) || errdefs.IsNotFound(err) {
		t.Errorf("%s: %v (classes %q), want a class other than Unavailable and NotFound", what, err, cls)
	}
}
