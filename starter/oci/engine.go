// Package oci is the starter's root-only "oci" engine: OCI runtime-spec containers with
// the lifecycle of `kerr oci create|start|state|kill|delete|exec`, and the "oci-init"
// engine of the process that becomes a container's.
//
// Processes: the create process (and, by default, a monitor it starts) execs the starter
// again with a namespace plan as the container's process; the C stage enters the
// namespaces, Go (init.go) sets up the root filesystem and waits on the exec fifo for
// start. spawn.go is the runtime's side of that conversation.
//
// Privileges: root (the starter without the suid tag; this package is never in
// starter-suid).
package oci

import (
	"errors"
	"fmt"
	"os"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

// Engine runs the actions of rpc/oci.
type Engine struct {
	// SyncFD is the fd of --sync-fd (the monitor's channel to create), or -1.
	SyncFD int
	// Starter is the starter binary to exec for container processes; empty: the installed one.
	Starter string
}

// Name is "oci".
func (Engine) Name() string { return ocicfg.EngineName }

func (e Engine) starter() string {
	if e.Starter != "" {
		return e.Starter
	}
	return buildcfg.StarterPath()
}

// Run decodes and checks the request and runs its action. Privileges: root.
func (e Engine) Run(env *envelope.Envelope) error {
	var cfg ocicfg.Config
	if err := envelope.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, envelope.ErrInvalid)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the oci engine needs root: %w", errdefs.ErrDenied)
	}
	switch cfg.Action {
	case ocicfg.ActionCreate:
		return e.create(env.ID, &cfg)
	case ocicfg.ActionMonitor:
		return e.monitor(env.ID, &cfg)
	case ocicfg.ActionStart:
		return e.start(env.ID, &cfg)
	case ocicfg.ActionState:
		return e.state(env.ID, &cfg)
	case ocicfg.ActionKill:
		return e.kill(env.ID, &cfg)
	case ocicfg.ActionDelete:
		return e.delete(env.ID, &cfg)
	case ocicfg.ActionExec:
		return e.exec(env.ID, &cfg)
	}
	return fmt.Errorf("unknown action %q: %w", cfg.Action, envelope.ErrInvalid)
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
