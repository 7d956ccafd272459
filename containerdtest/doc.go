// Package containerdtest runs private containerd daemons for integration
// tests of programs that drive containerd, such as container engines built
// on libcontainerd.
//
// A daemon started here has its own root, state and socket under one
// temporary directory, so tests never touch the host's containerd and can
// kill or restart theirs at will. Each test gets a namespace of its own, a
// busybox root filesystem and an OCI spec that runs a command in it. When
// the daemon is closed, every shim it started is killed and every runc
// container, cgroup and mount it left is removed, also after a test that
// failed halfway.
//
// One daemon per test, for tests that kill or restart it:
//
//	func TestEngineSurvivesContainerdRestart(t *testing.T) {
//		d := containerdtest.New(t, containerdtest.Config{})
//		ctx, ns := d.Namespace(t)
//		cli := d.Client(t)
//		spec := d.Spec(t, ctx, "c1", []string{"sleep", "1"})
//		... // create and start c1 through your engine
//		if err := d.Restart(ctx); err != nil {
//			t.Fatal(err)
//		}
//		... // your engine sees c1 exit
//	}
//
// One daemon shared by the tests of a package, for everything else:
//
//	var ctrd containerdtest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		if err := ctrd.Close(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			code = 1
//		}
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		d := ctrd.Daemon(t)
//		ctx, ns := d.Namespace(t)
//		...
//	}
//
// # Where tests can run
//
// containerd and runc need Linux and root. Where they cannot run (another
// operating system, not root, no containerd, shim or runc), New and
// Shared.Daemon skip the test with the reason. Set
// LIBCONTAINERD_REQUIRE_INTEGRATION=1 in CI to make that a failure instead:
// a CI machine that silently skips every integration test proves nothing.
// The package builds on every platform containerd's client builds on, so
// that test files using it compile everywhere.
//
// # Which containerd
//
// Config.BinDir names the directory holding the containerd and
// containerd-shim-runc-v2 binaries. Left empty, it is
// $LIBCONTAINERD_TEST_BIN_DIR, or else the directory of the containerd found
// in PATH (a distribution's package, for example). containerd 1.6 and 2.x
// both work. The daemon and its shims run with PATH set to BinDir followed
// by the test's own PATH, so runc, and the criu that runc runs to
// checkpoint, are found there: put a wrapper first in PATH to replace
// either.
package containerdtest
