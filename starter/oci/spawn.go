package oci

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
)

// initEngineName is the internal engine of the process that becomes a container's: the
// starter execs itself with it, never the frontend.
const initEngineName = "oci-init"

// Modes of the container's process.
const (
	modeCreate = "create" // a container's first process: rootfs, then wait for start
	modeExec   = "exec"   // another process in a running container
)

// initConfig is what the container's process is told, in the envelope after the plan.
type initConfig struct {
	Mode    string         `json:"mode"`
	ID      string         `json:"id"`
	Bundle  string         `json:"bundle"`
	Spec    *specs.Spec    `json:"spec"`
	Process *specs.Process `json:"process"`
	NoPivot bool           `json:"noPivot,omitempty"`
	// UnshareCgroupNS: create the cgroup namespace in Go, once the runtime has put the
	// process in its cgroup, so that the namespace's root is the container's cgroup.
	UnshareCgroupNS bool `json:"unshareCgroupNS,omitempty"`
	InUserNS        bool `json:"inUserNS,omitempty"`
	// Detached exec: the process gets a session of its own.
	Setsid bool `json:"setsid,omitempty"`
}

// spawnRequest is one container process to start.
type spawnRequest struct {
	starter string
	id      string
	cfg     initConfig
	plan    nsplan.Plan
	stdio   [3]*os.File
	// keep are fds for the payload (--preserve-fds), at 3 .. in its process.
	keep []*os.File
	// fifo (create only) goes to the process with the go-ahead message: it opens it for
	// writing, which blocks until `start` opens it for reading.
	fifo *os.File
	// onPid runs once the process's pid is known and before it does anything: cgroups.
	onPid func(pid int) error
	// onHooks runs when the process has mounted everything, before pivot_root: the
	// runtime's prestart and createRuntime hooks.
	onHooks func(pid int) error
	// onConsole takes the pty master of a process with a terminal (nil: none expected).
	onConsole func(master *os.File, name string) error
}

// spawned is a container process that is set up and waits for commit.
type spawned struct {
	pid  int
	conn *nsplan.Conn
}

// commit tells the process that the runtime recorded it: from here it may wait for start
// (or exec its payload); until then, the runtime's death makes it exit.
func (s *spawned) commit() error {
	err := s.conn.Send(nsplan.MsgCommit, nil)
	s.conn.Close()
	return err
}

// abort kills the process and reaps it.
func (s *spawned) abort() {
	s.conn.Close()
	killAndReap(s.pid)
}

func killAndReap(pid int) {
	if pid <= 0 {
		return
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// spawn starts the starter as a container's process: the namespace plan and the envelope
// on its config fd, the sync socket on fd 4. It answers the C stage (uid maps, the pid
// after the fork into a pid namespace), runs onPid and onHooks when the process asks, and
// returns when the process is set up. On error the process is killed and reaped.
// Privileges: root in the runtime's namespaces.
func spawn(r spawnRequest) (*spawned, error) {
	env, err := envelope.New(initEngineName, r.id, r.cfg)
	if err != nil {
		return nil, err
	}
	payload, err := env.Encode()
	if err != nil {
		return nil, err
	}
	plan, err := r.plan.Encode()
	if err != nil {
		return nil, err
	}
	cfgFile, err := memfile("kerr-init-config", append(plan, payload...))
	if err != nil {
		return nil, err
	}
	defer cfgFile.Close()
	parentSock, childSock, err := nsplan.Pair()
	if err != nil {
		return nil, err
	}
	conn := nsplan.NewConn(parentSock)
	bin, err := readOnlyClone(r.starter)
	if err != nil {
		conn.Close()
		childSock.Close()
		return nil, err
	}
	defer bin.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(int(bin.Fd())),
		Args:       starterArgs(len(r.keep)),
		Env:        []string{},
		Stdin:      r.stdio[0],
		Stdout:     r.stdio[1],
		Stderr:     r.stdio[2],
		ExtraFiles: append(append([]*os.File(nil), r.keep...), cfgFile, childSock),
	}
	err = cmd.Start()
	childSock.Close()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start the container process: %w", err)
	}
	direct := cmd.Process.Pid
	s := &spawned{conn: conn}
	needMaps := r.plan.Unshare&unix.CLONE_NEWUSER != 0
	forks := r.plan.ForksChild()
	if !forks {
		s.pid = direct
	}
	fail := func(err error) (*spawned, error) {
		conn.Close()
		if forks && s.pid == 0 {
			_ = cmd.Process.Kill()
		}
		killAndReap(s.pid)
		if s.pid != direct {
			_, _ = cmd.Process.Wait()
		}
		return nil, err
	}
	goSent := false
	// sendGo lets the process go on once the C stage is done with the runtime.
	sendGo := func() error {
		if goSent || needMaps || s.pid == 0 {
			return nil
		}
		goSent = true
		if r.onPid != nil {
			if err := r.onPid(s.pid); err != nil {
				return err
			}
		}
		if r.fifo != nil {
			return conn.SendFile(nsplan.MsgGo, nil, r.fifo)
		}
		return conn.Send(nsplan.MsgGo, nil)
	}
	if err := sendGo(); err != nil {
		return fail(err)
	}
	for {
		t, p, f, err := conn.RecvFile()
		if f != nil && t != nsplan.MsgConsole {
			f.Close()
		}
		if errors.Is(err, nsplan.ErrClosed) {
			return fail(exitedEarly(cmd, s.pid, direct))
		}
		if err != nil {
			return fail(err)
		}
		switch t {
		case nsplan.MsgUsermap:
			if !needMaps {
				return fail(fmt.Errorf("container process asked for uid maps it does not need"))
			}
			if err := writeIDMaps(direct, r.cfg.Spec.Linux); err != nil {
				return fail(err)
			}
			if err := conn.Send(nsplan.MsgUsermapDone, nil); err != nil {
				return fail(err)
			}
			needMaps = false
		case nsplan.MsgPID:
			if !forks || s.pid != 0 {
				return fail(fmt.Errorf("unexpected pid message from the container process"))
			}
			if s.pid, err = nsplan.PID(p); err != nil {
				return fail(err)
			}
			// The process in between has exited or is about to.
			if st, err := cmd.Process.Wait(); err != nil || !st.Success() {
				return fail(fmt.Errorf("container process: the fork into its pid namespace failed: %v", st))
			}
		case nsplan.MsgHooks:
			if r.onHooks != nil {
				if err := r.onHooks(s.pid); err != nil {
					return fail(err)
				}
			}
			if err := conn.Send(nsplan.MsgHooksDone, nil); err != nil {
				return fail(err)
			}
		case nsplan.MsgConsole:
			if f == nil || r.onConsole == nil {
				if f != nil {
					f.Close()
				}
				return fail(fmt.Errorf("unexpected terminal from the container process"))
			}
			if err := r.onConsole(f, string(p)); err != nil {
				return fail(err)
			}
		case nsplan.MsgReady:
			return s, nil
		case nsplan.MsgError:
			return fail(errors.New(strings.TrimPrefix(strings.TrimSpace(string(p)), "starter: ")))
		default:
			return fail(fmt.Errorf("unexpected message %d from the container process", t))
		}
		if err := sendGo(); err != nil {
			return fail(err)
		}
	}
}

// starterArgs is the command line of a starter the runtime starts: the kept fds first at 3
// and up, then the config and the sync socket.
func starterArgs(keep int) []string {
	args := []string{"starter", "--config-fd", strconv.Itoa(3 + keep), "--sync-fd", strconv.Itoa(4 + keep)}
	if keep > 0 {
		args = append(args, "--keep-fds", strconv.Itoa(keep))
	}
	return args
}

// exitedEarly describes a container process that closed the sync socket without a word.
func exitedEarly(cmd *exec.Cmd, pid, direct int) error {
	var ws unix.WaitStatus
	if pid > 0 && pid != direct {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err == nil {
			return fmt.Errorf("container process exited before it was set up (%s)", describeWait(ws))
		}
	}
	st, err := cmd.Process.Wait()
	if err != nil {
		return fmt.Errorf("container process exited before it was set up")
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok {
		return fmt.Errorf("container process exited before it was set up (%s)", describeWait(unix.WaitStatus(ws)))
	}
	return fmt.Errorf("container process exited before it was set up (%v)", st)
}

// describeWait says how a process ended: "exit status N" or "killed by SIGNAME".
func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		if name := unix.SignalName(ws.Signal()); name != "" {
			return "killed by " + name
		}
		return "killed by signal " + strconv.Itoa(int(ws.Signal()))
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// exitCode is a wait status as a shell shows it: the code, or 128+signal.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// writeIDMaps writes the user namespace's maps of pid. Privileges: root (CAP_SETUID and
// CAP_SETGID in the runtime's user namespace).
func writeIDMaps(pid int, l *specs.Linux) error {
	write := func(name string, m []specs.LinuxIDMapping) error {
		var b strings.Builder
		for _, e := range m {
			fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
		}
		p := "/proc/" + strconv.Itoa(pid) + "/" + name
		if err := os.WriteFile(p, []byte(b.String()), 0); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	if err := write("uid_map", l.UIDMappings); err != nil {
		return err
	}
	return write("gid_map", l.GIDMappings)
}

// readOnlyClone returns an fd of the starter binary on a detached, read-only bind mount of
// it, to exec the container's process from (CVE-2019-5736): a process in the container that
// reaches /proc/PID/exe of the starter while it runs there can then not open the host's
// binary for writing (EROFS), neither now nor after the exec. The mount is attached
// nowhere and goes with its last reference. Privileges: root (CAP_SYS_ADMIN).
func readOnlyClone(path string) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone %s read-only: %w", path, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("clone %s read-only: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// memfile returns a sealed-size, close-on-exec memory file holding b, positioned at 0: the
// starter reads its config from it to EOF.
func memfile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	return f, nil
}

// nsPlan turns the spec's namespaces into a plan: joined ones by path, new ones created.
// The cgroup namespace is left to Go (initConfig.UnshareCgroupNS).
func nsPlan(l *specs.Linux) (nsplan.Plan, bool) {
	var p nsplan.Plan
	cgroupNS := false
	for _, ns := range l.Namespaces {
		flag := nsTypes[ns.Type]
		switch {
		case ns.Path != "":
			p.Join = append(p.Join, nsplan.Join{Type: flag, Path: ns.Path})
		case ns.Type == specs.CgroupNamespace:
			cgroupNS = true
		default:
			p.Unshare |= flag
		}
	}
	return p, cgroupNS
}
