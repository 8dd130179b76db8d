package main

import (
	"github.com/kerr-hpc/kerr/buildcfg"
	starterc "github.com/kerr-hpc/kerr/starter-c"
	"github.com/kerr-hpc/kerr/starter/native"
)

// The native engine (HPC mode: kerr exec/run/shell) is in both starters: it is what
// starter-suid exists for. Stage 0 has fixed this process's role (stage 1 or 2 of HPC mode,
// or plain, where the engine refuses to run) by the time this init runs.
func init() {
	st := starterc.State()
	builtinEngines = append(builtinEngines, native.Engine{
		Role:          st.Role,
		Stage1FD:      st.Stage1FD,
		PassedFDs:     st.PassedFDs,
		ReadyFD:       st.ReadyFD,
		Joined:        st.Joined,
		UserNS:        st.UserNS,
		PolicyFile:    buildcfg.PolicyFile(),
		SeccompFile:   buildcfg.SysconfDir + "/kerr/seccomp.json",
		LocalstateDir: buildcfg.LocalstateDir,
	})
}
