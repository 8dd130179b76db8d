package oci

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
	"github.com/kerr-hpc/kerr/starter/oci/rootfs"
)

// InitEngine is the process that becomes a container's: the first one (create) or another
// one (exec). Only the runtime starts it (the starter execs itself with a namespace plan
// and a sync socket), never the frontend, and only in the root-only starter.
type InitEngine struct {
	// SyncFD is the fd the C stage was given with --sync-fd; -1 when none.
	SyncFD int
}

// Name is "oci-init".
func (InitEngine) Name() string { return initEngineName }

// Run sets the process up and execs the payload; it returns only on error, which also goes
// to the runtime on the sync socket. Privileges: root of the container's namespaces (the C
// stage entered them), single role: this process becomes the container's.
func (e InitEngine) Run(env *envelope.Envelope) error {
	// Capabilities, no_new_privs, seccomp, the personality and the cgroup namespace belong
	// to a thread: all of it happens on this one, which also execs the payload.
	runtime.LockOSThread()
	if e.SyncFD < 0 {
		return fmt.Errorf("%s is started by the runtime only: %w", initEngineName, envelope.ErrInvalid)
	}
	unix.CloseOnExec(e.SyncFD)
	conn := nsplan.NewConn(os.NewFile(uintptr(e.SyncFD), "sync"))
	var cfg initConfig
	if err := envelope.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if cfg.Spec == nil || cfg.Spec.Linux == nil || cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return fmt.Errorf("container process config is incomplete: %w", envelope.ErrInvalid)
	}
	err := runInit(conn, &cfg)
	if errors.Is(err, errRuntimeGone) {
		// The runtime died before it recorded us: nobody would ever start or delete us.
		os.Exit(1)
	}
	if conn.Send(nsplan.MsgError, []byte(err.Error())) == nil {
		// The runtime has the error and reports it (kerr-runc on its stderr and in --log).
		// Printed here too it would reach the container's stderr a second time, which
		// under a shim is the container's log.
		return reportedError{err}
	}
	return err
}

// Report prints an error the runtime did not get, as the starter's own; one the runtime
// got (and reports) is not printed again.
func (InitEngine) Report(err error) int {
	var rep reportedError
	if !errors.As(err, &rep) {
		fmt.Fprintf(os.Stderr, "starter: %v\n", err)
	}
	return errdefs.ExitCode(err)
}

var errRuntimeGone = errors.New("the runtime went away")

// await reads the next message and checks its type.
func await(conn *nsplan.Conn, want uint32) (*os.File, error) {
	t, _, f, err := conn.RecvFile()
	if errors.Is(err, nsplan.ErrClosed) {
		return nil, errRuntimeGone
	}
	if err != nil {
		return nil, err
	}
	if t != want {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("sync: got message %d, want %d", t, want)
	}
	return f, nil
}

func runInit(conn *nsplan.Conn, cfg *initConfig) error {
	fifo, err := await(conn, nsplan.MsgGo)
	if err != nil {
		return err
	}
	if cfg.UnshareCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	if cfg.Mode == modeExec {
		return runExecProcess(conn, cfg)
	}
	if fifo == nil {
		return fmt.Errorf("sync: no exec fifo")
	}
	// The container's process leads its own session, as with runc.
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	// The exec fifo, opened read-write now, as root and through our fd of it: the open
	// does not block, and nothing the user switch or pivot_root does can change what it
	// is. Start writes one byte into it; the read below waits for that byte.
	startFifo, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(fifo.Fd())), os.O_RDWR|unix.O_CLOEXEC, 0)
	fifo.Close()
	if err != nil {
		return fmt.Errorf("open the exec fifo: %w", err)
	}
	defer startFifo.Close()
	spec := cfg.Spec
	// Written through the host's /proc, before the container's is mounted
	// (CVE-2025-52881: nothing in the image can redirect this write).
	if err := setOOMScoreAdj(cfg.Process); err != nil {
		return err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("setdomainname: %w", err)
		}
	}
	err = rootfs.Setup(rootfs.Config{
		Spec:      spec,
		Bundle:    cfg.Bundle,
		NoPivot:   cfg.NoPivot,
		NoMountNS: !hasNamespace(spec.Linux, specs.MountNamespace),
		InUserNS:  cfg.InUserNS,
		BeforePivot: func() error {
			if err := conn.Send(nsplan.MsgHooks, nil); err != nil {
				return err
			}
			if _, err := await(conn, nsplan.MsgHooksDone); err != nil {
				return err
			}
			if spec.Hooks != nil && len(spec.Hooks.CreateContainer) > 0 {
				st := &State{ID: cfg.ID, Bundle: cfg.Bundle, Annotations: spec.Annotations}
				return runHooks("createContainer", spec.Hooks.CreateContainer, hookState(st, StatusCreating, os.Getpid()))
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if err := rootfs.WriteSysctls(spec.Linux.Sysctl); err != nil {
		return err
	}
	if cfg.Process.Terminal {
		master, err := newConsole(cfg.Process.ConsoleSize, true)
		if err != nil {
			return err
		}
		if err := sendConsole(conn, master); err != nil {
			return errRuntimeGone
		}
	}
	p := cfg.Process
	path, err := lookPath(p)
	if err != nil {
		return err
	}
	filter, err := finalize(p, spec.Linux)
	if err != nil {
		return err
	}
	if err := conn.Send(nsplan.MsgReady, nil); err != nil {
		return errRuntimeGone
	}
	if _, err := await(conn, nsplan.MsgCommit); err != nil {
		return err
	}
	conn.Close()
	if err := waitForStart(startFifo); err != nil {
		return err
	}
	if spec.Hooks != nil && len(spec.Hooks.StartContainer) > 0 {
		st := &State{ID: cfg.ID, Bundle: cfg.Bundle, Annotations: spec.Annotations}
		if err := runHooks("startContainer", spec.Hooks.StartContainer, hookState(st, StatusCreated, os.Getpid())); err != nil {
			return err
		}
	}
	return execPayload(p, filter, path)
}

// waitForStart blocks until start writes its byte into the exec fifo.
func waitForStart(f *os.File) error {
	b := make([]byte, 1)
	for {
		n, err := f.Read(b)
		if n == 1 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wait for start: %w", err)
		}
	}
}

// runExecProcess is an exec'd process: the C stage joined the container's namespaces (the
// mount namespace's root is the container's root), the runtime put it in its cgroup.
func runExecProcess(conn *nsplan.Conn, cfg *initConfig) error {
	if cfg.Setsid {
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	p := cfg.Process
	if p.Terminal {
		master, err := newConsole(p.ConsoleSize, false)
		if err != nil {
			return err
		}
		if err := sendConsole(conn, master); err != nil {
			return errRuntimeGone
		}
	}
	if err := setOOMScoreAdj(p); err != nil {
		return err
	}
	path, err := lookPath(p)
	if err != nil {
		return err
	}
	filter, err := finalize(p, cfg.Spec.Linux)
	if err != nil {
		return err
	}
	if err := conn.Send(nsplan.MsgReady, nil); err != nil {
		return errRuntimeGone
	}
	if _, err := await(conn, nsplan.MsgCommit); err != nil {
		return err
	}
	conn.Close()
	return execPayload(p, filter, path)
}
