//go:build !suid

package main

import "github.com/kerr-hpc/kerr/starter/bundle"

// The bundle engine (`kerr oci mount` / `kerr oci umount`) mounts as root and is never in
// starter-suid (DESIGN.md rule 4): this file is built only without the suid tag.
func init() { builtinEngines = append(builtinEngines, bundle.Engine{}) }
