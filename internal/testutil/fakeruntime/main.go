// Command fakeruntime is the runtime of the checkpoint tests: a runc wrapper,
// selected through the runc shim's BinaryName option, that passes every
// command to the real runc except the two CRIU would do, which cannot dump
// on every test machine:
//
//   - checkpoint writes known files (fixed names, random content) into
//     --image-path and, unless --leave-running, kills the container with
//     the real runc and waits until it has stopped;
//   - restore starts the container from its bundle with `runc run --detach`
//     and the flags of the restore that apply to a run, keeping the stdio
//     the shim gave it.
//
// A container opts in to records by the annotation named by RecordAnnotation:
// its value is a directory where checkpoint leaves a copy of the files it
// wrote (checkpoint/) and restore a copy of the files it received
// (restore/), for the test to compare.
//
// Errors go to stderr and, as a JSON line, to the --log file, where the
// shim looks for the runtime's last error.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// RecordAnnotation names the record directory of a container.
	RecordAnnotation = "ctrkit.libcontainerd.test/fakeruntime-record"

	// stopTimeout bounds the wait for a killed container to stop.
	stopTimeout = 10 * time.Second
)

// Global runc flags that take a value; the others are booleans.
var globalValueFlags = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// Flags of checkpoint and restore that take a value, as runc 1.1 defines
// them.
var (
	checkpointValueFlags = map[string]bool{
		"image-path": true, "work-path": true, "parent-path": true, "status-fd": true,
		"page-server": true, "manage-cgroups-mode": true, "empty-ns": true,
	}
	restoreValueFlags = map[string]bool{
		"console-socket": true, "image-path": true, "work-path": true, "manage-cgroups-mode": true,
		"bundle": true, "b": true, "pid-file": true, "empty-ns": true, "lsm-profile": true,
		"lsm-mount-context": true, "parent-path": true, "page-server": true, "status-fd": true,
	}
	// restoreToRun are the restore flags that `runc run` takes too; the
	// others are CRIU's.
	restoreToRun = map[string]bool{
		"console-socket": true, "bundle": true, "b": true, "pid-file": true,
		"detach": true, "d": true, "no-subreaper": true, "no-pivot": true,
	}
)

// flag is one parsed command line flag.
type flag struct {
	name  string
	value string
	raw   []string // as given, one or two arguments
}

type invocation struct {
	globals []string // global flags as given
	logFile string
	cmd     string
	flags   []flag
	args    []string // positional arguments after the flags
}

func main() {
	runc, err := realRunc()
	if err != nil {
		fail(nil, err)
	}
	inv, err := parse(os.Args[1:])
	if err != nil {
		fail(nil, err)
	}
	switch inv.cmd {
	case "checkpoint":
		err = checkpoint(runc, inv)
	case "restore":
		err = restore(runc, inv)
	default:
		err = syscall.Exec(runc, append([]string{"runc"}, os.Args[1:]...), os.Environ())
	}
	if err != nil {
		fail(inv, err)
	}
}

// realRunc is the runc that does the work: the one on PATH, which the test
// harness puts there, or Debian's.
func realRunc() (string, error) {
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		return "", fmt.Errorf("fakeruntime: runc not found: %w", err)
	}
	return "/usr/sbin/runc", nil
}

func fail(inv *invocation, err error) {
	msg := "fakeruntime: " + strings.TrimPrefix(err.Error(), "fakeruntime: ")
	fmt.Fprintln(os.Stderr, msg)
	if inv != nil && inv.logFile != "" {
		if f, ferr := os.OpenFile(inv.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); ferr == nil {
			line, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().UTC().Format(time.RFC3339Nano)})
			_, _ = f.Write(append(line, '\n'))
			f.Close()
		}
	}
	os.Exit(1)
}

// parse splits a runc command line into global flags, the command, its
// flags and its arguments. Only checkpoint and restore flags are parsed;
// other commands pass through unparsed.
func parse(argv []string) (*invocation, error) {
	inv := &invocation{}
	i := 0
	for ; i < len(argv) && strings.HasPrefix(argv[i], "-"); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(argv[i], "-"), "=")
		inv.globals = append(inv.globals, argv[i])
		if globalValueFlags[name] && !hasValue {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("global flag %s needs a value", argv[i])
			}
			i++
			value = argv[i]
			inv.globals = append(inv.globals, value)
		}
		if name == "log" {
			inv.logFile = value
		}
	}
	if i == len(argv) {
		return inv, nil
	}
	inv.cmd = argv[i]
	var valueFlags map[string]bool
	switch inv.cmd {
	case "checkpoint":
		valueFlags = checkpointValueFlags
	case "restore":
		valueFlags = restoreValueFlags
	default:
		return inv, nil
	}
	for i++; i < len(argv) && strings.HasPrefix(argv[i], "-"); i++ {
		f := flag{raw: []string{argv[i]}}
		var hasValue bool
		f.name, f.value, hasValue = strings.Cut(strings.TrimLeft(argv[i], "-"), "=")
		if valueFlags[f.name] && !hasValue {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("%s flag %s needs a value", inv.cmd, argv[i])
			}
			i++
			f.value = argv[i]
			f.raw = append(f.raw, f.value)
		}
		inv.flags = append(inv.flags, f)
	}
	inv.args = argv[i:]
	if len(inv.args) != 1 {
		return nil, fmt.Errorf("%s wants one container id, got %q", inv.cmd, inv.args)
	}
	return inv, nil
}

func (inv *invocation) flag(names ...string) (string, bool) {
	for _, f := range inv.flags {
		for _, n := range names {
			if f.name == n {
				return f.value, true
			}
		}
	}
	return "", false
}

// state is the part of `runc state` the runtime reads.
type state struct {
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

// runRunc runs the real runc with inv's global flags and args.
func runRunc(runc string, inv *invocation, args ...string) ([]byte, error) {
	cmd := exec.Command(runc, append(append([]string{}, inv.globals...), args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func containerState(runc string, inv *invocation, id string) (*state, error) {
	out, err := runRunc(runc, inv, "state", id)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("decode runc state: %w", err)
	}
	return &st, nil
}

// checkpoint writes the fake checkpoint of container id into --image-path
// and, unless --leave-running, stops the container as a CRIU dump would.
func checkpoint(runc string, inv *invocation) error {
	id := inv.args[0]
	imagePath, ok := inv.flag("image-path")
	if !ok || imagePath == "" {
		return errors.New("checkpoint: no --image-path")
	}
	_, leaveRunning := inv.flag("leave-running")
	st, err := containerState(runc, inv, id)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if err := writeCheckpoint(imagePath, id, leaveRunning); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if rec := st.Annotations[RecordAnnotation]; rec != "" {
		if err := record(imagePath, filepath.Join(rec, "checkpoint")); err != nil {
			return fmt.Errorf("checkpoint %s: record: %w", id, err)
		}
	}
	if leaveRunning {
		return nil
	}
	if _, err := runRunc(runc, inv, "kill", id, "KILL"); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	deadline := time.Now().Add(stopTimeout)
	for {
		st, err := containerState(runc, inv, id)
		if err != nil || st.Status == "stopped" {
			// An error means runc no longer knows the container: it is
			// gone, which is stopped too.
			return nil
		}
		if st.Status == "paused" {
			// containerd pauses the task for the checkpoint; a frozen
			// process in a cgroup v1 freezer dies only once thawed.
			_, _ = runRunc(runc, inv, "resume", id)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("checkpoint %s: container still %s %s after kill", id, st.Status, stopTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeCheckpoint writes the fake CRIU images: a description with a random
// token, a page file of random bytes and a file in a subdirectory.
func writeCheckpoint(dir, id string, leaveRunning bool) error {
	token := make([]byte, 16)
	pages := make([]byte, 192<<10)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	if _, err := rand.Read(pages); err != nil {
		return err
	}
	desc, err := json.MarshalIndent(map[string]any{
		"id": id, "token": hex.EncodeToString(token), "leaveRunning": leaveRunning,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "fdinfo"), 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{"fake-checkpoint.json", append(desc, '\n'), 0o644},
		{"pages-1.img", pages, 0o600},
		{"fdinfo/fd-2.img", token, 0o600},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// restore records the checkpoint it was given and then runs the container
// from its bundle in place of a CRIU restore.
func restore(runc string, inv *invocation) error {
	id := inv.args[0]
	imagePath, ok := inv.flag("image-path")
	if !ok || imagePath == "" {
		return errors.New("restore: no --image-path")
	}
	bundle, ok := inv.flag("bundle", "b")
	if !ok {
		bundle = "."
	}
	if _, err := os.Stat(filepath.Join(imagePath, "fake-checkpoint.json")); err != nil {
		return fmt.Errorf("restore %s: not a checkpoint of fakeruntime: %w", id, err)
	}
	annotations, err := bundleAnnotations(bundle)
	if err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	if rec := annotations[RecordAnnotation]; rec != "" {
		if err := record(imagePath, filepath.Join(rec, "restore")); err != nil {
			return fmt.Errorf("restore %s: record: %w", id, err)
		}
	}
	args := append([]string{"runc"}, inv.globals...)
	args = append(args, "run")
	for _, f := range inv.flags {
		if restoreToRun[f.name] {
			args = append(args, f.raw...)
		}
	}
	args = append(args, id)
	return syscall.Exec(runc, args, os.Environ())
}

func bundleAnnotations(bundle string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("decode %s/config.json: %w", bundle, err)
	}
	return spec.Annotations, nil
}

// record replaces dst with a copy of the tree at src (regular files and
// directories, with their permission bits).
func record(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.RemoveAll(tmp)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(tmp, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			return os.Chmod(out, info.Mode().Perm())
		case d.Type().IsRegular():
			return copyFile(p, out, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: unexpected file type %s", p, d.Type())
		}
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}
