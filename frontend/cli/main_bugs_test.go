package cli

import (
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

// TestUnknownSubcommandIsUsageError: a typo in a subcommand must not exit 0 having done
// nothing.
func TestUnknownSubcommandIsUsageError(t *testing.T) {
	wantError(t, kerr(t, "sif", "lsit", "x.sif"), errdefs.ExitUsage, `"lsit"`)
	wantError(t, kerr(t, "cache", "clena"), errdefs.ExitUsage, `"clena"`)
}

// TestUnknownCommandAfterGlobalFlagIsUsageError: the unknown-command check must not depend on
// the command being the first argument.
func TestUnknownCommandAfterGlobalFlagIsUsageError(t *testing.T) {
	wantError(t, kerr(t, "--quiet", "frobnicate"), errdefs.ExitUsage, `unknown command "frobnicate"`)
	wantError(t, kerr(t, "-d", "frobnicate"), errdefs.ExitUsage, `unknown command "frobnicate"`)
}

// TestSubcommandUsageNamesTheFullCommand: "usage: kerr list" names a command that does not
// exist.
func TestSubcommandUsageNamesTheFullCommand(t *testing.T) {
	wantError(t, kerr(t, "sif", "list"), errdefs.ExitUsage, "usage: kerr sif list IMAGE.sif")
	wantError(t, kerr(t, "sif", "info", "1"), errdefs.ExitUsage, "usage: kerr sif info ID IMAGE.sif")
	wantError(t, kerr(t, "cache", "clean", "x"), errdefs.ExitUsage, "usage: kerr cache clean")
}
