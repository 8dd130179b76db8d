// Package buildcfg holds the paths and version fixed when kerr is configured.
//
// The one source of these values is ./mconfig: it writes builddir/config.mk, from which the
// Makefile passes them to the Go linker (-X) and writes builddir/config.h for the C starter.
// The defaults below are what an unconfigured `go build` or `go test` sees; they match
// mconfig's own defaults so that tests run from a plain checkout behave like an install
// under /usr/local.
package buildcfg

// Set by the linker from builddir/config.mk; keep the names in step with mlocal/.
var (
	Version       = "0.0.0-dev"
	Prefix        = "/usr/local"
	SysconfDir    = "/usr/local/etc"
	LibexecDir    = "/usr/local/libexec"
	LocalstateDir = "/usr/local/var"
)

// PolicyFile is where the admin's policy lives; the starter opens only this path.
func PolicyFile() string { return SysconfDir + "/kerr/kerr.toml" }

// StarterPath is the unprivileged starter; StarterSuidPath its setuid twin.
func StarterPath() string { return LibexecDir + "/kerr/bin/starter" }

// StarterSuidPath is the setuid-root starter installed with mode 4755.
func StarterSuidPath() string { return LibexecDir + "/kerr/bin/starter-suid" }
