//go:build !suid

package main

import (
	starterc "github.com/kerr-hpc/kerr/starter-c"
	"github.com/kerr-hpc/kerr/starter/oci"
)

// The oci engine (`kerr oci create|start|...`) and the engine of a container's process are
// root-only and never in starter-suid (DESIGN.md rule 4). Stage 0 has run by the time this
// init does: the sync fd it kept is known.
func init() {
	st := starterc.State()
	builtinEngines = append(builtinEngines, oci.Engine{SyncFD: st.SyncFD, KeepFDs: st.KeepFDs}, oci.InitEngine{SyncFD: st.SyncFD})
}
