//go:build enginetest && linux

package enginetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// waitScript is a container command that waits until the driver creates
// /s/<name>, removes it and exits with code: an exit the driver triggers
// while a daemon is down, and that a restarted container does not repeat.
func waitScript(name string, code int) string {
	return fmt.Sprintf("while :; do if [ -e /s/%[1]s ]; then rm -f /s/%[1]s; exit %[2]d; fi; sleep 0.05; done", name, code)
}

func (e *env) signal(names ...string) {
	e.t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(e.sig, n), nil, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) runWaiting(d *dockerd, name string, code int, extra ...string) {
	e.t.Helper()
	args := []string{"run", "-d", "--name", name, "--network", "none", "-v", e.sig + ":/s"}
	args = append(args, extra...)
	d.must(append(args, image, "sh", "-c", waitScript(name, code))...)
}

func unixTime(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// state is what `docker inspect` shows of a container, "removed" when it
// is gone.
func (d *dockerd) state(name string) string {
	out, code, _ := d.docker("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}}", name)
	if code != 0 {
		if strings.Contains(out, "No such") {
			return "removed"
		}
		return "inspect failed: " + out
	}
	return out
}

// dies returns the exit codes of the die events of each container since t.
func (d *dockerd) dies(since time.Time) map[string][]string {
	out := d.must("events", "--since", unixTime(since), "--until", unixTime(time.Now()),
		"--filter", "event=die", "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
	m := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			m[f[0]] = append(m[f[0]], f[1])
		}
	}
	return m
}

// settle polls the containers' states and die events until nothing is
// restarting and nothing changed for quiet, and returns the last snapshot.
// The quiet window bounds how late a doubled event can come and still be
// seen; it orders nothing.
func (d *dockerd) settle(since time.Time, names []string, quiet, deadline time.Duration) (states map[string]string, dies map[string][]string, settled bool) {
	var last string
	var stableSince time.Time
	err := poll(deadline, func() (bool, error) {
		states = map[string]string{}
		for _, n := range names {
			states[n] = d.state(n)
		}
		dies = d.dies(since)
		snap := fmt.Sprint(states, dies)
		if snap != last {
			last, stableSince = snap, time.Now()
			return false, nil
		}
		for _, s := range states {
			if strings.HasPrefix(s, "restarting") {
				return false, nil
			}
		}
		return time.Since(stableSince) >= quiet, nil
	})
	return states, dies, err == nil
}

func dieSummary(codes []string) string {
	if len(codes) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (exit %s)", len(codes), strings.Join(codes, ","))
}

func bracket(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func errText(err error) string {
	if err == nil {
		return "clean exit"
	}
	return err.Error()
}

// checkShims judges the shims left after everything was removed and
// dockerd shut down. A shim whose task containerd still lists is a delete
// the engine (through the library) never completed: none may be left. A
// shim containerd has no task for was lost by containerd itself, killed
// while it was creating the task; no client can reach it through the API,
// so it is recorded, not required.
func checkShims(t *testing.T, r *result, c *containerd, pids []int) {
	tasks, _ := exec.Command("ctr", "--address", c.sock, "-n", "moby", "tasks", "ls").CombinedOutput()
	var reachable, lost []string
	for _, pid := range pids {
		_, _, id := shimArgs(pid)
		status := ""
		for _, line := range strings.Split(string(tasks), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
				status = f[2]
			}
		}
		short := id
		if len(short) > 12 {
			short = short[:12]
		}
		t.Logf("shim %d left: container %s, task %q", pid, id, status)
		if status != "" {
			reachable = append(reachable, short+": task "+status)
		} else {
			lost = append(lost, short)
		}
	}
	r.require("shims left whose task containerd still has (after rm -f and shutdown)", len(reachable) == 0, "0",
		"%d%s", len(reachable), bracket(strings.Join(reachable, "; ")))
	r.record("shims left that containerd lost (no task; killed mid-create)", "%d", len(lost))
}

// bg is a docker CLI command running in the background.
type bg struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan error
}

func (d *dockerd) background(args ...string) *bg {
	d.t.Helper()
	b := &bg{done: make(chan error, 1)}
	b.cmd = exec.Command("docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
	b.cmd.Env = d.cliEnv()
	b.cmd.Stdout = &b.out
	b.cmd.Stderr = &b.out
	if err := b.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	return b
}

func (b *bg) wait(t *testing.T) (string, int) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Fatalf("%v did not finish within 60 s: %s", b.cmd.Args, b.out.String())
	}
	return strings.TrimSpace(b.out.String()), b.cmd.ProcessState.ExitCode()
}

// execTTY runs `docker exec -it` under script(1), which gives it a
// terminal as a user's shell would.
func (d *dockerd) execTTY(t *testing.T, name, shell string) (string, int) {
	t.Helper()
	line := fmt.Sprintf("docker -H unix://%s exec -it %s sh -c '%s'", d.sock, name, shell)
	cmd := exec.Command("script", "-qec", line, "/dev/null")
	cmd.Env = d.cliEnv()
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	// A stdin that stays open: at EOF script(1) would type ^D or ^@ into
	// the terminal.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("exec -it did not finish: %s", out.String())
	}
	return strings.TrimSpace(strings.ReplaceAll(out.String(), "\r", "")), cmd.ProcessState.ExitCode()
}

// ignoredExit is a line of v29's exit filter (daemon/monitor.go,
// shouldIgnoreExitEventWithLock) in dockerd's log: an exit event of a
// container dockerd dropped, after asking Task.Status when the container
// was running.
var ignoredExit = regexp.MustCompile(`msg="ignoring duplicate container exit event".*`)

// checkExitFilter records, on the v29 engine, the exit events dockerd's
// own filter dropped so far: none may be dropped of ours (each exit the
// module delivers, also the ones it synthesizes, must agree with what
// Task.Status answers then). Call it before removing containers: `docker
// rm -f` of a running container drops its exit by design (state
// "removing"). v28 has no such filter.
func (e *env) checkExitFilter(r *result, d *dockerd) {
	if e.engine != "v29" {
		return
	}
	names := map[string]string{}
	if out, _, _ := d.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"); out != "" {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				names[f[0]] = f[1]
			}
		}
	}
	b, err := os.ReadFile(d.logPath())
	if err != nil {
		e.t.Fatal(err)
	}
	var dropped []string
	for _, line := range ignoredExit.FindAllString(string(b), -1) {
		e.t.Logf("dockerd-%s-%s: %s", d.engine, d.build, line)
		id, code, state := logField(line, "container"), logField(line, "exitCode"), logField(line, "state")
		who := names[id]
		if who == "" {
			who = id
		}
		dropped = append(dropped, fmt.Sprintf("%s exit=%s state=%s", who, code, state))
	}
	r.require("v29: exits dockerd ignored as duplicates (log)", len(dropped) == 0, "none",
		"%d%s", len(dropped), bracket(strings.Join(dropped, "; ")))
}

// logField returns the value of key=value in a logrus text line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}
