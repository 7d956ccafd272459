package libcontainerd

import (
	"os"
	"testing"

	"github.com/containerd/log"

	"github.com/ctrkit/libcontainerd/internal/testutil"
)

// TestMain shares one containerd among the package's integration tests.
// LIBCONTAINERD_TEST_LOG=debug turns on the library's debug log.
func TestMain(m *testing.M) {
	if lvl := os.Getenv("LIBCONTAINERD_TEST_LOG"); lvl != "" {
		_ = log.SetLevel(lvl)
	}
	testutil.Main(m)
}
