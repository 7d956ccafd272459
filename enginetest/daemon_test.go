//go:build enginetest && linux

package enginetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a daemon process the driver started; it is reaped by one
// goroutine and killed by cleanup if a scenario did not stop it.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group: a Ctrl-C of `go test` reaches the driver, which
	// then stops its daemons in order instead of them dying at random.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	run.track(p)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalAndWait sends sig and waits up to d for the process to exit.
func (p *proc) signalAndWait(sig syscall.Signal, d time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) did not exit within %s of %s", p.name, p.pid(), d, sig)
	}
}

// containerd is a containerd the driver runs itself, for the scenarios that
// stop or kill dockerd (then containerd must outlive it) or containerd.
type containerd struct {
	flavor *flavor
	dir    string
	sock   string
	p      *proc
}

func newContainerd(f *flavor, dir string) (*containerd, error) {
	c := &containerd{flavor: f, dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	// Version 2 is read by 1.6 and migrated by 2.x. CRI is off, as dockerd
	// turns it off for the containerd it manages.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return c, c.start()
}

func (c *containerd) start() error {
	_ = os.Remove(c.sock)
	p, err := startProc("containerd-"+c.flavor.name, filepath.Join(c.dir, "containerd.log"), c.flavor.env(),
		filepath.Join(c.flavor.binDir, "containerd"), "--config", filepath.Join(c.dir, "config.toml"))
	if err != nil {
		return err
	}
	c.p = p
	return poll(30*time.Second, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("containerd exited: %v (log %s)", p.err, filepath.Join(c.dir, "containerd.log"))
		}
		conn, err := net.Dial("unix", c.sock)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
}

func (c *containerd) kill() error { return c.p.signalAndWait(syscall.SIGKILL, 10*time.Second) }

// waitStopped waits until containerd lists none of the tasks with the
// given host pids as running. A process that is gone may not have been
// reaped by its shim yet: a dockerd that restores meanwhile would find its
// task running and take another path than the one the scenario compares.
func (c *containerd) waitStopped(d time.Duration, pids ...int) error {
	return poll(d, func() (bool, error) {
		out, err := exec.Command("ctr", "--address", c.sock, "-n", "moby", "tasks", "ls").CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("ctr tasks ls: %v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[2] == "STOPPED" {
				continue
			}
			if pid, err := strconv.Atoi(f[1]); err == nil && slices.Contains(pids, pid) {
				return false, nil
			}
		}
		return true, nil
	})
}

func (c *containerd) stop() error { return c.p.signalAndWait(syscall.SIGTERM, 30*time.Second) }

// dockerd is one dockerd instance on private directories. With ctrd nil it
// manages its own containerd, found on PATH, as dockerd does by default.
type dockerd struct {
	t        *testing.T
	engine   string // v28 | v29
	build    string
	flavor   *flavor
	dir      string
	sock     string
	dataRoot string
	execRoot string
	ctrd     *containerd
	args     []string
	p        *proc
}

func newDockerd(t *testing.T, eng, build string, f *flavor, dir string, ctrd *containerd, args ...string) *dockerd {
	d := &dockerd{
		t: t, engine: eng, build: build, flavor: f, dir: dir, ctrd: ctrd, args: args,
		sock:     filepath.Join(dir, "docker.sock"),
		dataRoot: filepath.Join(dir, "data"),
		execRoot: filepath.Join(dir, "exec"),
	}
	if err := os.MkdirAll(filepath.Join(dir, "cli"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := "{}\n"
	if eng == "v29" {
		// v29 gives every container its own time namespace, which
		// Debian's runc 1.1.5 (the runtime of both containerds here)
		// does not know ("namespace {"time" ""} does not exist"); its
		// feature flag restores v28's default, for stock and ours alike.
		cfg = `{"features": {"time-namespaces": false}}` + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *dockerd) start() {
	d.t.Helper()
	args := []string{
		"--config-file", filepath.Join(d.dir, "daemon.json"),
		"-H", "unix://" + d.sock,
		"--data-root", d.dataRoot,
		"--exec-root", d.execRoot,
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--userland-proxy=false",
		"--storage-driver=vfs",
		"--cgroup-parent=" + run.cgroupParent,
		"--log-level=debug",
	}
	if d.ctrd != nil {
		args = append(args, "--containerd", d.ctrd.sock)
	}
	args = append(args, d.args...)
	p, err := startProc("dockerd-"+d.build, filepath.Join(d.dir, "dockerd.log"), d.flavor.env(), run.dockerdBin(d.engine, d.build), args...)
	if err != nil {
		d.t.Fatal(err)
	}
	d.p = p
	err = poll(60*time.Second, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("dockerd exited: %v", p.err)
		}
		_, code, _ := d.docker("version", "--format", "{{.Server.Version}}")
		return code == 0, nil
	})
	if err != nil {
		d.t.Fatalf("dockerd-%s-%s on %s: %v; log %s:\n%s", d.engine, d.build, d.flavor.name, err, d.logPath(), tail(d.logPath(), 30))
	}
}

func (d *dockerd) logPath() string { return filepath.Join(d.dir, "dockerd.log") }

// stop shuts dockerd down as its service manager would (SIGTERM) and reports
// whether it exited cleanly.
func (d *dockerd) stop() error {
	if err := d.p.signalAndWait(syscall.SIGTERM, 60*time.Second); err != nil {
		return err
	}
	return d.p.err
}

func (d *dockerd) kill() {
	d.t.Helper()
	if err := d.p.signalAndWait(syscall.SIGKILL, 10*time.Second); err != nil {
		d.t.Fatal(err)
	}
}

// docker runs the CLI against this dockerd and returns its combined output,
// trimmed, and exit code; err is set only when the CLI could not run.
func (d *dockerd) docker(args ...string) (string, int, error) {
	return d.dockerIn(nil, args...)
}

func (d *dockerd) dockerIn(stdin []byte, args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
	cmd.Env = d.cliEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			return strings.TrimSpace(string(out)), -1, fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return strings.TrimSpace(string(out)), code, nil
}

func (d *dockerd) cliEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "DOCKER_CONFIG=" + filepath.Join(d.dir, "cli"), "HOME=" + d.dir}
}

// must runs a docker command that has to succeed for the scenario to mean
// anything (setup, not an observation).
func (d *dockerd) must(args ...string) string {
	d.t.Helper()
	out, code, err := d.docker(args...)
	if err != nil || code != 0 {
		d.t.Fatalf("dockerd-%s: docker %s: exit %d, %v: %s", d.build, strings.Join(args, " "), code, err, out)
	}
	return out
}

func (d *dockerd) importImage() {
	d.t.Helper()
	d.must("import", "-c", "ENV PATH=/bin", run.imageTar, image)
}

// containerPid is the host pid of a running container's init process.
func (d *dockerd) containerPid(name string) int {
	d.t.Helper()
	pid, err := strconv.Atoi(d.must("inspect", "-f", "{{.State.Pid}}", name))
	if err != nil || pid <= 0 {
		d.t.Fatalf("dockerd-%s: pid of %s: %d %v", d.build, name, pid, err)
	}
	return pid
}

func (d *dockerd) waitRunning(names ...string) {
	d.t.Helper()
	for _, n := range names {
		err := poll(30*time.Second, func() (bool, error) {
			out, _, _ := d.docker("inspect", "-f", "{{.State.Running}}", n)
			return out == "true", nil
		})
		if err != nil {
			d.t.Fatalf("dockerd-%s: %s not running: %v", d.build, n, err)
		}
	}
}

// poll calls f every 100 ms until it returns true or an error, or d passes.
func poll(d time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGone waits until none of the host pids exists any more.
func waitGone(d time.Duration, pids ...int) error {
	return poll(d, func() (bool, error) {
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); err == nil || !errors.Is(err, syscall.ESRCH) {
				if isZombie(pid) {
					continue
				}
				return false, nil
			}
		}
		return true, nil
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// shimSocket is where a runc v2 shim of (address, namespace, id) listens:
// containerd names it by a hash under /run/containerd/s (1.6 and 2.x alike).
func shimSocket(address, ns, id string) string {
	return fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(filepath.Join(address, ns, id))))
}

// shimArgs returns a shim's -address, -namespace and -id arguments.
func shimArgs(pid int) (address, ns, id string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", "", ""
	}
	args := strings.Split(string(b), "\x00")
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-address":
			address = args[i+1]
		case "-namespace":
			ns = args[i+1]
		case "-id":
			id = args[i+1]
		}
	}
	return address, ns, id
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
