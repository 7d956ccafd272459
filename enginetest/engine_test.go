//go:build enginetest && linux

package enginetest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// scenario runs on one build and records what it observes in r. It fails
// t only when it cannot observe (setup broke); what it sees is judged by
// compare, stock against ours.
type scenario struct {
	name string
	// dir is the scenario's short directory name: dockerd's managed
	// containerd puts sockets under <exec-root>/containerd, and a unix
	// socket path has at most 104 bytes.
	dir string
	run func(t *testing.T, e *env, r *result)
}

var scenarios = []scenario{
	{"managed-containerd-live-restore-sweep", "sweep", scenarioSweep},
	{"exit-while-down/live-restore-stop", "lr-stop", restartScenario(true, syscall.SIGTERM)},
	{"exit-while-down/live-restore-kill", "lr-kill", restartScenario(true, syscall.SIGKILL)},
	{"exit-while-down/kill", "kill", restartScenario(false, syscall.SIGKILL)},
	{"containerd-sigkill", "ctrd-kill", scenarioContainerdCrash},
	{"containerd-sigkill-churn", "churn", scenarioChurn},
	{"everyday-api", "api", scenarioAPI},
	{"checkpoint-restore", "cp", scenarioCheckpoint},
}

// TestEngine runs every scenario on every engine (ENGINE_DOCKERD) and
// containerd (ENGINE_CONTAINERD), stock and ours side by side. The two
// builds of a scenario run at the same time, and the containerd daemons
// of one engine run their scenarios at the same time too, each on its own
// daemons and directories: most of a scenario is waiting (for exits,
// restarts, the healthcheck's minute), so this divides the wall time
// while stock and ours share the machine's load. Engines run one after
// the other.
func TestEngine(t *testing.T) {
	defer writeReport(t)
	ctrds := flavors(t)
	for _, eng := range engines(t) {
		t.Run(eng, func(t *testing.T) {
			for _, f := range ctrds {
				t.Run(f.name, func(t *testing.T) {
					t.Parallel()
					for _, sc := range scenarios {
						t.Run(sc.name, func(t *testing.T) {
							runScenario(t, eng, f, sc)
						})
					}
				})
			}
		})
	}
}

func runScenario(t *testing.T, eng string, f *flavor, sc scenario) {
	res := map[string]*result{}
	t.Run("builds", func(t *testing.T) {
		for _, build := range []string{"stock", "ours"} {
			r := &result{}
			res[build] = r
			t.Run(build, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				e := newEnv(t, eng, f, build, filepath.Join(run.root, eng, f.name, sc.dir+"-"+build))
				t.Cleanup(func() {
					addTiming("%s, containerd %s, %s, %s: %.1fs", eng, f.name, sc.name, build, time.Since(start).Seconds())
				})
				sc.run(t, e, r)
			})
		}
	})
	compare(t, eng+"/"+f.name, sc.name, res["stock"], res["ours"])
}

// env is one scenario's run on one build: its directories and daemons,
// which its teardown stops and removes whatever happened.
type env struct {
	t       *testing.T
	engine  string // v28 | v29
	flavor  *flavor
	build   string
	dir     string
	sig     string // bind-mounted at /s: containers exit when their file appears
	dockerd []*dockerd
	ctrd    []*containerd
}

func newEnv(t *testing.T, eng string, f *flavor, build, dir string) *env {
	e := &env{t: t, engine: eng, flavor: f, build: build, dir: dir, sig: filepath.Join(dir, "sig")}
	if err := os.MkdirAll(e.sig, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.teardown)
	return e
}

func (e *env) containerd() *containerd {
	c, err := newContainerd(e.flavor, filepath.Join(e.dir, "containerd"))
	if c != nil {
		e.ctrd = append(e.ctrd, c)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) newDockerd(ctrd *containerd, args ...string) *dockerd {
	d := newDockerd(e.t, e.engine, e.build, e.flavor, e.dir, ctrd, args...)
	e.dockerd = append(e.dockerd, d)
	return d
}

func (e *env) teardown() {
	for _, d := range e.dockerd {
		if d.p == nil || d.p.exited() {
			continue
		}
		if ids, _, _ := d.docker("ps", "-aq"); ids != "" {
			_, _, _ = d.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		if err := d.p.signalAndWait(syscall.SIGTERM, 60*time.Second); err != nil {
			e.t.Logf("teardown: %v; killing", err)
			_ = d.p.signalAndWait(syscall.SIGKILL, 10*time.Second)
		}
	}
	for _, c := range e.ctrd {
		if c.p != nil && !c.p.exited() {
			if err := c.stop(); err != nil {
				_ = c.kill()
			}
		}
	}
	pidfiles, _ := filepath.Glob(filepath.Join(e.dir, "exec", "containerd", "containerd.pid"))
	for _, pf := range pidfiles {
		killPidFile(pf, "containerd")
	}
	for _, pid := range containerdtest.ShimsUnder(e.dir) {
		address, ns, id := shimArgs(pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = waitGone(5*time.Second, pid)
		if address != "" {
			_ = os.Remove(strings.TrimPrefix(shimSocket(address, ns, id), "unix://"))
		}
	}
	unmountUnder(e.dir)
	e.keepLogs()
}

// keepLogs copies the daemons' logs out of the run's directory, which
// cleanup removes, to <build dir>/logs/<engine>/<containerd>/<scenario>-<build>.
func (e *env) keepLogs() {
	dst := filepath.Join(run.buildDir, "logs", e.engine, e.flavor.name, filepath.Base(e.dir))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		e.t.Log(err)
		return
	}
	for _, src := range []string{filepath.Join(e.dir, "dockerd.log"), filepath.Join(e.dir, "containerd", "containerd.log")} {
		if b, err := os.ReadFile(src); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(src)), b, 0o644)
		}
	}
}
