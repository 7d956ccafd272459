package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctrkit/libcontainerd/types"
)

// DockerContainerBundlePath is the label key pointing to the container's
// bundle path. It is moby's key, so containers created by either library
// can be loaded by the other.
const DockerContainerBundlePath = "com.docker/engine.bundle.path"

// Client is the libcontainerd client of one containerd namespace. It
// implements types.Client; Close, CloseContext and Metrics are its
// additions. It is safe for concurrent use.
type Client struct {
	c8dClient *containerd.Client
	stateDir  string
	ns        string
	logger    *log.Entry
	opts      clientOptions
	events    *eventMonitor

	// inflight holds the process IDs ("container/process") whose FIFOs are
	// being created, so that two concurrent creations of the same process
	// cannot share or remove each other's FIFOs.
	inflightMu sync.Mutex
	inflight   map[string]struct{}

	// owned runs the goroutines the handles start (see goOwned); ownedCtx
	// ends when the client closes.
	owned       sync.WaitGroup
	ownedCtx    context.Context
	ownedCancel context.CancelFunc

	// unclosedIOs are the IOs of tasks whose Start failed and that were
	// not deleted: Close closes them (see taskIO).
	ioMu        sync.Mutex
	unclosedIOs map[*taskIO]struct{}

	closeOnce sync.Once
	closeErr  error
}

var _ types.Client = (*Client)(nil)

// NewClient creates a libcontainerd client for namespace ns of containerd
// client cli. Bundles and FIFOs live under stateDir/<containerID>. Events of
// the namespace are delivered to b until ctx ends or the client is closed.
//
// The returned value is a *Client; engines that want Close or Metrics use
// New, or a type assertion.
func NewClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend, opts ...Option) (types.Client, error) {
	c, err := New(ctx, cli, stateDir, ns, b, opts...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// New is NewClient returning the concrete *Client.
func New(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend, opts ...Option) (*Client, error) {
	if cli == nil {
		return nil, fmt.Errorf("containerd client is nil: %w", errdefs.ErrInvalidArgument)
	}
	if b == nil {
		return nil, fmt.Errorf("backend is nil: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateID("namespace", ns); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("state dir %q must be an absolute path: %w", stateDir, errdefs.ErrInvalidArgument)
	}
	o := defaultClientOptions()
	for _, opt := range opts {
		opt(&o)
	}
	logger := log.G(ctx).WithField("module", "libcontainerd").WithField("namespace", ns)
	c := &Client{
		c8dClient: cli,
		stateDir:  filepath.Clean(stateDir),
		ns:        ns,
		logger:    logger,
		opts:      o,
		events:    newEventMonitor(cli, ns, b, logger, o),
		inflight:  make(map[string]struct{}),

		unclosedIOs: make(map[*taskIO]struct{}),
	}
	c.ownedCtx, c.ownedCancel = context.WithCancel(context.WithoutCancel(ctx))
	c.sweepOrphans(ctx)
	c.events.start(ctx)
	return c, nil
}

// Version returns the version of the containerd daemon.
func (c *Client) Version(ctx context.Context) (containerd.Version, error) {
	ctx = c.withNamespace(ctx)
	v, err := c.c8dClient.Version(ctx)
	return v, wrapError(err)
}

// LoadContainer loads the metadata of container id from containerd. It
// returns a NotFound error when containerd has no such container.
func (c *Client) LoadContainer(ctx context.Context, id string) (types.Container, error) {
	if err := validateID("container", id); err != nil {
		return nil, err
	}
	ctr, err := c.c8dClient.LoadContainer(c.withNamespace(ctx), id)
	if err != nil {
		return nil, fmt.Errorf("load container %s: %w", id, wrapError(err))
	}
	return &container{client: c, c8dCtr: ctr}, nil
}

// NewContainer creates container id with spec, run by shim with
// runtimeOptions. Its bundle directory is stateDir/id (see WithBundle). opts
// are applied first, then the spec, runtime and bundle. An ID in use returns
// a Conflict error; on any error the bundle directory made here is removed.
func (c *Client) NewContainer(ctx context.Context, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (_ types.Container, retErr error) {
	if err := validateID("container", id); err != nil {
		return nil, err
	}
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	if err := checkRuntimeOptions(id, shim, runtimeOptions); err != nil {
		return nil, err
	}
	var bundle bundleRecord
	defer func() {
		if retErr != nil && bundle.created {
			if err := os.RemoveAll(bundle.path); err != nil {
				c.logger.WithError(err).WithField("bundle", bundle.path).Warn("failed to remove bundle of failed container")
			}
		}
	}()

	all := append(append([]containerd.NewContainerOpts{}, opts...),
		containerd.WithSpec(spec),
		containerd.WithRuntime(shim, runtimeOptions),
		withBundle(c.bundleDir(id), spec, &bundle),
	)
	ctr, err := c.c8dClient.NewContainer(c.withNamespace(ctx), id, all...)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("container %s: id already in use: %w", id, errdefs.ErrConflict)
		}
		return nil, fmt.Errorf("create container %s: %w", id, wrapError(err))
	}
	c.events.oomCounters.note(id, shim, spec, runtimeOptions)
	created := &container{client: c, c8dCtr: ctr}
	if ro, ok := runtimeOptions.(*runcoptions.Options); ok {
		created.runcOptions = ro
	}
	return created, nil
}

// Close stops the event subscription, delivers or abandons the queued events
// according to the ClosePolicy, and returns when every goroutine the client
// started has exited. Handles already given out keep working for calls that
// do not need events. Close is idempotent.
func (c *Client) Close() error {
	return c.CloseContext(context.Background())
}

// CloseContext is Close with a bound on how long draining queued events may
// take; when ctx ends first, the remaining events are abandoned and
// ctx.Err() is returned after the goroutines have exited.
func (c *Client) CloseContext(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.closeErr = c.events.close(ctx)
		c.ownedCancel()
		c.owned.Wait()
		c.ioMu.Lock()
		ios := make([]*taskIO, 0, len(c.unclosedIOs))
		for tio := range c.unclosedIOs {
			ios = append(ios, tio)
		}
		c.ioMu.Unlock()
		for _, tio := range ios {
			if err := tio.closeForClient(); err != nil {
				c.logger.WithError(err).Warn("failed to close the io of a task that failed to start")
			}
		}
	})
	return c.closeErr
}

// goOwned runs f in a goroutine that Close ends (through ctx) and waits
// for.
func (c *Client) goOwned(f func(ctx context.Context)) {
	c.owned.Go(func() { f(c.ownedCtx) })
}

func (c *Client) trackIO(t *taskIO) {
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.unclosedIOs[t] = struct{}{}
}

func (c *Client) untrackIO(t *taskIO) {
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	delete(c.unclosedIOs, t)
}

// withNamespace puts the client's namespace in ctx: every call a Client and
// its handles make is in that namespace, the one its events come from.
func (c *Client) withNamespace(ctx context.Context) context.Context {
	if ns, ok := namespaces.Namespace(ctx); ok && ns == c.ns {
		// Already there (the engine's, or ours a level up): adding it
		// again would copy the request metadata for nothing.
		return ctx
	}
	return namespaces.WithNamespace(ctx, c.ns)
}

// reserve marks process id of container ctrID as being created. It fails
// with Conflict when another call is creating it.
func (c *Client) reserve(ctrID, id string) (release func(), _ error) {
	key := ctrID + "/" + id
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	if _, busy := c.inflight[key]; busy {
		return nil, fmt.Errorf("process %s of container %s is being created: %w", id, ctrID, errdefs.ErrConflict)
	}
	c.inflight[key] = struct{}{}
	return func() {
		c.inflightMu.Lock()
		delete(c.inflight, key)
		c.inflightMu.Unlock()
	}, nil
}
