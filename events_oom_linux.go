package libcontainerd

import (
	"bufio"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3"
	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/opencontainers/runtime-spec/specs-go"
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

// oomCounterFile returns the file that counts the OOM kills of the memory
// cgroup runc puts a container with spec in (with systemd's cgroup driver
// when systemd is set), as this process sees the cgroup file system; ""
// when that is not known here.
func oomCounterFile(spec *specs.Spec, systemd bool) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	layout, ok := hostCgroupLayout()
	if !ok {
		return ""
	}
	return layout.counterFile(spec.Linux.CgroupsPath, systemd)
}

// cgroupLayout is where the memory controller's hierarchy is mounted.
type cgroupLayout struct {
	unified bool   // cgroup v2 only; else the v1 memory hierarchy
	dir     string // mount point of the hierarchy's root
}

var hostCgroupLayout = sync.OnceValues(func() (cgroupLayout, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return cgroupLayout{}, false
	}
	defer f.Close()
	return parseCgroupLayout(f, cgroups.Mode() == cgroups.Unified)
})

// parseCgroupLayout finds, in a mountinfo file, the mount of the whole
// memory hierarchy: the cgroup2 mount when unified, else the cgroup v1
// mount with the memory controller. A mount of a part of it only (a
// container's view) is not used: runc's paths are from the root.
func parseCgroupLayout(r io.Reader, unified bool) (cgroupLayout, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fs) < 3 || fields[3] != "/" {
			continue
		}
		switch {
		case unified && fs[0] == "cgroup2",
			!unified && fs[0] == "cgroup" && slices.Contains(strings.Split(fs[2], ","), "memory"):
			return cgroupLayout{unified: unified, dir: fields[4]}, true
		}
	}
	return cgroupLayout{}, false
}

// counterFile returns the OOM kill counter of the cgroup that runc makes
// of cgroupsPath: with cgroupfs an absolute path from the hierarchy's root
// (a relative one is under the shim's own cgroup, not known here); with
// systemd "slice:prefix:name", the scope prefix-name.scope in the slice
// (system.slice when empty). "" when it is none of these.
func (l cgroupLayout) counterFile(cgroupsPath string, systemd bool) string {
	var rel string
	if systemd {
		parts := strings.Split(cgroupsPath, ":")
		if len(parts) != 3 {
			return ""
		}
		slice, prefix, name := parts[0], parts[1], parts[2]
		if slice == "" {
			slice = "system.slice"
		}
		dir, ok := expandSlice(slice)
		if !ok || prefix == "" || name == "" || strings.HasSuffix(name, ".slice") || strings.ContainsRune(prefix+name, '/') {
			return ""
		}
		rel = path.Join(dir, prefix+"-"+name+".scope")
	} else {
		if !strings.HasPrefix(cgroupsPath, "/") {
			return ""
		}
		rel = path.Clean(cgroupsPath)
	}
	counter := "memory.oom_control"
	if l.unified {
		counter = "memory.events"
	}
	return filepath.Join(l.dir, rel, counter)
}

// expandSlice turns a systemd slice name into its cgroup path, as runc
// does: a-b-c.slice is /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, bool) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	if name == "-" {
		return "/", true
	}
	var p, prefix string
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", false
		}
		p += "/" + prefix + part + ".slice"
		prefix += part + "-"
	}
	return p, true
}
