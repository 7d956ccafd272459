package types

import (
	"time"

	"github.com/Microsoft/hcsshim"
	"github.com/Microsoft/hcsshim/cmd/containerd-shim-runhcs-v1/options"
)

// Summary holds the details of one process of a task, as the runhcs shim
// reports them.
type Summary options.ProcessDetails

// Stats holds the statistics of a task, as the Host Compute Service
// reports them.
type Stats struct {
	Read     time.Time
	HCSStats *hcsshim.Statistics
}

// InterfaceToStats returns a Stats read at read from the platform-specific
// metrics value v. A v that is not a *hcsshim.Statistics leaves HCSStats nil.
func InterfaceToStats(read time.Time, v interface{}) *Stats {
	s, _ := v.(*hcsshim.Statistics)
	return &Stats{Read: read, HCSStats: s}
}

// Resources are the updatable resource values of a container; on Windows
// there are none.
type Resources struct{}

// Checkpoint holds the details of a checkpoint; checkpoints are not
// supported on Windows.
type Checkpoint struct {
	Name string
}

// Checkpoints contains the details of the checkpoints of a container.
type Checkpoints struct {
	Checkpoints []*Checkpoint
}
