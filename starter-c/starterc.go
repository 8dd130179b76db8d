// Package starterc is the C stage of kerr's starter and the Go view of what it did.
//
// Importing it links starter.c, whose constructor runs before the Go runtime starts: it
// drops setuid privileges, wipes the environment, closes inherited fds and reads the
// EngineConfig from the fd named by `--config-fd N` (README.md tells the stages). By the time
// any Go code runs, that has happened; the functions here only read its results.
//
// Only cmd/starter may import this package: the constructor runs in any program that links
// it, and exits unless called as `starter --config-fd N`. For the same reason it has no tests
// of its own; starter/ tests it through the built binary.
package starterc

/*
#cgo CFLAGS: -Wall -Wextra -Werror -std=gnu11
#include "starter.h"
*/
import "C"

import "fmt"

// The starter's own exit codes (enum kerr_exit in starter.h is the one source).
const (
	ExitEngine = C.KERR_EXIT_ENGINE // the envelope names an engine not built into this starter
	ExitConfig = C.KERR_EXIT_CONFIG // the config is too large or not a valid envelope
	ExitUsage  = C.KERR_EXIT_USAGE  // bad command line or unusable config fd
	ExitFatal  = C.KERR_EXIT_FATAL  // a privilege or process-setup step failed
	ExitDenied = C.KERR_EXIT_DENIED // HPC mode: what the caller may not join
)

// ConfigMax is the most bytes stage 0 reads from the config fd.
const ConfigMax = C.KERR_CONFIG_MAX

// The namespace plan's magic and the C stage's messages on the sync fd (starter.h).
const (
	PlanMagic       = C.KERR_PLAN_MAGIC
	PlanMaxJoin     = C.KERR_PLAN_MAX_JOIN
	SyncUsermap     = C.KERR_SYNC_USERMAP
	SyncUsermapDone = C.KERR_SYNC_USERMAP_DONE
	SyncPID         = C.KERR_SYNC_PID
	SyncError       = C.KERR_SYNC_ERROR
)

// Stage0 is what the constructor found at exec time.
type Stage0 struct {
	SuidBuild bool // this binary is starter-suid
	Dropped   bool // it was exec'd setuid/setgid and dropped to the caller, saved ids kept
	UID, GID  int  // the caller's real ids
	// SyncFD is the fd given with --sync-fd (the runtime's channel to this process), or -1.
	SyncFD int
	// Planned: a namespace plan was applied; the process is in the namespaces it named.
	Planned bool
	// KeepFDs is --keep-fds K: fds 3 .. 3+K-1 were left open for the payload.
	KeepFDs int
	// Role is what C made this process: RolePlain, or HPC mode's RoleStage1 (the caller's
	// ids only; Stage1FD is where its plan goes) or RoleStage2 (root, in the planned
	// namespaces; PassedFDs are the fds stage 1 sent, in order).
	Role      int
	Stage1FD  int
	PassedFDs []int
	// ReadyFD (stage 2 of an instance) is where stage 2 says it is ready, or failed;
	// Joined: stage 2 entered a running instance's namespaces (nothing to build).
	ReadyFD int
	Joined  bool
	// UserNS: HPC mode without privileges (neither setuid nor root): stage 2 runs in a user
	// namespace of the caller's.
	UserNS bool
}

// HPC preamble (starter.h): the magic and its length, the modes, the ready messages.
const (
	HPCPlanMagic = C.KERR_HPC_PLAN_MAGIC
	HPCPlanLen   = C.KERR_HPC_PLAN_LEN
	HPCRun       = C.KERR_HPC_RUN
	HPCInstance  = C.KERR_HPC_INSTANCE
	HPCReady     = C.KERR_HPC_READY
	HPCFailed    = C.KERR_HPC_FAILED
)

// Roles of a starter process (enum kerr_role).
const (
	RolePlain  = C.KERR_ROLE_PLAIN
	RoleStage1 = C.KERR_ROLE_STAGE1
	RoleStage2 = C.KERR_ROLE_STAGE2
)

// HPCMagic starts an HPC-mode config (rpc/native.Magic must equal it; cmd/starter checks).
const HPCMagic = C.KERR_HPC_MAGIC

// HPCMaxFDs is the most fds stage 1 may send to stage 2.
const HPCMaxFDs = C.KERR_HPC_MAX_FDS

// State reports what stage 0 found. Privileges: reads memory only.
func State() Stage0 {
	s := &C.kerr_stage0
	return Stage0{
		SuidBuild: s.suid_build != 0,
		Dropped:   s.dropped != 0,
		UID:       int(s.uid),
		GID:       int(s.gid),
		SyncFD:    int(s.sync_fd),
		Planned:   s.planned != 0,
		KeepFDs:   int(s.keep_fds),
		Role:      int(s.role),
		Stage1FD:  int(s.stage1_fd),
		PassedFDs: passedFDs(s),
		ReadyFD:   int(s.ready_fd),
		Joined:    s.joined != 0,
		UserNS:    s.userns != 0,
	}
}

func passedFDs(s *C.struct_kerr_stage0) []int {
	n := int(s.npassed)
	if n < 0 || n > HPCMaxFDs {
		return nil
	}
	fds := make([]int, n)
	for i := range fds {
		fds[i] = int(s.passed_fds[i])
	}
	return fds
}

// SetuidMode reports whether the starter must act for an unprivileged caller: it is
// starter-suid, or it was exec'd with a setuid/setgid bit. Privileges: none used.
func (s Stage0) SetuidMode() bool { return s.SuidBuild || s.Dropped }

// BuildPaths are the compile-time values C saw in config.h (or its defaults).
type BuildPaths struct {
	Prefix, SysconfDir, LibexecDir, LocalstateDir, PolicyFile, Version string
}

// Paths returns the values compiled into the C stage. Privileges: none used.
func Paths() BuildPaths {
	v := func(k C.int) string { return C.GoString(C.kerr_build_value(k)) }
	return BuildPaths{
		Prefix:        v(C.KERR_BUILD_PREFIX),
		SysconfDir:    v(C.KERR_BUILD_SYSCONFDIR),
		LibexecDir:    v(C.KERR_BUILD_LIBEXECDIR),
		LocalstateDir: v(C.KERR_BUILD_LOCALSTATEDIR),
		PolicyFile:    v(C.KERR_BUILD_POLICY_FILE),
		Version:       v(C.KERR_BUILD_VERSION),
	}
}

// CheckPaths returns an error when go, the values linked into the Go side, differs from what
// C was compiled with: a starter built around mconfig would enforce a policy file other than
// the one the admin edits. Privileges: none used.
func CheckPaths(goSide BuildPaths) error {
	if c := Paths(); c != goSide {
		return fmt.Errorf("built with mismatched paths: C has %+v, Go has %+v", c, goSide)
	}
	return nil
}
