package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"

	"github.com/Microsoft/go-winio"
	"github.com/containerd/containerd/v2/pkg/cio"
)

// fifoPaths returns the named pipes of process processID of the container
// whose bundle is bundleDir, in moby's naming:
// \\.\pipe\containerd-<container>-<process>-stdin|stdout|stderr. There
// is no stdin pipe without withStdin and no stderr pipe with a terminal.
func fifoPaths(bundleDir, processID string, withStdin, withTerminal bool) cio.Config {
	containerID := filepath.Base(bundleDir)
	name := func(stream string) string {
		return fmt.Sprintf(`\\.\pipe\containerd-%s-%s-%s`, containerID, processID, stream)
	}
	cfg := cio.Config{Terminal: withTerminal, Stdout: name("stdout")}
	if withStdin {
		cfg.Stdin = name("stdin")
	}
	if !withTerminal {
		cfg.Stderr = name("stderr")
	}
	return cfg
}

// newFIFOSet returns the pipe names of a new process as a set. Named pipes
// exist only while they are listened on, so there is nothing on disk to
// make, check or remove: a name in use makes newDirectIO fail.
func newFIFOSet(_ fifoOwner, cfg cio.Config, _ func() error) (*cio.FIFOSet, error) {
	return cio.NewFIFOSet(cfg, nil), nil
}

// newDirectIO listens on the named pipes of fifos; the shim connects to
// them as a client once it starts the process.
func newDirectIO(ctx context.Context, fifos *cio.FIFOSet) (_ *cio.DirectIO, retErr error) {
	var opened []*pipeConn
	defer func() {
		if retErr != nil {
			for _, p := range opened {
				_ = p.Close()
			}
		}
	}()
	listen := func(path string) (*pipeConn, error) {
		if path == "" {
			return nil, nil
		}
		p, err := listenPipe(path)
		if err != nil {
			return nil, fmt.Errorf("listen on pipe %s: %w", path, err)
		}
		opened = append(opened, p)
		return p, nil
	}
	stdin, err := listen(fifos.Stdin)
	if err != nil {
		return nil, err
	}
	stdout, err := listen(fifos.Stdout)
	if err != nil {
		return nil, err
	}
	stderr, err := listen(fifos.Stderr)
	if err != nil {
		return nil, err
	}
	// A stream that is not there must reach cio as a nil interface, not
	// as a nil *pipeConn.
	var (
		in        io.WriteCloser
		out, errs io.ReadCloser
	)
	if stdin != nil {
		in = stdin
	}
	if stdout != nil {
		out = stdout
	}
	if stderr != nil {
		errs = stderr
	}
	return cio.NewDirectIOFromFIFOSet(context.WithoutCancel(ctx), in, out, errs, fifos), nil
}

// pipeConn is one stdio stream over a named pipe: reads and writes wait
// until the shim has connected, or the pipe is closed. Its accepting
// goroutine ends with either.
type pipeConn struct {
	l     net.Listener
	ready chan struct{} // closed once accepted or closed
	conn  net.Conn      // set before ready is closed; nil if never connected
	once  sync.Once
	err   error
}

func listenPipe(path string) (*pipeConn, error) {
	l, err := winio.ListenPipe(path, nil)
	if err != nil {
		return nil, err
	}
	p := &pipeConn{l: l, ready: make(chan struct{})}
	go func() {
		defer close(p.ready)
		if conn, err := l.Accept(); err == nil {
			p.conn = conn
		}
	}()
	return p, nil
}

func (p *pipeConn) Read(b []byte) (int, error) {
	<-p.ready
	if p.conn == nil {
		return 0, net.ErrClosed
	}
	return p.conn.Read(b)
}

func (p *pipeConn) Write(b []byte) (int, error) {
	<-p.ready
	if p.conn == nil {
		return 0, net.ErrClosed
	}
	return p.conn.Write(b)
}

// Close stops listening, which ends a pending accept, and closes the
// connection if there is one.
func (p *pipeConn) Close() error {
	p.once.Do(func() {
		p.err = p.l.Close()
		<-p.ready
		if p.conn != nil {
			p.err = errors.Join(p.err, p.conn.Close())
		}
	})
	return p.err
}
