//go:build enginetest && linux

package enginetest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// scenarioAPI drives the everyday commands through dockerd with its own
// containerd (the default setup) and records what the CLI shows.
func scenarioAPI(t *testing.T, e *env, r *result) {
	d := e.newDockerd(nil)
	d.start()
	d.importImage()
	netArgs := []string{"--network", "none"}

	out, code, _ := d.docker(append(append([]string{"run", "--rm"}, netArgs...), image, "echo", "hello")...)
	r.same("run --rm echo", "exit %d: %s", code, out)
	out, code, _ = d.docker(append(append([]string{"run", "--rm"}, netArgs...), image, "sh", "-c", "exit 7")...)
	r.same("run exit code", "exit %d: %s", code, out)
	out, code, _ = d.dockerIn([]byte("through stdin\n"), append(append([]string{"run", "-i", "--rm"}, netArgs...), image, "cat")...)
	r.same("run -i with stdin", "exit %d: %s", code, out)

	// attach: the container prints only after the attach is registered
	// (its attach event), then exits 4.
	since := time.Now()
	d.must(append(append([]string{"run", "-d", "--name", "api-attach", "-v", e.sig + ":/s"}, netArgs...), image,
		"sh", "-c", "while [ ! -e /s/api-attach ]; do sleep 0.05; done; echo attached-output; exit 4")...)
	attach := d.background("attach", "--no-stdin", "api-attach")
	err := poll(30*time.Second, func() (bool, error) {
		out, _, _ := d.docker("events", "--since", unixTime(since), "--until", unixTime(time.Now()),
			"--filter", "container=api-attach", "--filter", "event=attach", "--format", "{{.Action}}")
		return out != "", nil
	})
	if err != nil {
		t.Fatalf("attach never registered: %v", err)
	}
	e.signal("api-attach")
	out, code = attach.wait(t)
	r.same("attach", "exit %d: %s", code, out)
	out, code, _ = d.docker("logs", "api-attach")
	r.same("logs", "exit %d: %s", code, out)

	const main = "api-main"
	d.must(append(append([]string{"run", "-d", "--name", main}, netArgs...), image,
		"sh", "-c", `trap "exit 0" TERM; sleep 100000 & wait`)...)
	d.waitRunning(main)
	out, code, _ = d.dockerIn([]byte("via exec stdin\n"), "exec", "-i", main, "cat")
	r.same("exec -i with stdin", "exit %d: %s", code, out)
	out, code = d.execTTY(t, main, "tty; echo $((6*7))")
	r.same("exec -it (TTY)", "exit %d: %s", code, out)
	out, code, _ = d.docker("exec", main, "sh", "-c", "exit 5")
	r.same("exec exit code", "exit %d: %s", code, out)

	// A failed exec: v29 cleans it up itself (its own context, 45 s).
	_, code, _ = d.docker("exec", main, "no-such-command")
	r.same("exec of a missing command", "exit %d", code)
	out, code, _ = d.docker("exec", main, "echo", "after-failed-exec")
	r.same("exec after a failed exec", "exit %d: %s", code, out)

	_, code, _ = d.docker("pause", main)
	r.same("pause", "exit %d, then %s", code, d.state(main))
	_, code, _ = d.docker("exec", main, "true")
	r.same("exec while paused", "exit %d", code)
	_, code, _ = d.docker("unpause", main)
	r.same("unpause", "exit %d, then %s", code, d.state(main))

	out, code, _ = d.docker("stats", "--no-stream", "--format", "{{.Name}} pids={{.PIDs}}", main)
	r.same("stats --no-stream", "exit %d: %s", code, out)
	mem, _, _ := d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", main)
	r.same("stats reports memory", "%t", mem != "" && !strings.HasPrefix(mem, "0B"))
	out, code, _ = d.docker("top", main, "-o", "pid,comm")
	r.same("top (commands)", "exit %d: %s", code, topCommands(out))

	_, code, _ = d.docker("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50", main)
	limits, _, _ := d.docker("exec", main, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max")
	hc, _, _ := d.docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", main)
	r.same("update memory and pids limits", "exit %d, cgroup %s, inspect %s", code, strings.Join(strings.Fields(limits), " "), hc)

	oldPid := d.containerPid(main)
	_, code, _ = d.docker("restart", "-t", "5", main)
	newPid, _, _ := d.docker("inspect", "-f", "{{.State.Pid}}", main)
	r.same("restart", "exit %d, then %s, new pid %t", code, d.state(main), newPid != strconv.Itoa(oldPid))

	_, code, _ = d.docker("kill", main)
	out, _, _ = d.docker("wait", main)
	r.same("kill, then wait", "exit %d, wait %s, then %s", code, out, d.state(main))

	d.must(append(append([]string{"run", "-d", "--name", "api-wait", "-v", e.sig + ":/s"}, netArgs...), image,
		"sh", "-c", waitScript("api-wait", 9))...)
	waiter := d.background("wait", "api-wait")
	e.signal("api-wait")
	out, code = waiter.wait(t)
	r.same("wait", "exit %d: %s", code, out)
	// dockerd logs the die event after the state change `docker wait`
	// returns on; give it a moment, bounded.
	var dies map[string][]string
	_ = poll(10*time.Second, func() (bool, error) {
		dies = d.dies(since)
		return len(dies["api-wait"]) > 0, nil
	})
	for _, n := range []string{"api-attach", main, "api-wait"} {
		r.same(n+": die events", "%s", dieSummary(dies[n]))
	}
	e.checkExitFilter(r, d)
	ids, _, _ := d.docker("ps", "-aq")
	_, code, _ = d.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	r.same("rm -f", "exit %d", code)
}

// topCommands drops the PID column of `docker top -o pid,comm`.
func topCommands(out string) string {
	var cmds []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			cmds = append(cmds, f[1])
		} else {
			cmds = append(cmds, line)
		}
	}
	return strings.Join(cmds, " ")
}
