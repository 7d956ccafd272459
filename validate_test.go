package libcontainerd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

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
