package libcontainerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ctrkit/libcontainerd/internal/testutil"
	"github.com/ctrkit/libcontainerd/types"
)

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

// Status says running, as a task being checkpointed is.
func (nt *noLayerTask) Status(context.Context) (containerd.Status, error) {
	return containerd.Status{Status: containerd.Running}, nil
}

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

// TestCheckpointCRIUFails checkpoints tasks whose runc runs a stand-in
// criu that refuses (exits 1) or dies (killed) at once: the error is
// FailedPrecondition, nothing is left in or next to the checkpoint
// directory or in containerd, and the task is as it was: a running task
// runs on (containerd's client paused it for the dump: one paused and one
// resumed event, as moby's copy delivers), a paused one stays paused (no
// event).
func TestCheckpointCRIUFails(t *testing.T) {
	t.Parallel()
	for _, behaviour := range []string{"refuses", "dies"} {
		for _, paused := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/paused=%v", behaviour, paused), func(t *testing.T) {
				t.Parallel()
				tc := newTestClient(t)
				ct := tc.startStandInCounter(t, testutil.ID(t), behaviour)
				if paused {
					if err := ct.task.Pause(tc.ctx); err != nil {
						t.Fatal(err)
					}
					tc.backend.waitEvent(t, ct.id, types.EventPaused, "")
				}
				base := t.TempDir()
				err := ct.task.CreateCheckpoint(tc.ctx, filepath.Join(base, "checkpoint"), true)
				wantClass(t, "checkpoint with a criu that "+behaviour, err, "FailedPrecondition")
				if left := dirEntries(t, base); len(left) != 0 {
					t.Errorf("left next to the checkpoint dir: %v", left)
				}
				tc.assertNoCheckpointLeftovers(t)
				if paused {
					if st, err := ct.task.Status(tc.ctx); err != nil || st.Status != containerd.Paused {
						t.Fatalf("status after the failed checkpoint of a paused task: %+v, %v; want paused", st, err)
					}
					if n := tc.countEvents(ct.id, types.EventResumed); n != 0 {
						t.Fatalf("%d resumed events of a task that stayed paused", n)
					}
					if err := ct.task.Resume(tc.ctx); err != nil {
						t.Fatal(err)
					}
				}
				tc.backend.waitEvent(t, ct.id, types.EventResumed, "")
				tc.assertCounting(t, ct)
				if p, r := tc.countEvents(ct.id, types.EventPaused), tc.countEvents(ct.id, types.EventResumed); p != 1 || r != 1 {
					t.Fatalf("%d paused and %d resumed events, want one each: %v", p, r, tc.backend.of(ct.id))
				}
				tc.stopAndCheckExit(t, ct)
				tc.assertNothingLeft(t)
			})
		}
	}
}

// TestCheckpointCRIUHangs checkpoints a running task whose runc runs a
// stand-in criu that never returns, with a context that ends: at its
// deadline (which runc gets: the shim kills it then) or cancelled once
// the stand-in runs (runc waits on). CreateCheckpoint returns when the
// context ends, DeadlineExceeded or Canceled; meanwhile the client runs
// other containers and delivers their events. With the deadline the task
// is running again once the shim lets go of it (one paused and one
// resumed event), while the stand-in still hangs; the harness kills the
// stand-in through the daemon's shims. Cancelled, the client's Close
// returns while the shim still holds the task; the task, paused, is
// resumed by another client once the stand-in is killed.
func TestCheckpointCRIUHangs(t *testing.T) {
	t.Parallel()
	const deadline = 2 * time.Second
	for _, mode := range []string{"deadline", "cancel"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tc := newTestClient(t)
			ct := tc.startStandInCounter(t, testutil.ID(t), "hangs")
			t.Cleanup(func() { tc.daemon.KillCRIU(tc.ns) })

			ctx, cancel := context.WithTimeout(tc.ctx, deadline)
			defer cancel()
			standIn := make(chan []int, 1)
			go func() {
				var pids []int
				for len(pids) == 0 && ctx.Err() == nil {
					pids = tc.daemon.CRIU(tc.ns)
					time.Sleep(10 * time.Millisecond) // polling for the stand-in, not ordering
				}
				if mode == "cancel" {
					cancel()
				}
				standIn <- pids
			}()
			start := time.Now()
			err := ct.task.CreateCheckpoint(ctx, filepath.Join(t.TempDir(), "checkpoint"), false)
			took := time.Since(start)
			want, class := context.DeadlineExceeded, "DeadlineExceeded"
			if mode == "cancel" {
				want, class = context.Canceled, "Canceled"
			}
			if !errors.Is(err, want) {
				t.Fatalf("checkpoint with a hung criu: %v, want %v", err, want)
			}
			wantClass(t, "checkpoint with a hung criu", err, class)
			if took > deadline+5*time.Second {
				t.Fatalf("checkpoint with a hung criu returned after %v, its context ended within %v", took, deadline)
			}
			if pids := <-standIn; len(pids) == 0 {
				t.Fatal("the stand-in criu never ran")
			}
			if pids := tc.daemon.CRIU(tc.ns); len(pids) == 0 {
				t.Fatal("the stand-in criu is gone: it was to hang")
			}

			// The client goes on meanwhile: another container runs, and
			// its events arrive.
			other := testutil.ID(t, "other")
			otherCtr, otherTask, _ := tc.run(t, other, false, []string{"true"})
			tc.backend.waitExit(t, other, otherTask.Pid())
			if _, err := otherTask.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}
			if err := otherCtr.Delete(tc.ctx); err != nil {
				t.Fatal(err)
			}

			if mode == "deadline" {
				tc.backend.waitEvent(t, ct.id, types.EventResumed, "")
				tc.assertCounting(t, ct)
				if killed := tc.daemon.KillCRIU(tc.ns); len(killed) == 0 {
					t.Fatal("the harness found no hung criu to kill")
				}
			} else {
				closeStart := time.Now()
				if err := tc.CloseContext(tc.ctx); err != nil {
					t.Fatal(err)
				}
				if d := time.Since(closeStart); d > 5*time.Second {
					t.Fatalf("Close took %v while the shim held the task", d)
				}
				if killed := tc.daemon.KillCRIU(tc.ns); len(killed) == 0 {
					t.Fatal("the harness found no hung criu to kill")
				}
				// The client that resumes it now is the engine after a
				// restart.
				tc = tc.restart(t)
				ctr, err := tc.LoadContainer(tc.ctx, ct.id)
				if err != nil {
					t.Fatal(err)
				}
				task, err := ctr.AttachTask(tc.ctx, ct.out.attach)
				if err != nil {
					t.Fatal(err)
				}
				ct.ctr, ct.task = ctr, task
				eventually(t, "the task paused once the stand-in is killed", func() (bool, string) {
					st, err := task.Status(tc.ctx)
					return err == nil && st.Status == containerd.Paused, fmt.Sprintf("%+v, %v", st, err)
				})
				if err := task.Resume(tc.ctx); err != nil {
					t.Fatal(err)
				}
				tc.assertCounting(t, ct)
			}
			tc.removeCounter(t, ct)
			tc.assertNothingLeft(t)
		})
	}
}

// TestCheckpointCRIURestoreHangs restores a task whose runc runs a
// stand-in criu that never returns: the restore (NewTask uploads, Start
// restores) returns when its context ends, DeadlineExceeded; the harness
// kills the stand-in through the daemon's shims, and the task is then
// deleted like any other, leaving nothing behind.
func TestCheckpointCRIURestoreHangs(t *testing.T) {
	tc, dir := newUploadTest(t)
	id := testutil.ID(t)
	spec := tc.spec(t, id, checkpointArgs)
	ctr, err := tc.NewContainer(tc.ctx, id, spec, runcShim, &runcoptions.Options{BinaryName: standInRunc(t, "hangs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tc.daemon.KillCRIU(tc.ns)
		if task, err := ctr.Task(tc.ctx); err == nil {
			_ = task.ForceDelete(tc.ctx)
		}
		_ = ctr.Delete(tc.ctx)
	})

	const deadline = 2 * time.Second
	ctx, cancel := context.WithTimeout(tc.ctx, deadline)
	defer cancel()
	start := time.Now()
	var out capture
	task, err := ctr.NewTask(ctx, dir, false, out.attach)
	if err != nil {
		t.Fatalf("NewTask from a checkpoint: %v", err)
	}
	err = task.Start(ctx)
	took := time.Since(start)
	// 1.6's shim, which got the same deadline, may answer before the
	// client's timer fires, with the text of a deadline and no class (seen
	// 1 in 3): Task.Start classifies it.
	if !errors.Is(err, context.DeadlineExceeded) || !errdefs.IsDeadlineExceeded(err) {
		t.Fatalf("restore with a hung criu: %v [%s], want %v", err, classesOf(err), context.DeadlineExceeded)
	}
	t.Logf("restore with a hung criu: [%s] %v", classesOf(err), err)
	if took > deadline+5*time.Second {
		t.Fatalf("restore with a hung criu returned after %v, its context ended within %v", took, deadline)
	}
	if killed := tc.daemon.KillCRIU(tc.ns); len(killed) == 0 {
		t.Fatal("the harness found no hung criu to kill")
	}
	if err := task.ForceDelete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(tc.ctx); err != nil {
		t.Fatal(err)
	}
	tc.assertNothingLeft(t)
}
