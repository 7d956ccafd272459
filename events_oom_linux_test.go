package libcontainerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestOOMKillRecorded(t *testing.T) {
	for _, tc := range []struct {
		name         string
		metrics      any
		killed, isOK bool
	}{
		{"cgroup v1 killed", &cgroup1stats.Metrics{MemoryOomControl: &cgroup1stats.MemoryOomControl{OomKill: 2}}, true, true},
		{"cgroup v1 under OOM, nobody killed", &cgroup1stats.Metrics{MemoryOomControl: &cgroup1stats.MemoryOomControl{UnderOom: 1}}, false, true},
		{"cgroup v1 without memory stats", &cgroup1stats.Metrics{}, false, true},
		{"cgroup v2 killed", &cgroup2stats.Metrics{MemoryEvents: &cgroup2stats.MemoryEvents{OomKill: 1}}, true, true},
		{"cgroup v2 OOM without a kill", &cgroup2stats.Metrics{MemoryEvents: &cgroup2stats.MemoryEvents{Oom: 1}}, false, true},
		{"other metrics", &struct{}{}, false, false},
		{"nil", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			killed, ok := oomKillRecorded(tc.metrics)
			if killed != tc.killed || ok != tc.isOK {
				t.Fatalf("oomKillRecorded = %v, %v; want %v, %v", killed, ok, tc.killed, tc.isOK)
			}
		})
	}
}

func TestParseCgroupLayout(t *testing.T) {
	const (
		hybrid = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
32 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
33 32 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 32 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
40 32 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
`
		unified = `30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
		// A container's view: its own cgroup mounted, not the root.
		partial = `40 32 0:35 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
`
	)
	for _, tc := range []struct {
		name      string
		mountinfo string
		unified   bool
		want      cgroupLayout
		ok        bool
	}{
		{"hybrid: the v1 memory hierarchy", hybrid, false, cgroupLayout{dir: "/sys/fs/cgroup/memory"}, true},
		{"unified", unified, true, cgroupLayout{unified: true, dir: "/sys/fs/cgroup"}, true},
		{"unified mode without a cgroup2 mount", hybrid[:strings.Index(hybrid, "33 ")], true, cgroupLayout{}, false},
		{"only a part of the hierarchy mounted", partial, false, cgroupLayout{}, false},
		{"nothing", "", false, cgroupLayout{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseCgroupLayout(strings.NewReader(tc.mountinfo), tc.unified)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("parseCgroupLayout = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCounterFile(t *testing.T) {
	v1 := cgroupLayout{dir: "/sys/fs/cgroup/memory"}
	v2 := cgroupLayout{unified: true, dir: "/sys/fs/cgroup"}
	for _, tc := range []struct {
		name        string
		layout      cgroupLayout
		cgroupsPath string
		systemd     bool
		want        string
	}{
		{"cgroupfs v1", v1, "/docker/abc", false, "/sys/fs/cgroup/memory/docker/abc/memory.oom_control"},
		{"cgroupfs v2", v2, "/ns/abc", false, "/sys/fs/cgroup/ns/abc/memory.events"},
		{"cgroupfs path cleaned", v1, "/a/../b//c/", false, "/sys/fs/cgroup/memory/b/c/memory.oom_control"},
		{"cgroupfs cannot climb out", v1, "/../../etc", false, "/sys/fs/cgroup/memory/etc/memory.oom_control"},
		{"cgroupfs relative: under the shim's cgroup", v1, "ns/abc", false, ""},
		{"no path", v1, "", false, ""},
		{"systemd", v2, "system.slice:docker:abc", true, "/sys/fs/cgroup/system.slice/docker-abc.scope/memory.events"},
		{"systemd v1", v1, "system.slice:docker:abc", true, "/sys/fs/cgroup/memory/system.slice/docker-abc.scope/memory.oom_control"},
		{"systemd nested slice", v2, "kubepods-besteffort-pod1.slice:cri-containerd:abc", true,
			"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope/memory.events"},
		{"systemd default slice", v2, ":docker:abc", true, "/sys/fs/cgroup/system.slice/docker-abc.scope/memory.events"},
		{"systemd root slice", v2, "-.slice:docker:abc", true, "/sys/fs/cgroup/docker-abc.scope/memory.events"},
		{"systemd slice as the name", v2, "system.slice:docker:abc.slice", true, ""},
		{"systemd without prefix", v2, "system.slice::abc", true, ""},
		{"systemd bad slice", v2, "system:docker:abc", true, ""},
		{"systemd empty component", v2, "a--b.slice:docker:abc", true, ""},
		{"systemd slash", v2, "system.slice:docker:a/b", true, ""},
		{"systemd path in cgroupfs form", v2, "/docker/abc", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.layout.counterFile(tc.cgroupsPath, tc.systemd); got != tc.want {
				t.Fatalf("counterFile(%q, %v) = %q, want %q", tc.cgroupsPath, tc.systemd, got, tc.want)
			}
		})
	}
}

func TestReadOOMKills(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          uint64
		err           bool
	}{
		{"v1", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, false},
		{"v2", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n", 1, false},
		{"v2 group kill only", "oom 1\noom_group_kill 1\n", 0, true},
		{"old kernel without the counter", "oom_kill_disable 0\nunder_oom 0\n", 0, true},
		{"garbage", "oom_kill x\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readOOMKills(file)
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("readOOMKills = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := readOOMKills(filepath.Join(dir, "gone")); err == nil {
		t.Fatal("no error for a cgroup that is gone")
	}
	if _, err := readOOMKills(filepath.Join(dir, "garbage")); !errdefs.IsNotImplemented(err) {
		t.Fatalf("unreadable counter: %v, want NotImplemented", err)
	}
}

// TestOOMCounters checks where the client looks for a container's OOM
// kill counter: runc containers whose cgroup it can name, from the spec
// given to NewContainer or containerd's record; other runtimes and
// relative cgroup paths through containerd. The cache is bounded.
func TestOOMCounters(t *testing.T) {
	layout, ok := hostCgroupLayout()
	if !ok {
		t.Skip("no cgroup memory hierarchy mounted here")
	}
	spec := func(p string) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{CgroupsPath: p}} }
	c := newOOMCounters(2)
	c.note("a", runcShim, spec("/ns/a"), &runcoptions.Options{})
	c.note("b", "io.containerd.runsc.v1", spec("/ns/b"), nil)
	for id, want := range map[string]string{"a": layout.counterFile("/ns/a", false), "b": ""} {
		if got, ok := c.file(id); !ok || got != want {
			t.Errorf("file(%s) = %q, %v; want %q", id, got, ok, want)
		}
	}
	c.note("c", runcShim, spec("system.slice:x:c"), &runcoptions.Options{SystemdCgroup: true})
	if len(c.files) != 2 {
		t.Fatalf("%d containers remembered, bound is 2", len(c.files))
	}
	if got, _ := c.file("c"); got != layout.counterFile("system.slice:x:c", true) {
		t.Fatalf("systemd driver: %q", got)
	}
	c.forget("c")
	if _, ok := c.file("c"); ok {
		t.Fatal("deleted container remembered")
	}

	anyOf := func(v any) typeurl.Any {
		a, err := typeurl.MarshalAny(v)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		name string
		md   containers.Container
		want string
	}{
		{"runc", containers.Container{Runtime: containers.RuntimeInfo{Name: runcShim}, Spec: anyOf(spec("/ns/a"))}, layout.counterFile("/ns/a", false)},
		{"runc with systemd", containers.Container{Runtime: containers.RuntimeInfo{Name: runcShim, Options: anyOf(&runcoptions.Options{SystemdCgroup: true})}, Spec: anyOf(spec(":docker:a"))},
			layout.counterFile(":docker:a", true)},
		{"relative path", containers.Container{Runtime: containers.RuntimeInfo{Name: runcShim}, Spec: anyOf(spec("ns/a"))}, ""},
		{"other runtime", containers.Container{Runtime: containers.RuntimeInfo{Name: "io.containerd.kata.v2"}, Spec: anyOf(spec("/ns/a"))}, ""},
		{"no spec", containers.Container{Runtime: containers.RuntimeInfo{Name: runcShim}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := counterFileOf(tc.md); got != tc.want {
				t.Fatalf("counterFileOf = %q, want %q", got, tc.want)
			}
		})
	}
}
