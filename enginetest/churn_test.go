//go:build enginetest && linux

package enginetest

import (
	"strings"
	"testing"
	"time"

	"github.com/ctrkit/libcontainerd/containerdtest"
)

// scenarioChurn: short-lived containers are started one after another
// while containerd is SIGKILLed and restarted twice, so that exits, deletes
// and starts hit it while it is down. Afterwards no container may stay
// running, and once everything is removed and dockerd is shut down, no shim
// may be left (dockerd's deletes that failed during an outage must have
// been completed).
func scenarioChurn(t *testing.T, e *env, r *result) {
	ctrd := e.containerd()
	d := e.newDockerd(ctrd)
	d.start()
	d.importImage()

	// Three clients, containers living a second: several are alive at
	// every kill.
	const clients = 3
	stop := make(chan struct{})
	type counts struct{ ok, failed int }
	done := make(chan counts, clients)
	for i := 0; i < clients; i++ {
		go func() {
			var c counts
			for {
				select {
				case <-stop:
					done <- c
					return
				default:
				}
				if _, code, _ := d.docker("run", "-d", "--network", "none", "--label", "lcd-churn=1", image, "sleep", "1"); code == 0 {
					c.ok++
				} else {
					c.failed++
				}
			}
		}()
	}
	// The intervals only shape the load: containers start, exit and are
	// deleted before, during and after each outage.
	for i := 0; i < 2; i++ {
		<-time.After(5 * time.Second)
		if err := ctrd.kill(); err != nil {
			close(stop)
			t.Fatal(err)
		}
		<-time.After(time.Second)
		if err := ctrd.start(); err != nil {
			close(stop)
			t.Fatal(err)
		}
	}
	<-time.After(3 * time.Second)
	close(stop)
	var c counts
	for i := 0; i < clients; i++ {
		ci := <-done
		c.ok += ci.ok
		c.failed += ci.failed
	}
	r.record("docker run -d: started, failed (during outages)", "%d, %d", c.ok, c.failed)

	var stuck []string
	_ = poll(20*time.Second, func() (bool, error) {
		out, _, _ := d.docker("ps", "-q", "--filter", "label=lcd-churn=1", "--filter", "status=running")
		stuck = strings.Fields(out)
		return len(stuck) == 0, nil
	})
	r.require("containers still shown running 20 s after the last outage", len(stuck) == 0, "0", "%d", len(stuck))

	e.checkExitFilter(r, d)
	ids, _, _ := d.docker("ps", "-aq")
	if ids != "" {
		_, _, _ = d.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	left, _, _ := d.docker("ps", "-aq")
	r.same("containers left after docker rm -f", "%d", len(strings.Fields(left)))
	stopErr := d.stop()
	r.require("dockerd shutdown", stopErr == nil, "clean exit", "%s", errText(stopErr))
	checkShims(t, r, ctrd, containerdtest.ShimsUnder(e.dir))
}
