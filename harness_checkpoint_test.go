//go:build linux

package libcontainerd

// The checkpoint tests' harness: containers of the fake runtime (runc
// except for checkpoint and restore, see internal/testutil/fakeruntime),
// counters that real CRIU dumps and restores, and the checks of what a
// checkpoint leaves behind.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

// checkpointArgs is a container that says it started and then waits.
var checkpointArgs = []string{"sh", "-c", "echo started; exec sleep 600"}

// newCheckpointContainer creates container id running args with the fake
// runtime as runc, recording checkpoint files into rec.
func (tc *testClient) newCheckpointContainer(t testing.TB, id, rec string, args []string) types.Container {
	t.Helper()
	spec := tc.spec(t, id, args, oci.WithAnnotations(map[string]string{testutil.FakeRuntimeRecordAnnotation: rec}))
	ctr, err := tc.NewContainer(tc.ctx, id, spec, runcShim, &runcoptions.Options{BinaryName: tc.daemon.FakeRuntime(t)})
	if err != nil {
		t.Fatalf("NewContainer(%s): %v", id, err)
	}
	return ctr
}

// startCheckpointable opens a parallel test with a running task of the
// fake runtime, which records in rec what it is asked to checkpoint and
// restore.
func startCheckpointable(t *testing.T) (tc *testClient, id, rec string, ctr types.Container, task types.Task) {
	t.Parallel()
	tc = newTestClient(t)
	id, rec = testutil.ID(t), t.TempDir()
	ctr = tc.newCheckpointContainer(t, id, rec, checkpointArgs)
	task, _ = tc.startCheckpointTask(t, ctr, "")
	return tc, id, rec, ctr, task
}

// startCheckpointTask creates and starts ctr's task from checkpointDir ("" for none)
// and waits for its "started" line.
func (tc *testClient) startCheckpointTask(t testing.TB, ctr types.Container, checkpointDir string) (types.Task, *capture) {
	t.Helper()
	out := &capture{}
	task, err := ctr.NewTask(tc.ctx, checkpointDir, false, out.attach)
	if err != nil {
		t.Fatalf("NewTask(%q): %v", checkpointDir, err)
	}
	if err := task.Start(tc.ctx); err != nil {
		t.Fatal(err)
	}
	out.waitOutput(t, "started\n")
	return task, out
}

// removeCheckpointTask kills and deletes task, then deletes ctr.
func (tc *testClient) removeCheckpointTask(t testing.TB, ctr types.Container, task types.Task) {
	t.Helper()
	if task != nil {
		if err := task.ForceDelete(tc.ctx); err != nil {
			t.Errorf("force delete task: %v", err)
		}
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Errorf("delete container: %v", err)
	}
}

// checkpointFile describes one entry of a tree for comparisons.
type checkpointFile struct {
	Mode   fs.FileMode
	SHA256 string
}

// checkpointTree lists every entry below dir (not dir itself) with its type,
// permissions and content digest.
func checkpointTree(t testing.TB, dir string) map[string]checkpointFile {
	t.Helper()
	tree := map[string]checkpointFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		s := checkpointFile{Mode: info.Mode().Type() | info.Mode().Perm()}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			s.SHA256 = hex.EncodeToString(sum[:])
		}
		tree[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return tree
}

func sameCheckpointTree(t testing.TB, what string, got, want map[string]checkpointFile) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: nothing to compare with", what)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// assertNoCheckpointLeftovers checks that the namespace holds no image,
// content, ingest or lease: the test namespaces are private, so any is
// left by a checkpoint upload or download.
func (tc *testClient) assertNoCheckpointLeftovers(t testing.TB) {
	t.Helper()
	cli := tc.c8dClient
	imgs, err := cli.ImageService().List(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		t.Errorf("image left: %s (%s)", img.Name, img.Target.Digest)
	}
	if err := cli.ContentStore().Walk(tc.ctx, func(info content.Info) error {
		t.Errorf("content left: %s (%d bytes, labels %v)", info.Digest, info.Size, info.Labels)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	statuses, err := cli.ContentStore().ListStatuses(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statuses {
		t.Errorf("ingest left: %s (%d bytes)", st.Ref, st.Offset)
	}
	ls, err := cli.LeasesService().List(tc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		t.Errorf("lease left: %s %v", l.ID, l.Labels)
	}
}

// fakeCheckpointInfo reads the description the fake runtime put into a
// checkpoint.
func fakeCheckpointInfo(t testing.TB, dir string) (id string, leaveRunning bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "fake-checkpoint.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ID           string `json:"id"`
		LeaveRunning bool   `json:"leaveRunning"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.ID, v.LeaveRunning
}

// newUploadTest opens the tests of checkpoint uploads: a parallel test's
// client and a checkpoint directory to upload.
func newUploadTest(t *testing.T) (*testClient, string) {
	t.Parallel()
	return newTestClient(t), writeFakeCheckpoint(t)
}

// writeFakeCheckpoint makes a checkpoint directory the fake runtime
// accepts, without a checkpoint.
func writeFakeCheckpoint(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"fake-checkpoint.json": `{"id": "none", "token": "` + t.Name() + `"}`,
		"pages-1.img":          strings.Repeat("page", 4096),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// asNobodyFS runs f on an OS thread of its own whose file system user is
// nobody: the kernel then drops the capabilities that let root ignore file
// permissions, for that thread only. The thread is discarded afterwards.
// It reports false if the thread still bypasses permissions.
func asNobodyFS(t testing.TB, f func()) bool {
	t.Helper()
	probe := t.TempDir()
	if err := os.Chmod(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	ok := make(chan bool)
	go func() {
		// Never unlocked: the runtime ends the thread with the goroutine.
		runtime.LockOSThread()
		unix.Setfsgid(65534)
		unix.Setfsuid(65534)
		if _, err := os.ReadDir(probe); !errors.Is(err, fs.ErrPermission) {
			ok <- false
			return
		}
		f()
		ok <- true
	}()
	return <-ok
}

// makeTraversable makes base, a t.TempDir(), and the test's temporary
// root above it searchable by anyone, for asNobodyFS.
func makeTraversable(t testing.TB, base string) {
	t.Helper()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// criuCheck runs `criu check`, which fails where CRIU cannot dump.
func criuCheck() (string, error) {
	criu, err := exec.LookPath("criu")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(criu, "check").CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// The tests in this file checkpoint and restore with real runc and CRIU:
// the CRIU that `criu check` passes with, first in PATH (`make tools`
// provisions one when the machine's own does not work; the harness hands
// the PATH to containerd, whose runc looks criu up in it).

// counterScript counts on stdout from a shell variable, one line every
// 50 ms, and echoes what it reads on stdin. A restored copy goes on from
// where the dump left the variable; a restart would begin at 0.
const counterScript = `i=0
while :; do echo "count $i"; i=$((i+1)); sleep 0.05; done &
while read -r line; do echo "echo $line"; done
wait`

var criuCheckOnce = sync.OnceValues(criuCheck)

// requireCRIU skips t unless `criu check` passes; when integration tests
// are required, that is a failure: CI proves checkpoints with real CRIU.
// Whether that CRIU really dumps is what `make tools` self-tests; here a
// dump that hangs fails at criuStep's deadline.
func requireCRIU(t *testing.T) {
	t.Helper()
	out, err := criuCheckOnce()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("real CRIU cannot checkpoint here (`make tools` self-tests and provisions one): criu check: %v: %s", err, out)
	if os.Getenv(testutil.EnvRequireIntegration) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// counterTask is a container running counterScript, its task and output.
type counterTask struct {
	id   string
	ctr  types.Container
	task types.Task
	out  *capture
}

// startCounter creates container id running counterScript, with stdin,
// and starts its task from checkpointDir ("" for a fresh start). The task
// is killed and everything deleted when t ends, unless the test did.
func (tc *testClient) startCounter(t *testing.T, id, checkpointDir string, opts ...oci.SpecOpts) *counterTask {
	t.Helper()
	ct := &counterTask{id: id, out: &capture{}}
	ct.ctr = tc.newContainer(t, id, []string{"sh", "-c", counterScript}, opts...)
	tc.startCounterTask(t, ct, checkpointDir)
	return ct
}

// startCounterTask creates and starts ct's task from checkpointDir ("" for
// a fresh start); a restore runs under criuStep's deadline.
func (tc *testClient) startCounterTask(t *testing.T, ct *counterTask, checkpointDir string) {
	t.Helper()
	start := func(ctx context.Context) error {
		task, err := ct.ctr.NewTask(ctx, checkpointDir, true, ct.out.attach)
		if err != nil {
			_ = ct.ctr.Delete(tc.ctx)
			return fmt.Errorf("NewTask(%s, %q): %w", ct.id, checkpointDir, err)
		}
		ct.task = task
		t.Cleanup(func() { tc.removeCounter(t, ct) })
		if err := task.Start(ctx); err != nil {
			return fmt.Errorf("Start(%s): %w", ct.id, err)
		}
		return nil
	}
	var err error
	if checkpointDir == "" {
		err = start(tc.ctx)
	} else {
		err = tc.criuStep(t, "restore", ct.id, start)
	}
	if err != nil {
		t.Fatalf("%v%s", err, criuLog(err))
	}
}

// removeCounter kills and deletes ct's task, if it still has one, and its
// container; what is gone already is fine.
func (tc *testClient) removeCounter(t testing.TB, ct *counterTask) {
	t.Helper()
	switch {
	case ct.task != nil:
		tc.killAndDelete(t, ct.ctr, ct.task)
	case ct.ctr != nil:
		if err := ct.ctr.Delete(tc.ctx); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("delete container %s: %v", ct.id, err)
		}
	}
	ct.task, ct.ctr = nil, nil
}

// stdout returns what ct printed so far.
func (ct *counterTask) stdout() string {
	ct.out.mu.Lock()
	defer ct.out.mu.Unlock()
	return ct.out.stdout.String()
}

var countLine = regexp.MustCompile(`(?m)^count (\d+)$`)

// counts returns the counter values in out, in order.
func counts(out string) []int {
	var n []int
	for _, m := range countLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n = append(n, v)
	}
	return n
}

// lastCount returns the last counter value ct printed.
func (ct *counterTask) lastCount(t testing.TB) int {
	t.Helper()
	n := counts(ct.stdout())
	if len(n) == 0 {
		t.Fatalf("%s printed no count: %q", ct.id, ct.stdout())
	}
	return n[len(n)-1]
}

// startCounting opens a test with a counter container named after it,
// once the counter has printed n values.
func startCounting(t *testing.T, n int) (*testClient, *counterTask) {
	t.Helper()
	tc := newTestClient(t)
	ct := tc.startCounter(t, testutil.ID(t), "")
	ct.waitCount(t, 0, n)
	return tc, ct
}

// waitCount waits until ct has printed at least n counter values after
// the first offset bytes of its output, and returns them.
func (ct *counterTask) waitCount(t testing.TB, offset, n int) []int {
	t.Helper()
	var got []int
	eventually(t, fmt.Sprintf("%d counter values of %s after byte %d", n, ct.id, offset), func() (bool, string) {
		out := ct.stdout()
		got = counts(out[offset:])
		return len(got) >= n, fmt.Sprintf("stdout %q", out)
	})
	return got
}

// roundTrip writes a line to ct's stdin and waits for its echo.
func (ct *counterTask) roundTrip(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(ct.out.stdin, line+"\n"); err != nil {
		t.Fatalf("write stdin of %s: %v", ct.id, err)
	}
	ct.out.waitOutput(t, "echo "+line+"\n")
}

// criuDumpLog matches where containerd's shim says CRIU's log is.
var criuDumpLog = regexp.MustCompile(`path= (\S+\.log)`)

// checkpoint checkpoints ct into dir and fails t with CRIU's log if it
// fails.
func (tc *testClient) checkpoint(t testing.TB, ct *counterTask, dir string, exit bool) {
	t.Helper()
	err := tc.criuStep(t, "dump", ct.id, func(ctx context.Context) error {
		return ct.task.CreateCheckpoint(ctx, dir, exit)
	})
	if err != nil {
		t.Fatalf("checkpoint %s (exit=%v): %v%s", ct.id, exit, err, criuLog(err))
	}
}

// checkpointImages checkpoints ct into a new directory, which it returns
// once it holds CRIU's images and containerd holds nothing of the
// checkpoint.
func (tc *testClient) checkpointImages(t testing.TB, ct *counterTask, exit bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "checkpoint")
	tc.checkpoint(t, ct, dir, exit)
	assertCRIUImages(t, dir)
	tc.assertNoCheckpointLeftovers(t)
	return dir
}

// criuLog returns the errors in the CRIU log that an error of runc
// points to, if any.
func criuLog(err error) string {
	if err == nil {
		return ""
	}
	m := criuDumpLog.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	b, rerr := os.ReadFile(m[1])
	if rerr != nil {
		return "\n" + rerr.Error()
	}
	var errs []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Error") {
			errs = append(errs, line)
		}
	}
	return "\nCRIU's errors (" + m[1] + "):\n" + strings.Join(errs, "\n")
}

// assertCRIUImages checks that dir holds what CRIU dumped, and that the
// download left nothing next to it.
func assertCRIUImages(t testing.TB, dir string) {
	t.Helper()
	for _, name := range []string{"inventory.img", "pstree.img", "descriptors.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("checkpoint dir has no %s: %v (has %v)", name, err, dirEntries(t, dir))
		}
	}
	if left := dirEntries(t, filepath.Dir(dir)); len(left) != 1 {
		t.Fatalf("next to the checkpoint dir: %v, want only %s", left, filepath.Base(dir))
	}
}

// assertRestoredEvents checks the Backend's events of a restored
// container: create and start of its init process, the start with the
// restored pid, and no exit yet.
func (tc *testClient) assertRestoredEvents(t testing.TB, ct *counterTask) {
	t.Helper()
	tc.backend.waitEvent(t, ct.id, types.EventCreate, ct.id)
	if start := tc.backend.waitEvent(t, ct.id, types.EventStart, ct.id); start.Pid != ct.task.Pid() {
		t.Fatalf("start event %+v, want pid %d", start, ct.task.Pid())
	}
	if exits := exitsOfPid(tc.backend.of(ct.id), ct.id, ct.task.Pid()); len(exits) != 0 {
		t.Fatalf("exit events of the running %s: %v", ct.id, exits)
	}
}

// stopAndCheckExit kills ct, deletes it and checks that its exit reached
// the Backend exactly once.
func (tc *testClient) stopAndCheckExit(t testing.TB, ct *counterTask) {
	t.Helper()
	pid := ct.task.Pid()
	tc.removeCounter(t, ct)
	if exits := exitsOfPid(tc.backend.of(ct.id), ct.id, pid); len(exits) != 1 {
		t.Fatalf("exit events of %s pid %d: %v, want one", ct.id, pid, exits)
	}
}

// assertNothingLeft checks that the client's state dir is empty (no
// bundle, no FIFO) and that containerd holds no checkpoint image, lease
// or content.
func (tc *testClient) assertNothingLeft(t testing.TB) {
	t.Helper()
	if left := dirEntries(t, tc.stateDir); len(left) != 0 {
		t.Errorf("left in the state dir: %v", left)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// assertRefused checkpoints task, into a new and into an existing empty
// directory, expecting FailedPrecondition each time, nothing left in or
// next to the directory or in containerd, and the task still running;
// then it calls check, if set, with the error.
func (tc *testClient) assertRefused(t *testing.T, task types.Task, check func(error)) {
	t.Helper()
	for _, exists := range []bool{false, true} {
		base := t.TempDir()
		dir := filepath.Join(base, "checkpoint")
		if exists {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		err := tc.criuStep(t, "refused dump", testutil.ID(t), func(ctx context.Context) error {
			return task.CreateCheckpoint(ctx, dir, true)
		})
		if wantClass(t, "refused checkpoint", err, "FailedPrecondition"); t.Failed() {
			t.Fatalf("refused checkpoint of %s%s", dir, criuLog(err))
		}
		if exists {
			if left := dirEntries(t, dir); len(left) != 0 {
				t.Fatalf("left in the checkpoint dir: %v", left)
			}
		} else if left := dirEntries(t, base); len(left) != 0 {
			t.Fatalf("left next to the checkpoint dir: %v", left)
		}
		if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
			t.Fatalf("task status after the refused checkpoint: %+v, %v; want running", st, err)
		}
		tc.assertNoCheckpointLeftovers(t)
		if check != nil {
			check(err)
		}
	}
}

// eachCheckpointMode runs test, in parallel, once with a checkpoint that
// exits the task and once with one that leaves it running.
func eachCheckpointMode(t *testing.T, test func(t *testing.T, exit bool)) {
	t.Parallel()
	requireCRIU(t)
	for _, exit := range []bool{true, false} {
		t.Run("exit="+strconv.FormatBool(exit), func(t *testing.T) {
			t.Parallel()
			test(t, exit)
		})
	}
}

// checkpointedCounter runs a counter in a parallel test of its own,
// checkpoints it with exit into a directory, and removes it once it has
// exited. It returns the test client, the checkpoint directory and the
// last count the counter printed.
func checkpointedCounter(t *testing.T) (tc *testClient, dir string, last int) {
	t.Helper()
	t.Parallel()
	requireCRIU(t)
	tc, orig := startCounting(t, 3)
	dir = filepath.Join(t.TempDir(), "checkpoint")
	tc.checkpoint(t, orig, dir, true)
	tc.backend.waitEvent(t, orig.id, types.EventExit, orig.id)
	orig.out.wait(t)
	last = orig.lastCount(t)
	tc.removeCounter(t, orig)
	return tc, dir, last
}

// criuStepTimeout bounds each CRIU step of the tests (a dump in
// CreateCheckpoint, a restore in NewTask and Start): a good one takes well
// under a second here (`make tools` self-test: 0.05-0.1 s; in these tests,
// under -race and in parallel, at most about 1 s), while a CRIU that hangs
// would hang the test for minutes. LIBCONTAINERD_CRIU_TIMEOUT overrides it.
var criuStepTimeout = sync.OnceValue(func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LIBCONTAINERD_CRIU_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 20 * time.Second
})

// criuStepGrace is how long after criuStepTimeout the step's own context
// lasts: by then criuStep has read the hung step's CRIU log (the shim
// removes its dump's work directory once runc returns, which it does when
// the context ends) and killed CRIU.
const criuStepGrace = 10 * time.Second

// criuStep runs step, the CRIU step what (a dump, a restore) of container
// id, logs how long it took and returns its error. When criuStepTimeout
// passes first, it reads the end of the step's CRIU log, kills the CRIU
// processes below the daemon's shims (a hung dump holds the container
// frozen and traced), waits for the step to return and fails t with the
// CRIU version and that log: never a skip.
func (tc *testClient) criuStep(t testing.TB, what, id string, step func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(tc.ctx, criuStepTimeout()+criuStepGrace)
	defer cancel()
	var diagnosis string
	hung := make(chan struct{})
	watchdog := time.AfterFunc(criuStepTimeout(), func() {
		defer close(hung)
		diagnosis = criuStepLog(tc.daemon.Dir, id)
		diagnosis = fmt.Sprintf("killed criu pids %v\n%s", tc.daemon.KillCRIU(tc.ns), diagnosis)
	})
	start := time.Now()
	err := step(ctx)
	took := time.Since(start)
	if watchdog.Stop() {
		line := fmt.Sprintf("criu %s of %s: %v (%s)", what, id, took.Round(time.Millisecond), criuVersion())
		t.Log(line)
		reportCRIUStep(t, line)
		return err
	}
	<-hung
	t.Fatalf("criu %s of %s did not end within %v (%s), returned after %v: %v\n%s",
		what, id, criuStepTimeout(), criuVersion(), took.Round(time.Millisecond), err, diagnosis)
	return err
}

// reportCRIUStep appends line to the file LIBCONTAINERD_CRIU_STEPS names,
// if any: `make test` prints it after the run, so that each CRIU step's
// time shows in CI, where go test keeps the logs of passing tests to
// itself.
func reportCRIUStep(t testing.TB, line string) {
	path := os.Getenv("LIBCONTAINERD_CRIU_STEPS")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("CRIU step report: %v", err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s: %s\n", t.Name(), line); err != nil {
		t.Errorf("CRIU step report: %v", err)
	}
}

// criuVersion says which criu the daemon's runc runs: the first in PATH,
// which the harness hands to containerd.
var criuVersion = sync.OnceValue(func() string {
	criu, err := exec.LookPath("criu")
	if err != nil {
		return "no criu in PATH"
	}
	out, err := exec.Command(criu, "--version").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s --version: %v", criu, err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return fmt.Sprintf("CRIU %s at %s", strings.TrimSpace(strings.TrimPrefix(v, "Version:")), criu)
})

// criuStepLog returns the last lines of the newest CRIU log (dump.log,
// restore.log) of container id under dir, the daemon's directory, where
// the shim has runc keep them.
func criuStepLog(dir, id string) string {
	var newest string
	var newestTime time.Time
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (d.Name() != "dump.log" && d.Name() != "restore.log") || !strings.Contains(p, id) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = p, fi.ModTime()
		}
		return nil
	})
	if newest == "" {
		return "no CRIU log of " + id + " under " + dir
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "the end of " + newest + ":\n" + strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// standInCRIUs are criu programs the tests put first in runc's PATH in
// place of CRIU (fault injection), by what they do when runc runs them.
// The hanging one keeps a command line that names criu, so that the
// harness finds it below the shims (containerdtest.CRIU), as it finds a
// real one.
var standInCRIUs = map[string]string{
	"refuses": "#!/bin/sh\necho 'stand-in criu: refusing' >&2\nexit 1\n",
	"dies":    "#!/bin/sh\nkill -KILL $$\n",
	"hangs":   "#!/bin/bash\nexec -a \"$0\" sleep 3600\n",
}

// standInRunc writes a runc for the runc shim's BinaryName that runs the
// real runc with a directory holding only the stand-in criu of behaviour
// first in its PATH, and returns its path.
func standInRunc(t testing.TB, behaviour string) string {
	t.Helper()
	script, ok := standInCRIUs[behaviour]
	if !ok {
		t.Fatalf("no stand-in criu %q", behaviour)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	criuDir := filepath.Join(dir, "criu-bin")
	if err := os.Mkdir(criuDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(criuDir, "criu"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "runc")
	content := fmt.Sprintf("#!/bin/sh\nPATH=%s:$PATH\nexport PATH\nexec %s \"$@\"\n", criuDir, runc)
	if err := os.WriteFile(wrapper, []byte(content), 0o700); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// startStandInCounter starts container id running counterScript, whose
// runc runs the stand-in criu of behaviour, once the counter has printed
// a few values. It is removed when t ends, unless the test did.
func (tc *testClient) startStandInCounter(t *testing.T, id, behaviour string) *counterTask {
	t.Helper()
	ct := &counterTask{id: id, out: &capture{}}
	spec := tc.spec(t, id, []string{"sh", "-c", counterScript})
	ctr, err := tc.NewContainer(tc.ctx, id, spec, runcShim, &runcoptions.Options{BinaryName: standInRunc(t, behaviour)})
	if err != nil {
		t.Fatalf("NewContainer(%s): %v", id, err)
	}
	ct.ctr = ctr
	tc.startCounterTask(t, ct, "")
	ct.waitCount(t, 0, 3)
	return ct
}

// assertCounting checks that ct's task is running and counting.
func (tc *testClient) assertCounting(t testing.TB, ct *counterTask) {
	t.Helper()
	if st, err := ct.task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
		t.Fatalf("status of %s: %+v, %v; want running", ct.id, st, err)
	}
	ct.waitCount(t, len(ct.stdout()), 2)
}

// countEvents returns how many events of type et the Backend got for
// container id.
func (tc *testClient) countEvents(id string, et types.EventType) int {
	n := 0
	for _, e := range tc.backend.of(id) {
		if e.Type == et {
			n++
		}
	}
	return n
}
