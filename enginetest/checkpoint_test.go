//go:build enginetest && linux

package enginetest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
	out, code, _ := d.docker("checkpoint", "create", name, "cp1")
	r.same("checkpoint create", "exit %d: %s, then %s", code, out, strings.Fields(d.state(name))[0])
	atCheckpoint := lastCount()
	out, code, _ = d.docker("checkpoint", "ls", name)
	r.same("checkpoint ls", "exit %d: %s", code, strings.Join(strings.Fields(out), " "))
	// Required rather than compared: on containerd 1.6 stock's restore
	// fails (moby's copy does not tolerate the checkpoint blob already being
	// in the content store, which the module's upload does).
	out, code, _ = d.docker("start", "--checkpoint", "cp1", name)
	st := strings.Fields(d.state(name))[0]
	r.require("start --checkpoint", code == 0 && st == "running", "exit 0, then running", "exit %d: %s, then %s", code, out, st)
	err = poll(30*time.Second, func() (bool, error) { return lastCount() > atCheckpoint+2, nil })
	logs, _, _ := d.docker("logs", name)
	restarts := strings.Count("\n"+logs+"\n", "\n1\n")
	r.require("counter after restore", err == nil && restarts == 1, "continues, not from 1 again",
		"continues=%t, started from 1 again=%t", err == nil, restarts > 1)
	_, code, _ = d.docker("rm", "-f", name)
	r.same("rm -f", "exit %d", code)
}
