//go:build enginetest && linux

package enginetest

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// scenarioContainerdCrash: containerd is SIGKILLed, containers exit while it
// is down, and it is started again. Ours must mark every container exited
// (with its real code on containerd 1.6, which keeps exit statuses; 2.4
// deletes them and reports 255); stock is known to leave them running.
// After everything is removed and dockerd shut down cleanly, no shim of
// this containerd may be left.
func scenarioContainerdCrash(t *testing.T, e *env, r *result) {
	ctrd := e.containerd()
	d := e.newDockerd(ctrd)
	d.start()
	d.importImage()
	codes := map[string]int{"crash-3": 3, "crash-4": 4, "crash-5": 5, "crash-6": 6}
	names := []string{"crash-3", "crash-4", "crash-5", "crash-6"}
	var pids []int
	for _, n := range names {
		e.runWaiting(d, n, codes[n])
	}
	d.waitRunning(names...)
	for _, n := range names {
		pids = append(pids, d.containerPid(n))
	}

	if err := ctrd.kill(); err != nil {
		t.Fatal(err)
	}
	e.signal(names...)
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
