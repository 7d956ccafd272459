//go:build !linux

package libcontainerd

import "github.com/opencontainers/runtime-spec/specs-go"

// oomKillRecorded reports no counter: only Linux has OOM kills in a memory
// cgroup to look for.
func oomKillRecorded(any) (killed, ok bool) {
	return false, false
}

// oomCounterFile knows no memory cgroup outside Linux.
func oomCounterFile(*specs.Spec, bool) string {
	return ""
}
