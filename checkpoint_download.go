package libcontainerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// downloadCheckpoint checkpoints t and unpacks the checkpoint into dir.
//
// dir must be absent (its parent must exist) or an empty directory; it is
// checked before the task is touched. The checkpoint is unpacked next to
// dir first, so that a failure leaves no partial files in it. The temporary
// checkpoint image and its content are deleted whatever the outcome.
func (c *Client) downloadCheckpoint(ctx context.Context, t *task, dir string, exit bool) (retErr error) {
	id := t.c8dTask.ID()
	target, err := newCheckpointTarget(dir)
	if err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			target.discard()
		}
	}()

	md, err := t.ctr.c8dCtr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, wrapError(err))
	}
	name := fmt.Sprintf("%s/%s:%s", checkpointRefPrefix, id, randomSuffix())
	opts := []containerd.CheckpointTaskOpts{containerd.WithCheckpointName(name)}
	if isRunc(t.ctr, md) {
		opts = append(opts, func(info *containerd.CheckpointTaskInfo) error {
			info.Options = &runcoptions.CheckpointOptions{Exit: exit}
			return nil
		})
	}

	ctx, release, err := c.checkpointLease(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, err)
	}
	defer release()
	// The image may exist even when Checkpoint fails (a reply lost after
	// the image was created), so its deletion does not depend on err.
	defer c.deleteCheckpointImage(ctx, name)
	// containerd's client pauses a running task for the dump and resumes
	// it with ctx; when the dump fails, that resume may not happen (see
	// resumeAfterCheckpoint), so the status before is needed to tell.
	before, err := t.c8dTask.Status(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, wrapError(err))
	}
	img, err := t.c8dTask.Checkpoint(ctx, opts...)
	if err != nil {
		if before.Status == containerd.Running {
			c.resumeAfterCheckpoint(ctx, t)
		}
		return fmt.Errorf("checkpoint task %s: %w", id, checkpointError(ctx, err))
	}

	cs := c.c8dClient.ContentStore()
	layer, err := checkpointLayer(ctx, cs, img.Target())
	if err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, err)
	}
	if err := unpackCheckpoint(ctx, cs, layer, target.staging); err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, err)
	}
	if err := target.commit(); err != nil {
		return fmt.Errorf("checkpoint task %s: %w", id, err)
	}
	return nil
}

// checkpointError classifies the error of a task checkpoint, which the
// containerd client has already converted from gRPC. When ctx ended first
// (a CRIU that hangs), it says so: Canceled or DeadlineExceeded. The
// runtime reports a failed dump (no CRIU, an unsupported kernel or
// process, a CRIU that died) without a class; for the caller it means
// that this task cannot be checkpointed here. The runtime's text is not
// matched on: CRIU's messages (say, an executable "not found") do not
// mean what the library's message classes mean.
func checkpointError(ctx context.Context, err error) error {
	if cerr := contextEnded(ctx); cerr != nil {
		if errors.Is(err, cerr) {
			return wrapError(err)
		}
		return fmt.Errorf("%w: %w", cerr, wrapError(err))
	}
	if isClassified(err) {
		return wrapError(err)
	}
	return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
}

// checkpointResumeTimeout bounds how long the client waits, after a
// checkpoint whose context ended, for the runtime to let go of the task
// so that it can resume it: the shim answers nothing about a task while
// its dump runs, which a hung CRIU makes last until it is killed.
const checkpointResumeTimeout = 10 * time.Minute

// resumeAfterCheckpoint resumes t, which was running when its checkpoint
// began and whose checkpoint failed, if it is paused now. containerd's
// client paused it for the dump and resumes it with the caller's context,
// which does nothing once that context has ended (the task stays frozen,
// as a running container that does nothing). Only a paused task is
// resumed, once, so events are what moby's copy delivers when its resume
// works: one TaskPaused and one TaskResumed.
//
// With ctx alive the resume happens before the caller gets the error.
// Otherwise the runtime may still be in the dump, and the shim answers
// only once it ends (runc is killed at ctx's deadline, if ctx had one; a
// cancelled dump runs until CRIU returns or is killed), so a goroutine of
// the client waits for it, bounded by checkpointResumeTimeout and ended by
// Close.
func (c *Client) resumeAfterCheckpoint(ctx context.Context, t *task) {
	if contextEnded(ctx) == nil {
		c.resumeIfPaused(ctx, t)
		return
	}
	values := context.WithoutCancel(ctx)
	c.goOwned(func(owned context.Context) {
		ctx, cancel := context.WithTimeout(values, checkpointResumeTimeout)
		defer cancel()
		stop := context.AfterFunc(owned, cancel)
		defer stop()
		c.resumeIfPaused(ctx, t)
	})
}

// contextEnded returns ctx's error, or DeadlineExceeded once its deadline
// has passed even if its timer has not fired yet: the server, which got
// the same deadline, may answer first, with an error that names no class
// ("context deadline exceeded: unknown" from containerd 1.6's shim).
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// resumeIfPaused resumes t if its status is paused.
func (c *Client) resumeIfPaused(ctx context.Context, t *task) {
	logger := c.logger.WithField("container", t.c8dTask.ID())
	st, err := t.c8dTask.Status(ctx)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			logger.WithError(err).Warn("failed to get the task's status after a failed checkpoint")
		}
		return
	}
	if st.Status != containerd.Paused {
		return
	}
	if err := t.c8dTask.Resume(ctx); err != nil {
		logger.WithError(err).Warn("failed to resume the task a failed checkpoint left paused")
		return
	}
	logger.Info("resumed the task a failed checkpoint left paused")
}

// checkpointLayer reads the checkpoint image's index and returns its
// checkpoint layer. An index without one is NotFound.
func checkpointLayer(ctx context.Context, cs content.Provider, target ocispec.Descriptor) (ocispec.Descriptor, error) {
	b, err := content.ReadBlob(ctx, cs, target)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read checkpoint index %s: %w", target.Digest, wrapError(err))
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("decode checkpoint index %s: %v: %w", target.Digest, err, errdefs.ErrDataLoss)
	}
	for _, m := range index.Manifests {
		if m.MediaType == images.MediaTypeContainerd1Checkpoint {
			return m, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("checkpoint index %s has no %s layer: %w", target.Digest, images.MediaTypeContainerd1Checkpoint, errdefs.ErrNotFound)
}

// unpackCheckpoint extracts the checkpoint layer desc into dir, verifying
// its size and digest on the way.
func unpackCheckpoint(ctx context.Context, cs content.Provider, desc ocispec.Descriptor, dir string) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("checkpoint layer: %v: %w", err, errdefs.ErrDataLoss)
	}
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("open checkpoint layer %s: %w", desc.Digest, wrapError(err))
	}
	defer ra.Close()
	verifier := desc.Digest.Verifier()
	var n countingWriter
	r := io.TeeReader(content.NewReader(ra), io.MultiWriter(verifier, &n))
	var opts []archive.ApplyOpt
	if os.Geteuid() != 0 {
		// Checkpoint files belong to root; keep them readable for the
		// caller rather than fail to chown.
		opts = append(opts, archive.WithNoSameOwner())
	}
	if _, err := archive.Apply(ctx, dir, r, opts...); err != nil {
		return fmt.Errorf("unpack checkpoint layer %s: %w", desc.Digest, fsError(wrapError(err)))
	}
	// Apply stops at the end-of-archive marker; the padding after it is
	// part of the blob.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read checkpoint layer %s: %w", desc.Digest, wrapError(err))
	}
	if int64(n) != desc.Size || !verifier.Verified() {
		return fmt.Errorf("checkpoint layer %s: content (%d bytes) does not match its descriptor (%d bytes): %w", desc.Digest, n, desc.Size, errdefs.ErrDataLoss)
	}
	return nil
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
