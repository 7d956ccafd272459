package libcontainerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

// TestCheckpointRoundTrip checkpoints a task run by the fake runtime into a
// directory and restores a task from it: the directory gets exactly what
// the runtime wrote, the restore gets exactly that, the task exits or keeps
// running as asked, and nothing is left in containerd.
func TestCheckpointRoundTrip(t *testing.T) {
	t.Parallel()
	for _, exit := range []bool{true, false} {
		t.Run("exit="+strconv.FormatBool(exit), func(t *testing.T) {
			tc, id, rec, ctr, task := startCheckpointable(t)

			dir := filepath.Join(t.TempDir(), "checkpoint")
			if err := task.CreateCheckpoint(tc.ctx, dir, exit); err != nil {
				t.Fatalf("CreateCheckpoint: %v", err)
			}
			produced := checkpointTree(t, filepath.Join(rec, "checkpoint"))
			sameCheckpointTree(t, "checkpoint dir vs what the runtime wrote", checkpointTree(t, dir), produced)
			if gotID, leaveRunning := fakeCheckpointInfo(t, dir); gotID != id || leaveRunning == exit {
				t.Fatalf("runtime checkpointed %s with leave-running=%v, want %s with %v", gotID, leaveRunning, id, !exit)
			}
			tc.assertNoCheckpointLeftovers(t)

			target, targetRec := ctr, rec
			if exit {
				ev := tc.backend.waitEvent(t, id, types.EventExit, id)
				if ev.Pid != task.Pid() {
					t.Fatalf("exit event %+v, want pid %d", ev, task.Pid())
				}
				if _, err := task.Delete(tc.ctx); err != nil {
					t.Fatal(err)
				}
				task = nil
			} else {
				if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
					t.Fatalf("status after checkpoint without exit: %+v, %v", st, err)
				}
				// Restore a copy next to the original, which keeps running.
				targetRec = t.TempDir()
				target = tc.newCheckpointContainer(t, testutil.ID(t, "restored"), targetRec, checkpointArgs)
			}

			restored, _ := tc.startCheckpointTask(t, target, dir)
			if st, err := restored.Status(tc.ctx); err != nil || st.Status != containerd.Running {
				t.Fatalf("status of restored task: %+v, %v", st, err)
			}
			sameCheckpointTree(t, "restore input vs what the runtime wrote", checkpointTree(t, filepath.Join(targetRec, "restore")), produced)
			tc.assertNoCheckpointLeftovers(t)
			if task != nil {
				if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
					t.Fatalf("status of the original after the restore: %+v, %v", st, err)
				}
				tc.removeCheckpointTask(t, ctr, task)
			}
			tc.removeCheckpointTask(t, target, restored)
		})
	}
}

// TestCheckpointRestoreConcurrent restores one checkpoint directory into
// several containers at once: each upload has its own ref, identical
// content is shared, and every temporary blob is gone afterwards.
func TestCheckpointRestoreConcurrent(t *testing.T) {
	tc, dir := newUploadTest(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		ctr := tc.newCheckpointContainer(t, testutil.ID(t, strconv.Itoa(i)), t.TempDir(), checkpointArgs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out capture
			task, err := ctr.NewTask(tc.ctx, dir, false, out.attach)
			if err == nil {
				err = task.ForceDelete(tc.ctx)
			}
			if derr := ctr.Delete(tc.ctx); err == nil {
				err = derr
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// writeFakeCheckpoint makes a checkpoint directory the fake runtime
// accepts, without a checkpoint.
// newUploadTest opens the tests of checkpoint uploads: a parallel test's
// client and a checkpoint directory to upload.
func newUploadTest(t *testing.T) (*testClient, string) {
	t.Parallel()
	return newTestClient(t), writeFakeCheckpoint(t)
}

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

// TestCheckpointUploadExistingBlob uploads a checkpoint whose blob is
// already in the content store, owned by someone else: the upload uses it
// (AlreadyExists is success) and its cleanup leaves it alone.
func TestCheckpointUploadExistingBlob(t *testing.T) {
	tc, dir := newUploadTest(t)
	var buf bytes.Buffer
	if err := archive.WriteDiff(tc.ctx, &buf, "", dir); err != nil {
		t.Fatal(err)
	}
	want := ocispec.Descriptor{
		MediaType: images.MediaTypeContainerd1Checkpoint,
		Digest:    digest.FromBytes(buf.Bytes()),
		Size:      int64(buf.Len()),
	}
	cs := tc.c8dClient.ContentStore()
	if err := content.WriteBlob(tc.ctx, cs, "existing", bytes.NewReader(buf.Bytes()), want,
		content.WithLabels(map[string]string{"containerd.io/gc.root": time.Now().UTC().Format(time.RFC3339)})); err != nil {
		t.Fatal(err)
	}

	opt, cleanup, err := tc.uploadCheckpoint(tc.ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var info containerd.TaskInfo
	if err := opt(tc.ctx, tc.c8dClient, &info); err != nil {
		t.Fatal(err)
	}
	cleanup()
	if got := info.Checkpoint; got == nil || got.Digest != want.Digest.String() || got.Size != want.Size || got.MediaType != want.MediaType {
		t.Fatalf("checkpoint descriptor %+v, want %+v", got, want)
	}
	if _, err := cs.Info(tc.ctx, want.Digest); err != nil {
		t.Fatalf("existing blob after the upload's cleanup: %v", err)
	}

	// The restore works from it too.
	ctr := tc.newCheckpointContainer(t, testutil.ID(t), t.TempDir(), checkpointArgs)
	task, _ := tc.startCheckpointTask(t, ctr, dir)
	tc.removeCheckpointTask(t, ctr, task)
	if _, err := cs.Info(tc.ctx, want.Digest); err != nil {
		t.Fatalf("existing blob after a restore: %v", err)
	}
	if err := cs.Delete(tc.ctx, want.Digest); err != nil {
		t.Fatal(err)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// TestCheckpointUploadSharedContent uploads the same checkpoint twice and
// releases the first upload before the second is used: the second must
// still hold the blob. containerd answers the second commit with
// AlreadyExists without adding the blob to the second lease, so this
// fails unless the upload holds the blob itself. The concurrent part runs
// the same race many times over.
func TestCheckpointUploadSharedContent(t *testing.T) {
	tc, dir := newUploadTest(t)
	cs := tc.c8dClient.ContentStore()
	upload := func() (digest.Digest, func(), error) {
		opt, cleanup, err := tc.uploadCheckpoint(tc.ctx, dir)
		if err != nil {
			return "", nil, err
		}
		var info containerd.TaskInfo
		if err := opt(tc.ctx, tc.c8dClient, &info); err != nil {
			cleanup()
			return "", nil, err
		}
		return digest.Digest(info.Checkpoint.Digest), cleanup, nil
	}

	first, cleanup1, err := upload()
	if err != nil {
		t.Fatal(err)
	}
	second, cleanup2, err := upload()
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("same directory, different blobs: %s, %s", first, second)
	}
	cleanup1()
	if _, err := cs.Info(tc.ctx, second); err != nil {
		t.Fatalf("second upload's blob after the first was released: %v", err)
	}
	cleanup2()
	tc.assertNoCheckpointLeftovers(t)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				dgst, cleanup, err := upload()
				if err != nil {
					errs <- err
					return
				}
				if _, err := cs.Info(tc.ctx, dgst); err != nil {
					errs <- fmt.Errorf("blob of a live upload: %w", err)
				}
				cleanup()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// TestCheckpointUploadCancelled cancels an upload while its data is in
// flight: the error says so and no ingest is left behind.
func TestCheckpointUploadCancelled(t *testing.T) {
	tc, dir := newUploadTest(t)
	// A sparse file: large enough to be still uploading when seen.
	f, err := os.Create(filepath.Join(dir, "pages-2.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx, cancel := context.WithCancel(tc.ctx)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if sts, err := tc.c8dClient.ContentStore().ListStatuses(ctx); err == nil && len(sts) > 0 && sts[0].Offset > 0 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond) // polling for the ingest, not ordering
		}
	}()
	_, _, err = tc.uploadCheckpoint(ctx, dir)
	if !errors.Is(err, context.Canceled) && !errdefs.IsCanceled(err) {
		t.Fatalf("upload cancelled in flight: %v, want a cancellation", err)
	}
	tc.assertNoCheckpointLeftovers(t)
}

// noLayerTask is a task whose checkpoint image has no checkpoint layer,
// as a runtime other than runc may produce.
type noLayerTask struct {
	containerd.Task
	id     string
	client *containerd.Client
	info   containerd.CheckpointTaskInfo
}

func (nt *noLayerTask) ID() string { return nt.id }

func (nt *noLayerTask) Checkpoint(ctx context.Context, opts ...containerd.CheckpointTaskOpts) (containerd.Image, error) {
	for _, o := range opts {
		if err := o(&nt.info); err != nil {
			return nil, err
		}
	}
	// Written under the caller's lease, like containerd's checkpoint.
	b, err := json.Marshal(ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}})
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := content.WriteBlob(ctx, nt.client.ContentStore(), "index-"+nt.id, bytes.NewReader(b), desc); err != nil {
		return nil, err
	}
	img, err := nt.client.ImageService().Create(ctx, images.Image{Name: nt.info.Name, Target: desc})
	if err != nil {
		return nil, err
	}
	return containerd.NewImage(nt.client, img), nil
}

// TestCheckpointWithoutLayer is the case Docker's copy gets wrong: a
// checkpoint image without a checkpoint layer is an error, not a silent
// success, and the image is deleted all the same. It also checks that
// only runc gets runc's checkpoint options.
func TestCheckpointWithoutLayer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		runtime string
		opts    any
		runc    bool
	}{
		{"runc", runcShim, &runcoptions.Options{}, true},
		{"runc by options", "io.example.runc-compatible.v1", &runcoptions.Options{}, true},
		{"other runtime", "io.example.other.v1", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tc := newTestClient(t)
			id := testutil.ID(t)
			ctr, err := tc.NewContainer(tc.ctx, id, tc.spec(t, id, []string{"true"}), tt.runtime, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			fake := &noLayerTask{id: id, client: tc.c8dClient}
			dir := filepath.Join(t.TempDir(), "checkpoint")
			err = (&task{c8dTask: fake, ctr: ctr.(*container)}).CreateCheckpoint(tc.ctx, dir, true)
			if !errdefs.IsNotFound(err) {
				t.Fatalf("checkpoint without a checkpoint layer: %v, want NotFound", err)
			}
			if opts, ok := fake.info.Options.(*runcoptions.CheckpointOptions); ok != tt.runc || (ok && !opts.Exit) {
				t.Fatalf("checkpoint options %#v, want runc options with Exit: %v", fake.info.Options, tt.runc)
			}
			if fake.info.Name == "" {
				t.Fatal("checkpoint image has no name of ours")
			}
			if left := dirEntries(t, filepath.Dir(dir)); len(left) != 0 {
				t.Fatalf("left next to the checkpoint dir: %v", left)
			}
			tc.assertNoCheckpointLeftovers(t)
			if err := ctr.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
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

// TestCheckpointBadInput runs both directions on inputs that cannot work:
// each fails with its class before the task or containerd is touched,
// changes nothing on disk and leaves nothing in containerd.
func TestCheckpointBadInput(t *testing.T) {
	tc, _, rec, ctr, task := startCheckpointable(t)
	defer tc.removeCheckpointTask(t, ctr, task)

	type check func(error) bool
	classes := map[string]check{
		"NotFound": errdefs.IsNotFound, "InvalidArgument": errdefs.IsInvalidArgument,
		"PermissionDenied": errdefs.IsPermissionDenied, "Conflict": errdefs.IsConflict,
		"AlreadyExists": errdefs.IsAlreadyExists,
	}

	t.Run("download", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			setup  func(t *testing.T, base string) string // returns the checkpoint dir
			nobody bool
			want   []string
		}{
			{"file", func(t *testing.T, base string) string {
				p := filepath.Join(base, "file")
				writeCheckpointFile(t, p, "keep")
				return p
			}, false, []string{"InvalidArgument"}},
			{"not empty", func(t *testing.T, base string) string {
				p := filepath.Join(base, "full")
				writeCheckpointFile(t, filepath.Join(p, "keep"), "keep")
				return p
			}, false, []string{"Conflict", "AlreadyExists"}},
			{"missing parent", func(t *testing.T, base string) string {
				return filepath.Join(base, "missing", "checkpoint")
			}, false, []string{"NotFound"}},
			{"dangling symlink", func(t *testing.T, base string) string {
				p := filepath.Join(base, "link")
				if err := os.Symlink(filepath.Join(base, "nowhere"), p); err != nil {
					t.Fatal(err)
				}
				return p
			}, false, []string{"InvalidArgument"}},
			{"parent not writable", func(t *testing.T, base string) string {
				p := filepath.Join(base, "ro")
				if err := os.Mkdir(p, 0o555); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(p, "checkpoint")
			}, true, []string{"PermissionDenied"}},
			{"empty dir not writable", func(t *testing.T, base string) string {
				p := filepath.Join(base, "ro")
				if err := os.Mkdir(p, 0o555); err != nil {
					t.Fatal(err)
				}
				return p
			}, true, []string{"PermissionDenied"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				base := t.TempDir()
				dir := tt.setup(t, base)
				if tt.nobody {
					makeTraversable(t, base)
				}
				before := checkpointTree(t, base)
				var err error
				call := func() { err = task.CreateCheckpoint(tc.ctx, dir, true) }
				if tt.nobody {
					if !asNobodyFS(t, call) {
						t.Skip("cannot drop file permission override on this thread (setfsuid)")
					}
				} else {
					call()
				}
				for _, c := range tt.want {
					if !classes[c](err) {
						t.Fatalf("CreateCheckpoint(%s): %v, want %s", dir, err, c)
					}
				}
				if after := checkpointTree(t, base); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("files changed:\nbefore %v\n after %v", before, after)
				}
				if _, err := os.Stat(filepath.Join(rec, "checkpoint")); !os.IsNotExist(err) {
					t.Fatalf("the runtime was asked to checkpoint (%v)", err)
				}
				if st, err := task.Status(tc.ctx); err != nil || st.Status != containerd.Running {
					t.Fatalf("task status %+v, %v; want running", st, err)
				}
				tc.assertNoCheckpointLeftovers(t)
			})
		}
	})

	t.Run("upload", func(t *testing.T) {
		restoreCtr := tc.newCheckpointContainer(t, testutil.ID(t), t.TempDir(), checkpointArgs)
		defer tc.removeCheckpointTask(t, restoreCtr, nil)
		for _, tt := range []struct {
			name   string
			setup  func(t *testing.T, base string) string
			nobody bool
			want   string
		}{
			{"missing", func(t *testing.T, base string) string {
				return filepath.Join(base, "missing")
			}, false, "NotFound"},
			{"file", func(t *testing.T, base string) string {
				p := filepath.Join(base, "file")
				writeCheckpointFile(t, p, "not a checkpoint")
				return p
			}, false, "InvalidArgument"},
			{"empty dir", func(t *testing.T, base string) string {
				return base
			}, false, "InvalidArgument"},
			{"unreadable", func(t *testing.T, base string) string {
				p := filepath.Join(base, "unreadable")
				writeCheckpointFile(t, filepath.Join(p, "pages-1.img"), "pages")
				if err := os.Chmod(p, 0o311); err != nil {
					t.Fatal(err)
				}
				return p
			}, true, "PermissionDenied"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				base := t.TempDir()
				dir := tt.setup(t, base)
				var err error
				call := func() {
					var out capture
					_, err = restoreCtr.NewTask(tc.ctx, dir, false, out.attach)
				}
				if tt.nobody {
					makeTraversable(t, base)
					if !asNobodyFS(t, call) {
						t.Skip("cannot drop file permission override on this thread (setfsuid)")
					}
				} else {
					call()
				}
				if !classes[tt.want](err) {
					t.Fatalf("NewTask(%s): %v, want %s", dir, err, tt.want)
				}
				if _, err := restoreCtr.Task(tc.ctx); !errdefs.IsNotFound(err) {
					t.Fatalf("task after a failed restore: %v", err)
				}
				tc.assertNoCheckpointLeftovers(t)
			})
		}
	})
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
