package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/procstat"
)

// Files in a container's state directory, ROOT/ID.
const (
	stateFile    = "state.json"  // State, replaced atomically
	configFile   = "config.json" // the spec as create read it (poststop hooks, kill --all)
	execFifo     = "exec.fifo"   // the created process waits on it until start
	controlSock  = "control.sock"
	attachSock   = "attach.sock"   // the container's stdio, served by the monitor
	containerLog = "container.log" // the container's output, in monitor mode without --log-path
)

// State is what kerr keeps about one container in ROOT/ID/state.json. Status is not stored
// once the process runs: it is read from the process itself (see status), as the runtime
// may have no process of its own left to record it.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Creating is true until the process is set up and waits for start.
	Creating bool `json:"creating,omitempty"`
	// Pid is the container's process in the runtime's pid namespace, StartTime its start
	// time in clock ticks since boot (/proc/PID/stat), so that a reused pid is not taken
	// for it.
	Pid       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	// CgroupPath is the container's cgroup (also recorded before the process exists, so
	// that delete --force can clean up after a killed create).
	CgroupPath string `json:"cgroupPath,omitempty"`
	// CgroupDriver is what manages that cgroup (cgroups.DriverCgroupfs; "" in states
	// written before it was recorded is the same): later commands use the same.
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	// CgroupPending is true from the first write of the state until the cgroup has been
	// made (or taken) for this container. Until then the cgroup at CgroupPath may be
	// another container's, one that a refused create shares the cgroupsPath of: cleanup
	// then kills nothing in it and removes it only if it is empty.
	CgroupPending bool `json:"cgroupPending,omitempty"`
	// Monitor: the pid and start time of the monitor, when the container has one.
	MonitorPid       int    `json:"monitorPid,omitempty"`
	MonitorStartTime uint64 `json:"monitorStartTime,omitempty"`
	ControlSocket    string `json:"controlSocket,omitempty"`
	AttachSocket     string `json:"attachSocket,omitempty"`
	// LogPath is where the monitor writes the container's output.
	LogPath string `json:"logPath,omitempty"`
	// SyncSocket is create's --sync-socket: told of each change of status.
	SyncSocket string `json:"syncSocket,omitempty"`
	// ExitStatus and Finished are written by the monitor when the process ends.
	ExitStatus *int       `json:"exitStatus,omitempty"`
	Finished   *time.Time `json:"finished,omitempty"`
	// OOMKilled: the process died of SIGKILL after the OOM killer had killed in its
	// memory cgroup (the monitor checks when it reaps it).
	OOMKilled bool `json:"oomKilled,omitempty"`
	// Namespaces the container's process was given, by spec type, for exec: whether each
	// was new or joined.
	Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
}

// Status values of the runtime spec.
const (
	StatusCreating = "creating"
	StatusCreated  = "created"
	StatusRunning  = "running"
	StatusPaused   = "paused"
	StatusStopped  = "stopped"
)

// store is the state root (`--root`): one directory per container.
type store struct{ root string }

// dir is one container's state directory, open and locked.
type dir struct {
	path string
	fd   int
}

// lockMode says how openDir locks.
const (
	lockShared    = unix.LOCK_SH
	lockExclusive = unix.LOCK_EX
)

// containerPath returns ROOT/ID after checking id, the only way a path is built from an id.
func (s store) containerPath(id string) (string, error) {
	if err := envelope.ValidateID(id); err != nil {
		return "", fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	return filepath.Join(s.root, id), nil
}

// ensureRoot creates the state root, 0700 root-owned, and refuses one that is not a
// directory of root closed to others: the state it holds decides which pids root signals.
func (s store) ensureRoot() error {
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return fmt.Errorf("state root %s: %w", s.root, errdefs.ClassifyIO(err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.root, &st); err != nil {
		return fmt.Errorf("state root %s: %w", s.root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("state root %s must be a directory of root, not writable by others: %w", s.root, errdefs.ErrDenied)
	}
	return nil
}

// create makes and locks ROOT/ID; an existing one is ErrExists.
func (s store) create(id string) (*dir, error) {
	p, err := s.containerPath(id)
	if err != nil {
		return nil, err
	}
	if err := s.ensureRoot(); err != nil {
		return nil, err
	}
	if err := unix.Mkdir(p, 0o700); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("container %q already exists: %w", id, errdefs.ErrExists)
		}
		return nil, fmt.Errorf("state dir %s: %w", p, errdefs.ClassifyIO(err))
	}
	d, err := openLocked(p, lockExclusive)
	if err != nil {
		_ = unix.Rmdir(p)
		return nil, err
	}
	return d, nil
}

// open opens and locks ROOT/ID of an existing container; a missing one is ErrNotFound.
func (s store) open(id string, how int) (*dir, error) {
	p, err := s.containerPath(id)
	if err != nil {
		return nil, err
	}
	d, err := openLocked(p, how)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	return d, err
}

func openLocked(p string, how int) (*dir, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	for {
		err = unix.Flock(fd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// A delete may have removed it while we waited for the lock.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Nlink == 0 {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: p, Err: unix.ENOENT}
	}
	return &dir{path: p, fd: fd}, nil
}

// close unlocks and closes.
func (d *dir) close() {
	if d.fd >= 0 {
		_ = unix.Close(d.fd)
		d.fd = -1
	}
}

// file returns the path of name in the state dir.
func (d *dir) file(name string) string { return filepath.Join(d.path, name) }

// readState reads state.json. A directory without it is a create that was killed early.
func (d *dir) readState() (*State, error) {
	b, err := readFileAt(d.fd, stateFile, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", filepath.Base(d.path), err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state of %s: %w", filepath.Base(d.path), err)
	}
	return &s, nil
}

// writeState replaces state.json atomically (temp file, fsync-less rename: /run is
// scratch, and a torn write must never be seen).
func (d *dir) writeState(s *State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAt(d.fd, stateFile, b)
}

func writeFileAt(dirfd int, name string, b []byte) error {
	tmp := "." + name + ".tmp"
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, errdefs.ClassifyIO(err))
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("write %s: %w", name, errdefs.ClassifyIO(err))
	}
	return nil
}

func readFileAt(dirfd int, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return b, nil
}

// remove deletes the state directory and everything in it (files only; it has no subdirs).
func (d *dir) remove() error {
	f, err := os.Open(d.path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("list %s: %w", d.path, err)
	}
	for _, n := range names {
		if err := unix.Unlinkat(d.fd, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", d.path, n, err)
		}
	}
	if err := unix.Rmdir(d.path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", d.path, err)
	}
	return nil
}

// alive reports whether pid is still the process that started at start.
func alive(pid int, start uint64) bool { return procstat.Running(pid, start) }
