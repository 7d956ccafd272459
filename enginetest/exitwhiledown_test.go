//go:build enginetest && linux

package enginetest

import (
	"os"
	"path/filepath"
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
		if liveRestore {
			d.must("run", "-d", "--name", oomLost, "--network", "none", "--memory", "32m", "-v", e.sig+":/s", image, "sh", "-c", oomScript)
			d.waitRunning(oomLost)
		}

		if sig == syscall.SIGKILL {
			d.kill()
		} else if err := d.stop(); err != nil {
			t.Fatalf("stop dockerd: %v", err)
		}
		e.signal(names...)
		if liveRestore {
			e.signal(oomLost)
			if err := poll(30*time.Second, func() (bool, error) {
				_, err := os.Stat(filepath.Join(e.sig, oomLost+"-done"))
				return err == nil, nil
			}); err != nil {
				t.Fatalf("%s: no OOM kill while dockerd was down: %v", oomLost, err)
			}
		}
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
		if liveRestore {
			oomLostObservations(r, d, since)
		}
		e.checkExitFilter(r, d)
	}
}

// oomLost is a container whose memory cgroup records an OOM kill made
// while dockerd was down: containerd published its TaskOOM to nobody.
// When the container is later killed (137), ours delivers EventOOM before
// the exit, as it finds the kill in the cgroup; stock cannot know.
const oomLost = "oom-lost"

// oomScript waits for /s/oom-lost, then runs a child that allocates until
// the kernel OOM-kills it (the biggest process of the cgroup), then says so
// in /s/oom-lost-done and sleeps.
const oomScript = "while [ ! -e /s/oom-lost ]; do sleep 0.05; done; rm -f /s/oom-lost; " +
	"sh -c 'x=a; while :; do x=$x$x; done'; touch /s/oom-lost-done; exec sleep 100000"

func oomLostObservations(r *result, d *dockerd, since time.Time) {
	st, _, _ := d.docker("inspect", "-f", "{{.State.Status}} oom={{.State.OOMKilled}}", oomLost)
	r.same(oomLost+": after the restart", "%s", st)
	_, code, _ := d.docker("kill", oomLost)
	out, _, _ := d.docker("wait", oomLost)
	st, _, _ = d.docker("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}", oomLost)
	want := "exited exit=137 oom=true"
	r.require(oomLost+": docker kill, wait, then state", code == 0 && out == "137" && st == want, want,
		"exit %d, wait %s, then %s", code, out, st)
	var dies map[string][]string
	_ = poll(10*time.Second, func() (bool, error) {
		dies = d.dies(since)
		return len(dies[oomLost]) > 0, nil
	})
	r.same(oomLost+": die events", "%s", dieSummary(dies[oomLost]))
}
