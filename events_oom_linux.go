package libcontainerd

import (
	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// oomKillRecorded reports whether task metrics v count an OOM kill in the
// memory cgroup: memory.oom_control's oom_kill on cgroup v1,
// memory.events' oom_kill on v2. ok is false for metrics without the
// counter.
func oomKillRecorded(v any) (killed, ok bool) {
	switch v := v.(type) {
	case *cgroup1stats.Metrics:
		return v.GetMemoryOomControl().GetOomKill() > 0, true
	case *cgroup2stats.Metrics:
		return v.GetMemoryEvents().GetOomKill() > 0, true
	}
	return false, false
}
