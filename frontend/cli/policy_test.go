package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
)

func TestPolicyCheckShippedFilePrintsEffectivePolicy(t *testing.T) {
	const file = "../../etc/kerr/kerr.toml"
	r := kerr(t, "policy", "check", file)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, file+": ok\n") || !strings.Contains(r.stdout, "[mounts]") ||
		!strings.Contains(r.stdout, `dev = "yes"`) {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestPolicyCheckInvalidFileIsUsageErrorWithLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kerr.toml")
	if err := os.WriteFile(path, []byte("[mounts]\nhome = true\nhom = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := kerr(t, "policy", "check", path)
	wantError(t, r, errdefs.ExitUsage, path+`:3: key "mounts.hom": unknown key`)
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
}

func TestPolicyCheckMissingFileIsNotFound(t *testing.T) {
	r := kerr(t, "policy", "check", filepath.Join(t.TempDir(), "none.toml"))
	wantError(t, r, errdefs.ExitNotFound, "does not exist")
}

func TestPolicyCheckInstalledFileMissingIsNotFound(t *testing.T) {
	if _, err := os.Lstat(buildcfg.PolicyFile()); err == nil {
		t.Skip(buildcfg.PolicyFile() + " exists")
	}
	r := kerr(t, "policy", "check")
	wantError(t, r, errdefs.ExitNotFound, buildcfg.PolicyFile())
}

func TestPolicyCheckDraftWarnsAboutOwnership(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kerr.toml")
	if err := os.WriteFile(path, []byte("[mounts]\nhome = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	r := kerr(t, "policy", "check", path)
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING: "+path+": is writable by group or others") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "home = false") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestPolicyWithoutCommandIsUsageError(t *testing.T) {
	r := kerr(t, "policy")
	if r.code != errdefs.ExitUsage {
		t.Errorf("exit %d, want %d", r.code, errdefs.ExitUsage)
	}
	r = kerr(t, "policy", "check", "a", "b")
	wantError(t, r, errdefs.ExitUsage, "usage: kerr policy check [FILE]")
}
