package main

import "github.com/kerr-hpc/kerr/starter"

// builtinEngines are the engines compiled into this binary. Each engine adds itself from a
// file whose build tags say which starters carry it: root-only engines use `!suid`, so that
// starter-suid never contains them (DESIGN.md rule 4): engine_bundle.go is one.
var builtinEngines []starter.Engine
