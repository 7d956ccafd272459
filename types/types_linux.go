package types

import (
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Summary is not used on Linux; Task.Summary returns one empty entry per
// process.
type Summary struct{}

// Stats holds metrics as returned by containerd.
type Stats struct {
	Read time.Time
	// Metrics is one of:
	//   - *github.com/containerd/cgroups/v3/cgroup1/stats.Metrics
	//   - *github.com/containerd/cgroups/v3/cgroup2/stats.Metrics
	Metrics interface{}
}

// InterfaceToStats returns a Stats read at read from the platform-specific
// metrics value v.
func InterfaceToStats(read time.Time, v interface{}) *Stats {
	return &Stats{Read: read, Metrics: v}
}

// Resources are the updatable resource values of a container.
type Resources = specs.LinuxResources

// Checkpoints contains the details of a checkpoint.
type Checkpoints struct{}
