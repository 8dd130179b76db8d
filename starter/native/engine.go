// Package native is HPC mode's engine: `kerr exec|run|shell IMAGE` for any user, through
// starter-suid (or root's starter), under the admin's policy.
//
// It runs in two processes whose roles starter-c fixes when it forks (see starter-c's
// README): stage 1 with the caller's ids only, which decodes the request as hostile input,
// loads the policy itself, opens what the request names as the caller, asks the policy,
// and sends stage 2 a plan with the fds; and stage 2, root in the namespaces C made from
// the plan, which builds the container from those fds, drops to the caller for good and
// execs the payload. Stage 2 takes nothing from the caller but the plan stage 1 made.
package native

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
)

// EngineName is the engine's name in the envelope.
const EngineName = rpcnative.EngineName

// Roles of the process, as starter-c set them (starterc.Role*).
const (
	RolePlain  = 0
	RoleStage1 = 1
	RoleStage2 = 2
)

// The bytes an instance's stage 2 writes on ReadyFD (KERR_HPC_READY, KERR_HPC_FAILED).
const (
	readyByte  = 'R'
	failedByte = 'E'
)

// HPCPlanMagic and the mode values are starter.h's; cmd/starter checks they agree.
const (
	HPCPlanMagic = hpcPlanMagic
	HPCRun       = hpcRun
	HPCInstance  = hpcInstance
	HPCReady     = readyByte
	HPCFailed    = failedByte
)

// Engine is the native engine, with what stage 0 says about this process.
type Engine struct {
	Role int
	// Stage1FD is where stage 1 sends its plan.
	Stage1FD int
	// PassedFDs are the fds stage 1 sent, for stage 2.
	PassedFDs []int
	// ReadyFD: stage 2 of an instance reports on it (-1 otherwise); Joined: stage 2 is in a
	// running instance's namespaces.
	ReadyFD int
	Joined  bool
	// UserNS: no privileges (the plain starter run by a user): stage 2 is in a user
	// namespace of the caller's, under the policy's allow_user_namespaces.
	UserNS bool
	// PolicyFile, SysconfDir, LocalstateDir are the compile-time paths.
	PolicyFile    string
	SeccompFile   string
	LocalstateDir string
}

// Name implements starter.Engine.
func (Engine) Name() string { return EngineName }

// Run runs this process's stage. Privileges: stage 1 the caller's ids only; stage 2 root.
func (e Engine) Run(env *envelope.Envelope) error {
	switch e.Role {
	case RoleStage1:
		return e.stage1(env)
	case RoleStage2:
		return e.stage2(env)
	}
	return fmt.Errorf("%w: the native engine runs in the starter's HPC stages only (a config from kerr starts with its magic)", envelope.ErrInvalid)
}

// ExitStatus is the payload's status when it could not be exec'd in place.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Report prints the error as kerr prints its own and says the exit code: the frontend
// exec'd the starter, so this is the line the user sees.
func (e Engine) Report(err error) int {
	var es ExitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	fmt.Fprintf(os.Stderr, "kerr: %s\n", errdefs.OneLine(err))
	code := errdefs.ExitCode(err)
	if errors.Is(err, envelope.ErrInvalid) {
		code = errdefs.ExitUsage
	}
	if e.ReadyFD >= 0 {
		// An instance's setup failed: C, waiting outside, exits with the same code.
		_, _ = unix.Write(e.ReadyFD, []byte{failedByte, byte(code)})
	}
	return code
}
