//go:build unix

package libcontainerd

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestFIFOMode checks that a FIFO is made with mode 0600 exactly whatever
// the umask: with one that keeps the owner's bits mkfifo alone makes it,
// with one that masks them the mode is set after. Not parallel: the umask
// is the process's.
func TestFIFOMode(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() {
		syscall.Umask(old)
		umaskKeepsOwnerBits = sync.OnceValue(readUmaskKeepsOwnerBits)
	})
	dir := t.TempDir()
	for _, mask := range []int{0o022, 0o077, 0o277, 0o777} {
		syscall.Umask(mask)
		umaskKeepsOwnerBits = sync.OnceValue(readUmaskKeepsOwnerBits)
		if _, err := os.Stat("/proc/self/status"); err == nil && umaskKeepsOwnerBits() != (mask&0o600 == 0) {
			t.Fatalf("umask %#o: keeps owner bits = %t", mask, umaskKeepsOwnerBits())
		}
		p := filepath.Join(dir, fmt.Sprintf("%o-stdout", mask))
		if err := mkfifo(p); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeNamedPipe || fi.Mode().Perm() != 0o600 {
			t.Fatalf("umask %#o: fifo mode %v, want named pipe 0600", mask, fi.Mode())
		}
	}
}
