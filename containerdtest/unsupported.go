//go:build !linux

package containerdtest

import (
	"fmt"
	"runtime"
	"syscall"
)

// RuncRoot is where the runc shim keeps container state, per namespace,
// for every containerd on the host. Only Linux has runc.
const RuncRoot = "/run/containerd/runc"

func platformCheck() error {
	return fmt.Errorf("containerd with runc needs Linux, this is %s", runtime.GOOS)
}

func sysProcAttr() *syscall.SysProcAttr { return nil }

func (d *Daemon) deleteRuncState([]string) error { return nil }

func unmountUnder(string) {}

// RemoveNamespace removes what the containers of namespace ns leave on the
// host outside the daemon's directory. Off Linux no container ran, so
// there is nothing to remove.
func RemoveNamespace(ns string) error { return nil }

// Leftovers returns what RemoveNamespace would remove; off Linux, nothing.
func Leftovers(ns string) []string { return nil }

// Shims returns the pids of shim processes serving the containerd at
// address; off Linux there are none.
func Shims(address string) []int { return nil }

// ShimsUnder returns the pids of shim processes serving a containerd whose
// socket is under dir; off Linux there are none.
func ShimsUnder(dir string) []int { return nil }

// KillCRIU kills the CRIU processes below shims; off Linux there are none.
func KillCRIU(shims []int) []int { return nil }

// KillCRIU kills the CRIU processes below the daemon's shims; off Linux
// there are none.
func (d *Daemon) KillCRIU(ns string) []int { return nil }

// CRIU returns the CRIU processes below shims; off Linux there are none.
func CRIU(shims []int) []int { return nil }

// CRIU returns the CRIU processes below the daemon's shims; off Linux
// there are none.
func (d *Daemon) CRIU(ns string) []int { return nil }
