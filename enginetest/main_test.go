//go:build enginetest && linux

package enginetest

import (
	"archive/tar"
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
	"golang.org/x/sys/unix"
)

const image = "busybox:engine"

// flavor is one containerd build: the directory its containerd and
// containerd-shim-runc-v2 are in comes first on PATH, for the containerd
// the driver starts and for the one dockerd starts itself.
type flavor struct {
	name   string // v2 | debian
	binDir string
}

// env keeps the caller's PATH behind the flavor's directory: make puts the
// criu that works on this kernel first in it, and runc finds criu there.
func (f *flavor) env() []string {
	return []string{"PATH=" + f.binDir + ":" + os.Getenv("PATH") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
}

// runState is the state of one `go test` of this package.
type runState struct {
	root         string // /tmp/lcd-engine-*
	cgroupParent string // /lcd-engine-*, the parent of every container's cgroup
	buildDir     string
	imageTar     string

	mu    sync.Mutex
	procs []*proc
}

var run runState

func (r *runState) track(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

func (r *runState) dockerdBin(engine, build string) string {
	return filepath.Join(r.buildDir, "bin", "dockerd-"+engine+"-"+build)
}

func TestMain(m *testing.M) {
	os.Exit(mainErr(m))
}

func mainErr(m *testing.M) int {
	if os.Getuid() != 0 {
		fmt.Fprintln(os.Stderr, "enginetest: needs root")
		return 1
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	run.buildDir = envOr("ENGINE_BUILD_DIR", filepath.Join(repo, ".tools", "engine"))
	for _, eng := range strings.Split(envOr("ENGINE_DOCKERD", "v28,v29"), ",") {
		for _, b := range []string{"stock", "ours"} {
			if _, err := os.Stat(run.dockerdBin(strings.TrimSpace(eng), b)); err != nil {
				fmt.Fprintf(os.Stderr, "enginetest: %v (run enginetest/build.sh %s)\n", err, eng)
				return 1
			}
		}
	}
	if _, err := exec.LookPath("docker"); err != nil {
		fmt.Fprintln(os.Stderr, "enginetest: the docker CLI is needed:", err)
		return 1
	}
	_ = os.RemoveAll(filepath.Join(run.buildDir, "logs"))
	run.root, err = os.MkdirTemp("/tmp", "lcd-engine-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	run.cgroupParent = "/" + filepath.Base(run.root)
	run.imageTar = filepath.Join(run.root, "busybox.tar")
	defer cleanup()
	if err := writeBusyboxTar(run.imageTar); err != nil {
		fmt.Fprintln(os.Stderr, "enginetest: image:", err)
		return 1
	}
	runSideBySide()
	return m.Run()
}

// runSideBySide lets every build of a scenario run at once, stock and ours
// on each containerd daemon, as TestEngine is laid out: go test's default
// -parallel, GOMAXPROCS (2 here), made half of them wait for a slot (a
// 10 s scenario took 73 s, the whole test 617 s instead of about 400 s).
// An explicit -parallel is left as given.
func runSideBySide() {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given {
		return
	}
	builds := 2 * len(strings.Split(envOr("ENGINE_CONTAINERD", "v2,debian"), ","))
	_ = flag.Set("test.parallel", fmt.Sprint(builds))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// engines are the dockerd engines ENGINE_DOCKERD selects: v28 (dockerd
// v28.5.2) and v29 (moby's v2 module), each built stock and ours.
func engines(t *testing.T) []string {
	var out []string
	for _, n := range strings.Split(envOr("ENGINE_DOCKERD", "v28,v29"), ",") {
		n = strings.TrimSpace(n)
		if n != "v28" && n != "v29" {
			t.Fatalf("ENGINE_DOCKERD: unknown engine %q (v28, v29)", n)
		}
		out = append(out, n)
	}
	return out
}

func flavors(t *testing.T) []*flavor {
	repo, _ := filepath.Abs("..")
	all := map[string]*flavor{
		"v2":     {name: "v2", binDir: envOr("LIBCONTAINERD_TOOLS_DIR", filepath.Join(repo, ".tools", "bin"))},
		"debian": {name: "debian", binDir: "/usr/bin"},
	}
	var out []*flavor
	for _, n := range strings.Split(envOr("ENGINE_CONTAINERD", "v2,debian"), ",") {
		f, ok := all[strings.TrimSpace(n)]
		if !ok {
			t.Fatalf("ENGINE_CONTAINERD: unknown containerd %q (v2, debian)", n)
		}
		for _, b := range []string{"containerd", "containerd-shim-runc-v2"} {
			if _, err := os.Stat(filepath.Join(f.binDir, b)); err != nil {
				t.Fatalf("containerd %s: %v (run make tools)", f.name, err)
			}
		}
		out = append(out, f)
	}
	return out
}

// writeBusyboxTar writes a root filesystem of Debian's static busybox, every
// applet a symlink to it, for `docker import` (no registry is reachable).
func writeBusyboxTar(path string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now()
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "s"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: now}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(bb); err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(string(list)))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + name, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	for name, body := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// cleanup removes everything the run started or made, in the order that
// lets each step succeed: daemons, then shims and container processes, then
// mounts, cgroups, shim sockets and the directory tree.
func cleanup() {
	run.mu.Lock()
	procs := run.procs
	run.mu.Unlock()
	// dockerd first (it would restart a managed containerd), then containerd.
	sort.SliceStable(procs, func(i, j int) bool {
		return strings.HasPrefix(procs[i].name, "dockerd") && !strings.HasPrefix(procs[j].name, "dockerd")
	})
	for _, p := range procs {
		if !p.exited() {
			fmt.Fprintf(os.Stderr, "enginetest: cleanup: killing %s (pid %d)\n", p.name, p.pid())
			_ = p.signalAndWait(syscall.SIGKILL, 10*time.Second)
		}
	}
	// A managed containerd is dockerd's child and dies with it
	// (Pdeathsig), but wait for it by pid file to be sure.
	pidfiles, _ := filepath.Glob(filepath.Join(run.root, "*", "*", "*", "exec", "containerd", "containerd.pid"))
	for _, pf := range pidfiles {
		killPidFile(pf, "containerd")
	}
	for _, pid := range containerdtest.ShimsUnder(run.root) {
		address, ns, id := shimArgs(pid)
		fmt.Fprintf(os.Stderr, "enginetest: cleanup: killing shim %d of %s\n", pid, id)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = waitGone(5*time.Second, pid)
		if address != "" && ns != "" && id != "" {
			_ = os.Remove(strings.TrimPrefix(shimSocket(address, ns, id), "unix://"))
		}
	}
	killCgroups(run.cgroupParent)
	unmountUnder(run.root)
	removeCgroups(run.cgroupParent)
	if err := os.RemoveAll(run.root); err != nil {
		fmt.Fprintln(os.Stderr, "enginetest: cleanup:", err)
	}
}

func killPidFile(path, comm string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		return
	}
	c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(c)) != comm {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = waitGone(5*time.Second, pid)
}

// killCgroups kills every process left in the run's cgroups (containers
// whose shim was killed): they are ours by construction.
func killCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", strings.TrimPrefix(parent, "/")))
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

func removeCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", strings.TrimPrefix(parent, "/")))
	for _, dir := range dirs {
		var all []string
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		// Deepest first: cgroupfs removes a directory only when it has no
		// children; a just-killed process may still be leaving, so retry.
		sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
		for _, p := range all {
			_ = poll(5*time.Second, func() (bool, error) {
				err := os.Remove(p)
				return err == nil || errors.Is(err, os.ErrNotExist), nil
			})
		}
	}
}

// unmountUnder detaches every mount point under root (network namespaces,
// graph driver mounts), deepest first.
func unmountUnder(root string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == root || strings.HasPrefix(mp, root+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
