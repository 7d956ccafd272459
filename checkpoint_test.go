//go:build linux

package libcontainerd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
)

// TestCheckpointDirRules checks which directories an upload accepts,
// without a daemon.
func TestCheckpointDirRules(t *testing.T) {
	base := t.TempDir()
	writeCheckpointFile(t, filepath.Join(base, "file"), "x")
	writeCheckpointFile(t, filepath.Join(base, "checkpoint", "inventory.img"), "x")
	if err := os.Mkdir(filepath.Join(base, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("checkpoint", filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dir  string
		want func(error) bool
	}{
		{"checkpoint", nil},
		{"link", nil},
		{"missing", errdefs.IsNotFound},
		{"file", errdefs.IsInvalidArgument},
		{"file/below", errdefs.IsInvalidArgument},
		{"empty", errdefs.IsInvalidArgument},
	} {
		t.Run(tt.dir, func(t *testing.T) {
			err := checkCheckpointDir(filepath.Join(base, tt.dir))
			if (tt.want == nil && err != nil) || (tt.want != nil && !tt.want(err)) {
				t.Fatalf("checkCheckpointDir(%s): %v", tt.dir, err)
			}
		})
	}
}

// TestCheckpointTarget checks where a download may go and that the
// checkpoint appears in dir only on commit, without a daemon.
func TestCheckpointTarget(t *testing.T) {
	t.Run("bad", func(t *testing.T) {
		base := t.TempDir()
		writeCheckpointFile(t, filepath.Join(base, "file"), "x")
		writeCheckpointFile(t, filepath.Join(base, "full", "keep"), "x")
		if err := os.Symlink("nowhere", filepath.Join(base, "dangling")); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			dir  string
			want func(error) bool
		}{
			{"", errdefs.IsInvalidArgument},
			{"file", errdefs.IsInvalidArgument},
			{"file/below", errdefs.IsInvalidArgument},
			{"full", errdefs.IsAlreadyExists},
			{"full", errdefs.IsConflict},
			{"dangling", errdefs.IsInvalidArgument},
			{"missing/checkpoint", errdefs.IsNotFound},
		} {
			dir := ""
			if tt.dir != "" {
				dir = filepath.Join(base, tt.dir)
			}
			if _, err := newCheckpointTarget(dir); !tt.want(err) {
				t.Errorf("newCheckpointTarget(%q): %v", tt.dir, err)
			}
		}
		if got := dirEntries(t, base); !slices.Equal(got, []string{"dangling", "file", "full"}) {
			t.Fatalf("base dir now holds %v", got)
		}
	})

	for _, existed := range []bool{false, true} {
		name := map[bool]string{false: "new dir", true: "empty dir"}[existed]
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "checkpoint")
			if existed {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// A failed download leaves dir as it was.
			ct, err := newCheckpointTarget(dir)
			if err != nil {
				t.Fatal(err)
			}
			writeCheckpointFile(t, filepath.Join(ct.staging, "partial.img"), "x")
			ct.discard()
			if existed {
				if left := dirEntries(t, dir); len(left) != 0 {
					t.Fatalf("left in dir after discard: %v", left)
				}
			} else if left := dirEntries(t, base); len(left) != 0 {
				t.Fatalf("left next to dir after discard: %v", left)
			}

			ct, err = newCheckpointTarget(dir)
			if err != nil {
				t.Fatal(err)
			}
			writeCheckpointFile(t, filepath.Join(ct.staging, "pages-1.img"), "pages")
			writeCheckpointFile(t, filepath.Join(ct.staging, "sub", "fd.img"), "fd")
			if _, err := os.Stat(filepath.Join(dir, "pages-1.img")); !os.IsNotExist(err) {
				t.Fatalf("checkpoint file in dir before commit (%v)", err)
			}
			if err := ct.commit(); err != nil {
				t.Fatal(err)
			}
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"pages-1.img", "sub"}) {
				t.Fatalf("dir holds %v after commit", got)
			}
			if got := dirEntries(t, base); !slices.Equal(got, []string{"checkpoint"}) {
				t.Fatalf("base holds %v after commit", got)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "sub", "fd.img")); err != nil || string(b) != "fd" {
				t.Fatalf("sub/fd.img: %q, %v", b, err)
			}
		})
	}
}

func writeCheckpointFile(t testing.TB, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
