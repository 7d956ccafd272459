package libcontainerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	// checkpointLeaseExpiry is how long checkpoint content outlives a
	// client that died before releasing it. A live call deletes its lease,
	// and with it the content, when it returns.
	checkpointLeaseExpiry = time.Hour

	// checkpointCleanupTimeout bounds the removal of temporary checkpoint
	// images and content. It is independent of the caller's context, which
	// may be what ended the operation.
	checkpointCleanupTimeout = 30 * time.Second

	// checkpointRefPrefix starts the ingest ref of an uploaded checkpoint
	// and the name of a downloaded checkpoint image.
	checkpointRefPrefix = "libcontainerd-checkpoint"
)

// uploadCheckpoint puts checkpointDir into the content store for a task
// restore and returns the task option that uses it and a cleanup that
// deletes the temporary blob. Call cleanup once the task create returned,
// whatever its outcome; the blob is protected from containerd's garbage
// collection until then.
//
// checkpointDir must be a readable, non-empty directory: a missing one is
// NotFound, an unreadable one PermissionDenied, anything else that cannot
// be a checkpoint (a file, an empty directory) InvalidArgument.
func (c *Client) uploadCheckpoint(ctx context.Context, checkpointDir string) (_ containerd.NewTaskOpts, _ func(), retErr error) {
	if err := checkCheckpointDir(checkpointDir); err != nil {
		return nil, nil, fmt.Errorf("restore from checkpoint: %w", err)
	}
	ctx, release, err := c.checkpointLease(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("restore from checkpoint %s: %w", checkpointDir, err)
	}
	defer func() {
		if retErr != nil {
			release()
		}
	}()
	desc, err := c.writeCheckpoint(ctx, checkpointDir)
	if err != nil {
		return nil, nil, fmt.Errorf("restore from checkpoint %s: %w", checkpointDir, err)
	}
	opt := func(_ context.Context, _ *containerd.Client, info *containerd.TaskInfo) error {
		info.Checkpoint = desc
		return nil
	}
	return opt, release, nil
}

// checkCheckpointDir checks that dir can be a checkpoint: a directory that
// can be read and has something in it.
func checkCheckpointDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checkpoint dir: %w", fsError(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("checkpoint dir %s is not a directory: %w", dir, errdefs.ErrInvalidArgument)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("checkpoint dir: %w", fsError(err))
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return fmt.Errorf("checkpoint dir %s is empty, not a checkpoint: %w", dir, errdefs.ErrInvalidArgument)
	} else if err != nil {
		return fmt.Errorf("checkpoint dir %s: %w", dir, fsError(err))
	}
	return nil
}

// writeCheckpointAttempts bounds the uploads of one checkpoint when the
// blob it found already in the store is collected before it could hold it.
const writeCheckpointAttempts = 3

// errBlobCollected says that an existing blob went away before the
// upload's lease referenced it; the upload is tried again.
var errBlobCollected = errors.New("existing checkpoint blob was collected")

// writeCheckpoint streams a tar of dir into the content store under a ref
// of its own, held by the lease in ctx, and returns the committed blob's
// descriptor.
func (c *Client) writeCheckpoint(ctx context.Context, dir string) (*apitypes.Descriptor, error) {
	for attempt := 1; ; attempt++ {
		desc, err := c.writeCheckpointOnce(ctx, dir)
		if errors.Is(err, errBlobCollected) && attempt < writeCheckpointAttempts {
			continue
		}
		return desc, err
	}
}

// writeCheckpointOnce is one upload of writeCheckpoint. The size and digest
// computed while streaming are verified by the store on commit. A blob
// that already exists with that digest is the same content and is used as
// is: containerd's content service then answers AlreadyExists without
// adding the blob to the lease, so the lease gets a reference of its own
// before the blob is trusted to stay.
func (c *Client) writeCheckpointOnce(ctx context.Context, dir string) (_ *apitypes.Descriptor, retErr error) {
	cs := c.c8dClient.ContentStore()
	ref := checkpointRefPrefix + "-" + randomSuffix()
	w, err := cs.Writer(ctx, content.WithRef(ref),
		content.WithDescriptor(ocispec.Descriptor{MediaType: images.MediaTypeContainerd1Checkpoint}))
	if err != nil {
		return nil, fmt.Errorf("open content writer: %w", wrapError(err))
	}
	committed := false
	defer func() {
		_ = w.Close()
		if committed {
			return
		}
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := cs.Abort(ctx, ref); err != nil && !errdefs.IsNotFound(err) {
			c.logger.WithError(err).WithField("ref", ref).Warn("failed to abort checkpoint upload")
		}
	}()

	tr := archive.Diff(ctx, "", dir)
	digester := digest.Canonical.Digester()
	size, err := io.Copy(io.MultiWriter(w, digester.Hash()), tr)
	if cerr := tr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write checkpoint: %w", contextError(ctx, fsError(wrapError(err))))
	}
	dgst := digester.Digest()
	err = w.Commit(ctx, size, dgst)
	committed = err == nil || errdefs.IsAlreadyExists(err)
	if !committed {
		return nil, fmt.Errorf("commit checkpoint %s: %w", dgst, wrapError(err))
	}
	if err != nil {
		if err := c.holdExisting(ctx, dgst, size); err != nil {
			return nil, err
		}
	}
	return &apitypes.Descriptor{
		MediaType: images.MediaTypeContainerd1Checkpoint,
		Digest:    dgst.String(),
		Size:      size,
	}, nil
}

// holdExisting adds the existing blob dgst to the lease in ctx and checks
// that it is still there, with the expected size, once referenced.
func (c *Client) holdExisting(ctx context.Context, dgst digest.Digest, size int64) error {
	lid, _ := leases.FromContext(ctx)
	res := leases.Resource{ID: dgst.String(), Type: "content"}
	if err := c.c8dClient.LeasesService().AddResource(ctx, leases.Lease{ID: lid}, res); err != nil {
		return fmt.Errorf("hold existing checkpoint %s: %w", dgst, wrapError(err))
	}
	info, err := c.c8dClient.ContentStore().Info(ctx, dgst)
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("checkpoint %s: %w", dgst, errBlobCollected)
	case err != nil:
		return fmt.Errorf("hold existing checkpoint %s: %w", dgst, wrapError(err))
	case info.Size != size:
		return fmt.Errorf("existing checkpoint %s has %d bytes, want %d: %w", dgst, info.Size, size, errdefs.ErrDataLoss)
	}
	return nil
}

// checkpointLease returns ctx with a new lease that holds the checkpoint
// content written or read under it, and a release that deletes the lease
// and, by a synchronous garbage collection, that content. The lease expires
// by itself should the client die before releasing it.
func (c *Client) checkpointLease(ctx context.Context) (context.Context, func(), error) {
	ls := c.c8dClient.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(checkpointLeaseExpiry))
	if err != nil {
		return nil, nil, fmt.Errorf("create lease: %w", wrapError(err))
	}
	release := func() {
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			c.logger.WithError(err).WithField("lease", l.ID).Warn("failed to delete checkpoint lease")
		}
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// deleteCheckpointImage deletes the temporary checkpoint image name, if it
// exists. Its content goes with the lease it was created under.
func (c *Client) deleteCheckpointImage(ctx context.Context, name string) {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := c.c8dClient.ImageService().Delete(ctx, name); err != nil && !errdefs.IsNotFound(err) {
		c.logger.WithError(err).WithFields(log.Fields{"image": name}).Warn("failed to delete checkpoint image")
	}
}

// cleanupContext keeps ctx's values (namespace, lease) but not its
// cancellation, with checkpointCleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), checkpointCleanupTimeout)
}

// checkpointTarget is where a download unpacks: a staging directory that
// becomes dir, or whose entries move into the empty dir, only once the
// whole checkpoint is there.
type checkpointTarget struct {
	dir     string
	staging string
	existed bool
}

// newCheckpointTarget checks dir and creates the staging directory: inside
// dir when dir is an existing empty directory, next to it otherwise, so
// that moving the checkpoint into place is a rename. A path that is not a
// directory is InvalidArgument, a non-empty directory AlreadyExists (and
// Conflict), a missing parent NotFound, no write access PermissionDenied.
func newCheckpointTarget(dir string) (*checkpointTarget, error) {
	if dir == "" {
		return nil, fmt.Errorf("checkpoint dir is empty: %w", errdefs.ErrInvalidArgument)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("checkpoint dir %s is not a directory: %w", dir, errdefs.ErrInvalidArgument)
	case err == nil:
		names, err := readDirNames(dir, 1)
		if err != nil {
			return nil, fmt.Errorf("checkpoint dir %s: %w", dir, fsError(err))
		}
		if len(names) > 0 {
			return nil, fmt.Errorf("checkpoint dir %s is not empty: %w: %w", dir, errdefs.ErrConflict, errdefs.ErrAlreadyExists)
		}
		staging, err := os.MkdirTemp(dir, ".checkpoint-")
		if err != nil {
			return nil, fmt.Errorf("checkpoint dir %s: %w", dir, fsError(err))
		}
		return &checkpointTarget{dir: dir, staging: staging, existed: true}, nil
	case errors.Is(err, fs.ErrNotExist):
		if _, lerr := os.Lstat(dir); lerr == nil {
			return nil, fmt.Errorf("checkpoint dir %s is a dangling symlink: %w", dir, errdefs.ErrInvalidArgument)
		}
		staging, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".checkpoint-")
		if err != nil {
			return nil, fmt.Errorf("parent of checkpoint dir %s: %w", dir, fsError(err))
		}
		return &checkpointTarget{dir: dir, staging: staging}, nil
	default:
		return nil, fmt.Errorf("checkpoint dir: %w", fsError(err))
	}
}

// commit moves the staged checkpoint into dir. On failure dir is left as
// it was and the caller discards the staging directory.
func (ct *checkpointTarget) commit() error {
	if !ct.existed {
		if err := os.Rename(ct.staging, ct.dir); err != nil {
			return fmt.Errorf("move checkpoint into place: %w", fsError(err))
		}
		return nil
	}
	names, err := readDirNames(ct.staging, -1)
	if err != nil {
		return fmt.Errorf("move checkpoint into place: %w", fsError(err))
	}
	for i, name := range names {
		if err := os.Rename(filepath.Join(ct.staging, name), filepath.Join(ct.dir, name)); err != nil {
			for _, moved := range names[:i] {
				_ = os.RemoveAll(filepath.Join(ct.dir, moved))
			}
			return fmt.Errorf("move checkpoint into place: %w", fsError(err))
		}
	}
	if err := os.Remove(ct.staging); err != nil {
		return fmt.Errorf("move checkpoint into place: %w", fsError(err))
	}
	return nil
}

// discard removes whatever is left of the staging directory.
func (ct *checkpointTarget) discard() {
	_ = os.RemoveAll(ct.staging)
}

func readDirNames(dir string, n int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(n)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return names, err
}

// contextError makes err, which may be how a stream reported its
// context's end ("EOF"), say that the context ended.
func contextError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// randomSuffix makes checkpoint refs and image names unique.
func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
