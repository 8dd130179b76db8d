// Command starter is kerr's privileged entry point. The frontend execs it as
//
//	starter --config-fd N
//
// with an EngineConfig envelope readable on fd N. Importing starter-c runs its C stage before
// this main: setuid privileges are already dropped (saved uid kept), the environment is
// empty, only fds 0-2 are open and the config has been read. main checks that C and Go were
// built with the same paths, decodes the config and runs the engine it names.
//
// Exit codes of the starter itself (starter-c/README.md has the full table):
//
//	252  the envelope names an engine not built into this starter
//	253  the config is too large or not a valid envelope (an engine's config included)
//	254  bad command line, or the config fd is not usable
//	255  a privilege or process-setup step failed, or C and Go disagree on paths
//
// An engine's own error exits with errdefs.ExitCode(err), kerr's documented codes 1-8
// (docs/exit-codes.md), so that the frontend can exit with the same status as for errors it
// finds itself. Once an engine runs a payload, the payload's own status is passed through
// instead. Every failure is one line on stderr starting with "starter: ".
//
// The go:debug settings stop the Go runtime from opening cgroup files at start to size
// GOMAXPROCS: stage 1 begins with fds 0-2 only, and no fd of a host cgroup file can follow a
// process into a container.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/rpc/nsplan"
	"github.com/kerr-hpc/kerr/starter"
	starterc "github.com/kerr-hpc/kerr/starter-c"
	"github.com/kerr-hpc/kerr/starter/native"
)

// The main goroutine stays on the main thread, the thread group's leader: the
// per-thread state an engine sets (the cgroup namespace, capabilities, seccomp) is then
// what /proc/PID shows, and what the payload inherits when that thread execs it.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run())
}

// run is stage 1's entry. Privileges: as stage 0 left them (see the package comment).
func run() int {
	err := starterc.CheckPaths(starterc.BuildPaths{
		Prefix:        buildcfg.Prefix,
		SysconfDir:    buildcfg.SysconfDir,
		LibexecDir:    buildcfg.LibexecDir,
		LocalstateDir: buildcfg.LocalstateDir,
		PolicyFile:    buildcfg.PolicyFile(),
		Version:       buildcfg.Version,
	})
	if err != nil {
		return fail(starterc.ExitFatal, err)
	}
	if err := checkProtocol(); err != nil {
		return fail(starterc.ExitFatal, err)
	}
	reg, err := starter.NewRegistry(builtinEngines...)
	if err != nil {
		return fail(starterc.ExitFatal, err)
	}
	eng, err := starter.RunEngine(starterc.TakeConfig(), reg)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, envelope.ErrInvalid):
		return fail(starterc.ExitConfig, err)
	case errors.Is(err, starter.ErrEngineUnavailable):
		return fail(starterc.ExitEngine, err)
	}
	if r, ok := eng.(starter.Reporter); ok {
		return r.Report(err)
	}
	return fail(errdefs.ExitCode(err), err)
}

// checkProtocol fails when rpc/nsplan, which the runtime uses to talk to this stage, and
// starter.h disagree: the plan or a sync message would be misread.
func checkProtocol() error {
	if starterc.PlanMagic != nsplan.Magic || starterc.PlanMaxJoin != nsplan.MaxJoin ||
		starterc.SyncUsermap != nsplan.MsgUsermap || starterc.SyncUsermapDone != nsplan.MsgUsermapDone ||
		starterc.SyncPID != nsplan.MsgPID || starterc.SyncError != nsplan.MsgError ||
		starterc.RoleStage1 != native.RoleStage1 || starterc.RoleStage2 != native.RoleStage2 || starterc.RolePlain != native.RolePlain ||
		starterc.HPCPlanMagic != native.HPCPlanMagic || starterc.HPCPlanLen != len(native.HPCPlanMagic)+24 ||
		starterc.HPCRun != native.HPCRun || starterc.HPCInstance != native.HPCInstance ||
		starterc.HPCReady != native.HPCReady || starterc.HPCFailed != native.HPCFailed ||
		starterc.HPCMagic != rpcnative.Magic {
		return fmt.Errorf("built with mismatched protocols: starter.h and rpc/nsplan differ")
	}
	return nil
}

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "starter: %v\n", err)
	return code
}
