//go:build enginetest && linux

package enginetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// criuDeadline bounds each `docker checkpoint create` and `docker start
// --checkpoint`: a dump or restore of this small container takes under a
// second here (0.3-0.6 s in the library's tests, 2.2 s at the slowest),
// the rest of the call is dockerd's; a CRIU that hangs (trixie's 4.1.1 did,
// in every dump, on another machine with this kernel) must fail the
// scenario with a diagnostic, not hold it for minutes.
const criuDeadline = 30 * time.Second

// scenarioCheckpoint: `docker checkpoint create` and `docker start
// --checkpoint` through dockerd --experimental. The container counts on
// stdout; restored, it must go on from where it was checkpointed, not
// start over.
func scenarioCheckpoint(t *testing.T, e *env, r *result) {
	criu, err := exec.LookPath("criu")
	if err == nil {
		err = exec.Command(criu, "check").Run()
	}
	if err != nil {
		if os.Getenv("LIBCONTAINERD_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("criu: %v (make tools provisions one that works)", err)
		}
		r.same("criu", "unavailable (%v): not run", err)
		return
	}
	d := e.newDockerd(nil, "--experimental")
	d.start()
	d.importImage()
	const name = "cp-ctr"
	// Host network: dockerd cannot restore a checkpoint into a container
	// network namespace (moby: "bind-mount /proc/0/ns/net", stock too).
	d.must("run", "-d", "--name", name, "--network", "host", image,
		"sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done")
	d.waitRunning(name)
	lastCount := func() int {
		out, _, _ := d.docker("logs", name)
		f := strings.Fields(out)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(f[len(f)-1])
		return n
	}
	if err := poll(30*time.Second, func() (bool, error) { return lastCount() >= 3, nil }); err != nil {
		t.Fatalf("counter never reached 3: %v", err)
	}
	started := time.Now()
	out, code := e.criuStep(d, criu, started, "dump.log", "checkpoint", "create", name, "cp1")
	r.same("checkpoint create", "exit %d: %s, then %s", code, out, strings.Fields(d.state(name))[0])
	atCheckpoint := lastCount()
	out, code, _ = d.docker("checkpoint", "ls", name)
	r.same("checkpoint ls", "exit %d: %s", code, strings.Join(strings.Fields(out), " "))
	// Required rather than compared: on containerd 1.6 stock's restore
	// fails (moby's copy does not tolerate the checkpoint blob already being
	// in the content store, which the module's upload does).
	out, code = e.criuStep(d, criu, started, "restore.log", "start", "--checkpoint", "cp1", name)
	st := strings.Fields(d.state(name))[0]
	r.require("start --checkpoint", code == 0 && st == "running", "exit 0, then running", "exit %d: %s, then %s", code, out, st)
	err = poll(30*time.Second, func() (bool, error) { return lastCount() > atCheckpoint+2, nil })
	logs, _, _ := d.docker("logs", name)
	restarts := strings.Count("\n"+logs+"\n", "\n1\n")
	r.require("counter after restore", err == nil && restarts == 1, "continues, not from 1 again",
		"continues=%t, started from 1 again=%t", err == nil, restarts > 1)
	e.checkExitFilter(r, d)
	_, code, _ = d.docker("rm", "-f", name)
	r.same("rm -f", "exit %d", code)
}

// criuStep runs a docker command that makes runc run CRIU, under
// criuDeadline. When the deadline passes it stops the CRIU and runc the
// scenario's shims started and fails t with what a reader needs: the CRIU
// version and the last lines of its log (logName, the newest written since
// started under the scenario's directory or the temporary directory).
func (e *env) criuStep(d *dockerd, criu string, started time.Time, logName string, args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), criuDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
	cmd.Env = d.cliEnv()
	b, err := cmd.CombinedOutput()
	out := strings.TrimSpace(string(b))
	if ctx.Err() == nil {
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			e.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
		}
		return out, cmd.ProcessState.ExitCode()
	}
	version, _ := exec.Command(criu, "--version").CombinedOutput()
	logPath, logTail := newestLog(logName, started, e.dir, os.TempDir())
	stopped := killCRIU(containerdtest.ShimsUnder(e.dir))
	e.t.Fatalf("docker %s did not finish within %s (CRIU hangs?)\ncriu: %s\n%s\n%s: %s\nlast lines of %s:\n%s",
		strings.Join(args, " "), criuDeadline, criu, strings.TrimSpace(string(version)),
		"stopped processes under the scenario's shims", stopped, logPath, logTail)
	return "", -1
}

// newestLog finds the newest file called name, written since since, under
// the given directories (at most four levels down in each) and returns
// its path and last 20 lines.
func newestLog(name string, since time.Time, dirs ...string) (string, string) {
	type found struct {
		path string
		mod  time.Time
	}
	var all []found
	for _, dir := range dirs {
		base := strings.Count(filepath.Clean(dir), string(filepath.Separator))
		_ = filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if de.IsDir() && strings.Count(path, string(filepath.Separator))-base > 4 {
				return filepath.SkipDir
			}
			if de.Name() != name || de.IsDir() {
				return nil
			}
			if fi, err := de.Info(); err == nil && !fi.ModTime().Before(since) {
				all = append(all, found{path, fi.ModTime()})
			}
			return nil
		})
	}
	if len(all) == 0 {
		return name, "(not found)"
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	return all[0].path, tail(all[0].path, 20)
}

// killCRIU SIGKILLs every criu and runc process descending from the given
// shims (those the scenario's containerd started) and names them.
func killCRIU(shims []int) string {
	parent := map[int]int{}
	comm := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		j := strings.IndexByte(s, '(')
		if i < 0 || j < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		comm[pid] = s[j+1 : i]
		parent[pid], _ = strconv.Atoi(f[1])
	}
	isShim := map[int]bool{}
	for _, s := range shims {
		isShim[s] = true
	}
	var killed []string
	for pid, c := range comm {
		if c != "criu" && c != "runc" {
			continue
		}
		for p := parent[pid]; p > 1; p = parent[p] {
			if isShim[p] {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				killed = append(killed, fmt.Sprintf("%s %d", c, pid))
				break
			}
		}
	}
	if len(killed) == 0 {
		return "none"
	}
	sort.Strings(killed)
	return strings.Join(killed, ", ")
}
