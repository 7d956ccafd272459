// Package leftover forwards to the containerdtest kit for the programs
// that still import it; new code uses containerdtest directly.
package leftover

import "github.com/ctrkit/libcontainerd/containerdtest"

// RuncRoot is containerdtest.RuncRoot.
const RuncRoot = containerdtest.RuncRoot

// RemoveNamespace is containerdtest.RemoveNamespace.
func RemoveNamespace(ns string) error { return containerdtest.RemoveNamespace(ns) }

// Paths is containerdtest.Leftovers.
func Paths(ns string) []string { return containerdtest.Leftovers(ns) }

// Shims is containerdtest.Shims.
func Shims(address string) []int { return containerdtest.Shims(address) }
