// Package enginetest runs dockerd v28.5.2 twice, as moby builds it ("stock")
// and with its libcontainerd packages forwarded to this module ("ours"), and
// compares what the Docker API shows: die events, restart counts, states,
// exit codes and the everyday commands, on containerd 2.4 and Debian's 1.6.
//
// build.sh makes the two binaries (see its header for the exact rewrite);
// the test driver is behind the enginetest build tag because it needs root,
// the docker CLI, both containerd daemons and a few minutes:
//
//	make engine-test
//
// or, after enginetest/build.sh,
//
//	go test -tags enginetest -count=1 -v ./enginetest
//
// ENGINE_CONTAINERD selects the daemons (default "v2,debian"), ENGINE_REPORT
// where the side-by-side table is written (default
// .tools/engine/report.md). Every process, mount, cgroup and directory the
// driver makes lives under /tmp/lcd-engine-* and the cgroup parent of the
// same name, and is removed at the end, also on failure. The results are in
// docs/engine.md.
package enginetest
