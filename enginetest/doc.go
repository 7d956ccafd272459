// Package enginetest runs two dockerd engines, dockerd v28.5.2 and the v29
// line (moby's v2 module, github.com/moby/moby/v2), each twice: as moby
// builds it ("stock") and with its libcontainerd packages forwarded to this
// module ("ours"), and compares what the Docker API shows: die events,
// restart counts, states, exit codes, health, OOM kills and the everyday
// commands, on containerd 2.4 and Debian's 1.6. On v29 it also reads
// dockerd's log for exits its own filter dropped (v29 asks Task.Status
// before it accepts an exit).
//
// build.sh makes the four binaries (see its header for the exact rewrite);
// the test driver is behind the enginetest build tag because it needs root,
// the docker CLI, both containerd daemons and a quarter of an hour:
//
//	make engine-test
//
// or, after enginetest/build.sh,
//
//	go test -tags enginetest -count=1 -v ./enginetest
//
// ENGINE_DOCKERD selects the engines (default "v28,v29"), ENGINE_CONTAINERD
// the daemons (default "v2,debian"), ENGINE_REPORT where the side-by-side
// table is written (default .tools/engine/report.md). One file holds each
// scenario; the two builds of a scenario run side by side. Every process,
// mount, cgroup and directory the driver makes lives under
// /tmp/lcd-engine-* and the cgroup parent of the same name, and is removed
// at the end, also on failure. The results are in docs/engine.md.
package enginetest
