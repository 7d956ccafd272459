//go:build enginetest && linux

package enginetest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// healthRun is how long the healthcheck container of scenarioContainerdCrash
// runs, the containerd outage in its middle.
const healthRun = 60 * time.Second

// scenarioContainerdCrash: containerd is SIGKILLed, containers exit while it
// is down, and it is started again. Every exit after the restart is one the
// module synthesizes (2.4 deletes the tasks and their statuses: 255; 1.6
// keeps them: reconciliation finds the real code). Ours must mark every
// container exited and fire each restart policy as for an ordinary exit;
// v29's own exit filter, which asks Task.Status, must drop none of them;
// stock is known to leave them running. A healthcheck container (probe
// every second, every third failing) runs for a minute through the outage
// and must end as stock's. After everything is removed and dockerd shut
// down cleanly, no shim of this containerd may be left.
func scenarioContainerdCrash(t *testing.T, e *env, r *result) {
	ctrd := e.containerd()
	d := e.newDockerd(ctrd)
	d.start()
	d.importImage()

	healthStart := time.Now()
	d.must("run", "-d", "--name", "health", "--network", "none",
		"--health-cmd", "test $(( $(date +%s) % 3 )) -ne 0",
		"--health-interval", "1s", "--health-timeout", "5s", "--health-retries", "3",
		image, "sleep", "100000")

	codes := map[string]int{"crash-3": 3, "crash-4": 4, "crash-5": 5, "crash-6": 6}
	names := []string{"crash-3", "crash-4", "crash-5", "crash-6"}
	for _, n := range names {
		e.runWaiting(d, n, codes[n])
	}
	policies := []struct {
		name string
		args []string
		want string // the state an ordinary exit 3 leads to
	}{
		{"crash-always", []string{"--restart=always"}, "running restarts=1"},
		{"crash-on-failure", []string{"--restart=on-failure"}, "running restarts=1"},
		{"crash-rm", []string{"--rm"}, "removed"},
	}
	var policyNames []string
	for _, p := range policies {
		e.runWaiting(d, p.name, 3, p.args...)
		policyNames = append(policyNames, p.name)
	}
	all := append(append([]string{}, names...), policyNames...)
	d.waitRunning(append([]string{"health"}, all...)...)
	var pids []int
	for _, n := range all {
		pids = append(pids, d.containerPid(n))
	}
	healthPid := d.containerPid("health")
	// Some probes before the outage.
	time.Sleep(5 * time.Second)

	if err := ctrd.kill(); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	e.signal(all...)
	if err := waitGone(30*time.Second, pids...); err != nil {
		t.Fatalf("containers did not exit while containerd was down: %v", err)
	}
	restarted := time.Now()
	if err := ctrd.start(); err != nil {
		t.Fatal(err)
	}
	// Stock never gets there; 15 s is ample for ours (measured: < 1 s).
	err := poll(15*time.Second, func() (bool, error) {
		for _, n := range names {
			if out, _, _ := d.docker("inspect", "-f", "{{.State.Running}}", n); out == "true" {
				return false, nil
			}
		}
		return true, nil
	})
	if err == nil {
		r.record("time until no container shows running", "%.1f s", time.Since(restarted).Seconds())
	} else {
		r.record("time until no container shows running", "not within 15 s")
	}
	running := 0
	for _, n := range names {
		out, _, _ := d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n)
		f := strings.Fields(out)
		status, code := "?", "?"
		if len(f) == 2 {
			status, code = f[0], f[1]
		}
		if status == "running" {
			running++
		}
		want := strconv.Itoa(codes[n])
		if e.flavor.name == "debian" {
			r.require(n+": state, exit code", status == "exited" && code == want, "exited "+want, "%s %s", status, code)
		} else {
			// containerd 2.4 deletes the exit status of a task that exited
			// while it was down; the library reports 255.
			r.require(n+": state, exit code", status == "exited", "exited (2.4: any code)", "%s %s", status, code)
		}
	}
	r.require("containers still shown running", running == 0, "0", "%d of %d", running, len(names))

	// The restart policies: one die each, then what an ordinary exit leads
	// to (a restart, or the removal of --rm).
	states, dies, _ := d.settle(since, policyNames, 3*time.Second, 30*time.Second)
	for _, p := range policies {
		st := states[p.name]
		short := st
		if f := strings.Fields(st); len(f) == 3 {
			short = f[0] + " " + f[2]
		}
		r.require(p.name+": die events, then state", len(dies[p.name]) == 1 && short == p.want,
			"1 die, then "+p.want+" (as an ordinary exit)", "%s, then %s", dieSummary(dies[p.name]), st)
	}

	// The healthcheck container runs its minute, then must be as stock's.
	if wait := healthRun - time.Since(healthStart); wait > 0 {
		time.Sleep(wait)
	}
	healthObservations(r, d, "health", healthPid, restarted)

	e.checkExitFilter(r, d)
	ids, _, _ := d.docker("ps", "-aq")
	rmCode := 0
	if ids != "" {
		_, rmCode, _ = d.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	left, _, _ := d.docker("ps", "-aq")
	r.same("docker rm -f of all", "exit %d, %d left", rmCode, len(strings.Fields(left)))
	stopErr := d.stop()
	r.require("dockerd shutdown", stopErr == nil, "clean exit", "%s", errText(stopErr))
	checkShims(t, r, ctrd, containerdtest.ShimsUnder(e.dir))
}

// healthObservations records what a healthcheck container shows after
// running through a containerd restart at restarted: its state and health,
// and whether probes ran, passing and failing, after the restart (each
// probe is an exec; its exec_die event carries the probe's exit code).
func healthObservations(r *result, d *dockerd, name string, pid int, restarted time.Time) {
	st, _, _ := d.docker("inspect", "-f", "{{.State.Status}} restarts={{.RestartCount}} health={{.State.Health.Status}} pid={{.State.Pid}}", name)
	r.same(name+": state after a minute", "%s", strings.Replace(st, fmt.Sprintf("pid=%d", pid), "pid=same", 1))
	out := d.must("events", "--since", unixTime(restarted), "--until", unixTime(time.Now()),
		"--filter", "container="+name, "--filter", "event=exec_die", "--format", "{{.Actor.Attributes.exitCode}}")
	passed, failed := 0, 0
	for _, c := range strings.Fields(out) {
		if c == "0" {
			passed++
		} else {
			failed++
		}
	}
	r.same(name+": probes after the restart, passing and failing", "passing %t, failing %t", passed > 0, failed > 0)
	r.record(name+": probes after the restart (passed, failed)", "%d, %d", passed, failed)
}
