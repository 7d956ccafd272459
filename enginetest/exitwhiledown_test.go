//go:build enginetest && linux

package enginetest

import (
	"syscall"
	"testing"
	"time"
)

// restartScenario: containers with each restart policy (and --rm) exit, with
// code 3, while dockerd is down (stopped with sig); containerd keeps
// running. After dockerd is back, the die events, restart counts and final
// states must be stock's.
func restartScenario(liveRestore bool, sig syscall.Signal) func(*testing.T, *env, *result) {
	return func(t *testing.T, e *env, r *result) {
		ctrd := e.containerd()
		var args []string
		if liveRestore {
			args = append(args, "--live-restore")
		}
		d := e.newDockerd(ctrd, args...)
		d.start()
		d.importImage()
		ctrs := []struct {
			name string
			args []string
		}{
			{"rp-no", []string{"--restart=no"}},
			{"rp-always", []string{"--restart=always"}},
			{"rp-unless-stopped", []string{"--restart=unless-stopped"}},
			{"rp-on-failure", []string{"--restart=on-failure"}},
			{"rp-rm", []string{"--rm"}},
		}
		since := time.Now()
		var names []string
		var pids []int
		for _, c := range ctrs {
			e.runWaiting(d, c.name, 3, c.args...)
			names = append(names, c.name)
		}
		d.waitRunning(names...)
		for _, n := range names {
			pids = append(pids, d.containerPid(n))
		}

		if sig == syscall.SIGKILL {
			d.kill()
		} else if err := d.stop(); err != nil {
			t.Fatalf("stop dockerd: %v", err)
		}
		e.signal(names...)
		if err := waitGone(30*time.Second, pids...); err != nil {
			t.Fatalf("containers did not exit while dockerd was down: %v", err)
		}
		if err := ctrd.waitStopped(30*time.Second, pids...); err != nil {
			t.Fatalf("containerd did not see the containers exit: %v", err)
		}
		d.start()

		states, dies, settled := d.settle(since, names, 3*time.Second, 60*time.Second)
		r.same("settled within 60 s", "%t", settled)
		for _, n := range names {
			r.same(n+": die events", "%s", dieSummary(dies[n]))
			r.same(n+": final state", "%s", states[n])
		}
	}
}
