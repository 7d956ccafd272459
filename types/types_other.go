//go:build !linux && !windows

package types

import "time"

// Summary holds per-process details; no platform other than Windows
// reports any, so Task.Summary returns one empty entry per process.
type Summary struct{}

// Stats holds metrics as returned by containerd.
type Stats struct {
	Read time.Time
	// Metrics is the shim's metrics value, decoded when its type is
	// registered with typeurl.
	Metrics interface{}
}

// InterfaceToStats returns a Stats read at read from the platform-specific
// metrics value v.
func InterfaceToStats(read time.Time, v interface{}) *Stats {
	return &Stats{Read: read, Metrics: v}
}

// Resources are the updatable resource values of a container. The OCI
// runtime spec defines none outside Linux and Windows, so there is nothing
// to update and Task.UpdateResources reports NotImplemented.
type Resources struct{}

// Checkpoints contains the details of a checkpoint.
type Checkpoints struct{}
