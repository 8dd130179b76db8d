package oci

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

// nsFiles names each namespace type's file under /proc/PID/ns.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.UserNamespace: "user", specs.MountNamespace: "mnt", specs.UTSNamespace: "uts",
	specs.IPCNamespace: "ipc", specs.NetworkNamespace: "net", specs.PIDNamespace: "pid",
	specs.CgroupNamespace: "cgroup", specs.TimeNamespace: "time",
}

// ExitStatus is a payload's exit status that the starter passes through as its own.
type ExitStatus int

func (e ExitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// ExitCode is the status to exit with; the CLI passes it on without printing anything.
func (e ExitStatus) ExitCode() int { return int(e) }

// exec runs another process in a created or running container: a starter that joins the
// namespaces of the container's process and its cgroup, then execs. Without Detach it
// waits and its exit status becomes ours (ExitStatus), signals sent to us are passed on.
func (e Engine) exec(id string, cfg *ocicfg.Config) error {
	st := store{root: cfg.Root}
	d, err := st.open(id, lockShared)
	if err != nil {
		return err
	}
	s, err := d.readState()
	if err != nil {
		d.close()
		return err
	}
	cur := status(d, s)
	if cur != StatusRunning && cur != StatusCreated {
		d.close()
		return fmt.Errorf("cannot exec in container %q: it is %s: %w", id, cur, errdefs.ErrState)
	}
	spec, err := readSpec(d)
	d.close()
	if err != nil {
		return err
	}
	proc, err := execProcess(spec.Process, cfg)
	if err != nil {
		return err
	}
	if err := validateProcess(proc); err != nil {
		return fmt.Errorf("process.%v: %w", err, errdefs.ErrUsage)
	}
	plan, err := joinPlan(s)
	if err != nil {
		return err
	}
	if proc.Terminal && cfg.Detach && cfg.ConsoleSocket == "" {
		return fmt.Errorf("a detached exec with a terminal needs --console-socket: %w", errdefs.ErrUsage)
	}
	if !proc.Terminal && cfg.ConsoleSocket != "" {
		return fmt.Errorf("--console-socket needs a terminal (--tty): %w", errdefs.ErrUsage)
	}
	var master *os.File
	req := spawnRequest{
		starter: e.starter(),
		id:      id,
		cfg: initConfig{Mode: modeExec, ID: id, Bundle: s.Bundle, Spec: spec, Process: proc,
			Setsid: cfg.Detach || proc.Terminal},
		onConsole: func(f *os.File, name string) error {
			if cfg.ConsoleSocket != "" {
				defer f.Close()
				return sendToConsoleSocket(cfg.ConsoleSocket, f, name)
			}
			master = f
			return nil
		},
		plan:  plan,
		stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr},
		onPid: func(pid int) error {
			m, err := loadCgroup(s)
			if err != nil {
				return err
			}
			return m.Join(pid)
		},
	}
	// Signals for the payload are caught from here on and passed to it once it runs
	// (SIGWINCH resizes its terminal instead).
	sigs := make(chan os.Signal, 16)
	if !cfg.Detach {
		signal.Notify(sigs)
		defer signal.Stop(sigs)
	}
	p, err := spawn(req)
	closeAll(req.keep)
	if err != nil {
		return err
	}
	if err := p.commit(); err != nil {
		killAndReap(p.pid)
		return err
	}
	if err := writePidFile(cfg.PidFile, p.pid); err != nil {
		return err
	}
	if cfg.Detach {
		return nil
	}
	if master != nil {
		defer master.Close()
		stop := proxyTerminal(master)
		defer stop()
	}
	return waitForwarding(p.pid, sigs, master)
}

// waitForwarding waits for pid, passing on the signals caught in sigs (not SIGCHLD, and
// not those the Go runtime uses itself), and returns its exit status.
func waitForwarding(pid int, sigs chan os.Signal, master *os.File) error {
	done := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		done <- ws
	}()
	for {
		select {
		case ws := <-done:
			if c := exitCode(ws); c != 0 {
				return ExitStatus(c)
			}
			return nil
		case sig := <-sigs:
			us, ok := sig.(unix.Signal)
			if !ok || us == unix.SIGCHLD || us == unix.SIGURG || us == unix.SIGPIPE {
				continue
			}
			if us == unix.SIGWINCH {
				if master != nil {
					copyWinsize(master)
				}
				continue
			}
			_ = unix.Kill(pid, us)
		}
	}
}

// joinPlan lists the namespaces of the container's process that differ from ours.
func joinPlan(s *State) (nsplan.Plan, error) {
	var p nsplan.Plan
	for _, ns := range s.Namespaces {
		name := nsFiles[ns.Type]
		target := "/proc/" + strconv.Itoa(s.Pid) + "/ns/" + name
		var a, b unix.Stat_t
		if err := unix.Stat(target, &a); err != nil {
			return p, fmt.Errorf("namespace %s of the container: %w", name, err)
		}
		if err := unix.Stat("/proc/self/ns/"+name, &b); err == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			continue
		}
		p.Join = append(p.Join, nsplan.Join{Type: nsTypes[ns.Type], Path: target})
	}
	if !alive(s.Pid, s.StartTime) {
		return p, fmt.Errorf("the container's process has exited: %w", errdefs.ErrState)
	}
	return p, nil
}

// execProcess is the process to exec: the one given whole, or the container's own with the
// request's args, extra env, cwd, user and tty.
func execProcess(base *specs.Process, cfg *ocicfg.Config) (*specs.Process, error) {
	if cfg.Process != nil {
		return cfg.Process, nil
	}
	p := *base
	p.Args = cfg.ExecArgs
	p.Env = append(append([]string(nil), base.Env...), cfg.ExecEnv...)
	p.Terminal = cfg.Tty
	p.ConsoleSize = nil
	if cfg.ExecCwd != "" {
		p.Cwd = cfg.ExecCwd
	}
	if cfg.ExecUser != "" {
		u, g, hasGroup := strings.Cut(cfg.ExecUser, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: a numeric UID[:GID]: %w", cfg.ExecUser, errdefs.ErrUsage)
		}
		p.User = specs.User{UID: uint32(uid), GID: base.User.GID, Umask: base.User.Umask}
		if hasGroup {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: a numeric UID[:GID]: %w", cfg.ExecUser, errdefs.ErrUsage)
			}
			p.User.GID = uint32(gid)
		}
	}
	return &p, nil
}
