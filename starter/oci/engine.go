// Package oci runs OCI runtime-spec containers: the lifecycle of `kerr oci
// create|start|state|kill|delete|exec` (Do), the starter's "oci" engine, which is the
// monitor a container may keep (Engine), and its "oci-init" engine, the process that
// becomes a container's (InitEngine).
//
// Processes: `kerr oci ...` runs as root and does the runtime's work itself (one process
// per command, as runc is: every hop through another Go program costs a container's start
// time). It execs the starter for what must be a process of its own: the monitor, and the
// container's processes, which get a namespace plan that the starter's C stage applies
// before Go starts; Go (init.go) then sets up the root filesystem and waits on the exec
// fifo for start. spawn.go is the runtime's side of that conversation.
//
// Privileges: root. The package is in kerr (whose oci group refuses anyone but root) and
// in the root-only starter; never in starter-suid.
package oci

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

// Engine runs the actions of rpc/oci.
type Engine struct {
	// SyncFD is the fd of --sync-fd (the monitor's channel to create), or -1.
	SyncFD int
	// KeepFDs is how many fds from 3 up stage 0 left open (--keep-fds): the caller's
	// --preserve-fds, on their way to the container's process.
	KeepFDs int
	// Starter is the starter binary to exec for container processes; empty: the installed one.
	Starter string
}

// Name is "oci".
func (Engine) Name() string { return ocicfg.EngineName }

// preserved returns the kept fds as files, for the next process; the caller closes them
// once it has handed them on.
func (e Engine) preserved() []*os.File {
	fs := make([]*os.File, e.KeepFDs)
	for i := range fs {
		fs[i] = os.NewFile(uintptr(3+i), "preserved-fd-"+strconv.Itoa(3+i))
	}
	return fs
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func (e Engine) starter() string {
	if e.Starter != "" {
		return e.Starter
	}
	return buildcfg.StarterPath()
}

// Run is the starter's side of the engine: it runs the monitor, which `kerr oci create`
// starts to stay with a container. The other actions run in kerr itself (Do). Privileges:
// root.
func (e Engine) Run(env *envelope.Envelope) error {
	var cfg ocicfg.Config
	if err := envelope.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, envelope.ErrInvalid)
	}
	if cfg.Action != ocicfg.ActionMonitor {
		return fmt.Errorf("the starter runs only the oci monitor, not %q: %w", cfg.Action, envelope.ErrInvalid)
	}
	if cfg.PreserveFDs != e.KeepFDs {
		return fmt.Errorf("%d fds to preserve but %d kept open: %w", cfg.PreserveFDs, e.KeepFDs, envelope.ErrInvalid)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the oci engine needs root: %w", errdefs.ErrDenied)
	}
	return e.monitor(env.ID, &cfg)
}

// Do runs one action of `kerr oci` for container id, in the calling process: kerr, as root.
// cfg.PreserveFDs of the caller's fds from 3 up are handed to the container's process
// (they must be open and survive exec). The container's processes and the monitor are
// the starter's, which Do execs. Privileges: root (the oci group refuses others first).
func Do(id string, cfg *ocicfg.Config) error {
	if err := envelope.ValidateID(id); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the oci engine needs root: %w", errdefs.ErrDenied)
	}
	for i := 0; i < cfg.PreserveFDs; i++ {
		// An fd of the caller's is open and survives exec; one that is close-on-exec is
		// not one the caller passed (the Go runtime's own fds are).
		flags, err := unix.FcntlInt(uintptr(3+i), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("--preserve-fds %d: fd %d is not open: %w", cfg.PreserveFDs, 3+i, errdefs.ErrUsage)
		}
	}
	e := Engine{SyncFD: -1, KeepFDs: cfg.PreserveFDs}
	switch cfg.Action {
	case ocicfg.ActionCreate:
		return e.create(id, cfg)
	case ocicfg.ActionStart:
		return e.start(id, cfg)
	case ocicfg.ActionState:
		return e.state(id, cfg)
	case ocicfg.ActionKill:
		return e.kill(id, cfg)
	case ocicfg.ActionDelete:
		return e.delete(id, cfg)
	case ocicfg.ActionExec:
		return e.exec(id, cfg)
	case ocicfg.ActionRun:
		return e.run(id, cfg)
	case ocicfg.ActionPause:
		return e.pause(id, cfg, true)
	case ocicfg.ActionResume:
		return e.pause(id, cfg, false)
	case ocicfg.ActionUpdate:
		return e.update(id, cfg)
	case ocicfg.ActionAttach:
		return e.attach(id, cfg)
	case ocicfg.ActionLogs:
		return e.logs(id, cfg)
	case ocicfg.ActionPs:
		return e.ps(id, cfg)
	case ocicfg.ActionEvents:
		return e.events(id, cfg)
	}
	return fmt.Errorf("unknown action %q: %w", cfg.Action, errdefs.ErrUsage)
}

// Report prints the engine's error as kerr prints its own: one line, "kerr: " first, as
// the frontend hands the terminal over to the starter for these commands. A payload's
// exit status is not an error to print.
func (Engine) Report(err error) int {
	var es ExitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	var rep reportedError
	if errors.As(err, &rep) {
		return errdefs.ExitCode(err)
	}
	fmt.Fprintln(os.Stderr, "kerr: "+errdefs.OneLine(err))
	return errdefs.ExitCode(err)
}
