package libcontainerd

import (
	"testing"

	"github.com/ctrkit/libcontainerd/internal/testutil"
)

// TestMain shares one containerd among the package's integration tests.
func TestMain(m *testing.M) { testutil.Main(m) }
