package containerdtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

var nonIdentifier = regexp.MustCompile(`[^A-Za-z0-9]+`)

// runSuffix tells this test process's namespaces from other processes'.
var runSuffix = func() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// ID turns t's name, followed by parts, into a containerd identifier (a
// container, exec or namespace ID): lower case letters, digits and dashes,
// at most 63 characters, the same for the same name.
func ID(t testing.TB, parts ...string) string {
	name := strings.Join(append([]string{t.Name()}, parts...), "-")
	id := strings.Trim(nonIdentifier.ReplaceAllString(name, "-"), "-")
	id = strings.ToLower(id)
	if len(id) > 60 {
		sum := sha256.Sum256([]byte(name))
		id = strings.Trim(id[:50], "-") + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return id
}

// Namespace gives t a containerd namespace of its own, named after t, and
// returns it with a context in it that is cancelled when t ends. Then
// whatever t left in the namespace (tasks, containers) is force-deleted,
// the namespace removed, and its runc state and cgroups with it.
func (d *Daemon) Namespace(t testing.TB) (context.Context, string) {
	t.Helper()
	// runc keeps container state under RuncRoot/<namespace> for every
	// containerd on the host: a suffix of this process's own keeps
	// concurrent or crashed test runs from colliding there.
	ns := ID(t) + "-" + runSuffix
	d.mu.Lock()
	d.namespaces[ns] = struct{}{}
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), ns))
	t.Cleanup(func() {
		cancel()
		d.cleanNamespace(t, ns)
	})
	return ctx, ns
}

// cleanNamespace force-deletes every task and container left in ns, then
// the namespace itself, its runc state and cgroups. When the daemon is
// down, Close does it.
func (d *Daemon) cleanNamespace(t testing.TB, ns string) {
	t.Helper()
	if !d.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	cli, err := containerd.New(d.Address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Errorf("clean namespace %s: %v", ns, err)
		return
	}
	defer cli.Close()
	ctrs, err := cli.Containers(ctx)
	if err != nil {
		t.Errorf("clean namespace %s: %v", ns, err)
		return
	}
	for _, c := range ctrs {
		if task, err := c.Task(ctx, nil); err == nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("clean namespace %s: delete container %s: %v", ns, c.ID(), err)
		}
	}
	if err := cli.NamespaceService().Delete(ctx, ns); err != nil && !errdefs.IsNotFound(err) {
		t.Logf("clean namespace %s: %v", ns, err)
	}
	if err := RemoveNamespace(ns); err != nil {
		t.Logf("clean namespace %s: %v", ns, err)
	}
}
