package cli

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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

// nobody is the account `policy explain --user` tests decide for: an unprivileged user that
// every Debian-like system has.
func nobody(t *testing.T) (name, uid, group string) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Skip("nobody's group has no name")
	}
	return u.Username, u.Uid, g.Name
}

// explainPolicy writes a draft policy for nobody: /root and /etc/shadow denied for binds
// (line 2), net granted to nobody's group, CAP_NET_RAW to nobody, plus extra lines.
func explainPolicy(t *testing.T, extra string) string {
	t.Helper()
	_, _, group := nobody(t)
	path := filepath.Join(t.TempDir(), "kerr.toml")
	src := "[mounts]\nuser_bind_deny = [\"/etc/shadow\", \"/root\"]\n\n" +
		"[[namespaces.grant]]\ngroups = [\"" + group + "\"]\nnamespaces = [\"net\"]\n\n" +
		"[[capabilities.grant]]\nusers = [\"nobody\"]\ncapabilities = [\"CAP_NET_RAW\"]\n" + extra
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// explain runs `kerr --quiet policy explain --policy POL ARGS...`: quiet, because a draft
// policy that the test's user owns draws a warning unless that user is root.
func explain(t *testing.T, pol string, args ...string) result {
	t.Helper()
	return kerr(t, append([]string{"--quiet", "policy", "explain", "--policy", pol}, args...)...)
}

func wantAllowed(t *testing.T, r result, contains ...string) {
	t.Helper()
	if r.code != 0 || !strings.HasPrefix(r.stdout, "allowed: ") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want allowed", r.code, r.stdout, r.stderr)
	}
	for _, c := range contains {
		if !strings.Contains(r.stdout, c) {
			t.Errorf("stdout %q does not say %q", r.stdout, c)
		}
	}
}

func TestPolicyExplainAllowedSummarizesGrants(t *testing.T) {
	name, uid, _ := nobody(t)
	pol := explainPolicy(t, "")
	sb := t.TempDir()
	data := t.TempDir()
	r := explain(t, pol, "--user", name, "--bind", data+":/data:ro", "--bind", "/tmp,/var/tmp",
		"--ns", "pid,net", "--cap", "net_raw", sb)
	wantAllowed(t, r, "allowed: nobody (uid "+uid+") may run "+sb+" in setuid mode",
		"sandbox, owner ", data+" -> /data (ro)", "/tmp -> /tmp (rw)", "/var/tmp -> /var/tmp (rw)",
		"namespaces:   pid, net; may ask for pid, ipc, uts, net",
		"capabilities: CAP_NET_RAW; may ask for CAP_NET_RAW")
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
	// The same user by uid.
	wantAllowed(t, explain(t, pol, "--user", uid, "--ns", "net", sb), "allowed: nobody (uid "+uid+")")
}

func TestPolicyExplainDeniedNamesKeyAndLine(t *testing.T) {
	name, _, _ := nobody(t)
	pol := explainPolicy(t, "")
	sb := t.TempDir()
	r := explain(t, pol, "--user", name, "--bind", "/tmp,/root", sb)
	wantError(t, r, errdefs.ExitDenied, `kerr: bind /root: denied by mounts.user_bind_deny ("/root") at `+pol+":2\n")
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	// A bind above a denied path: / would expose /root.
	wantError(t, explain(t, pol, "--user", name, "--bind", "/:/host", sb), errdefs.ExitDenied,
		`bind /: denied by mounts.user_bind_deny ("/etc/shadow" lies beneath it) at `+pol+":2")
	// A key the file does not set denies with its default.
	wantError(t, explain(t, pol, "--user", name, "--ns", "cgroup", sb), errdefs.ExitDenied,
		"namespace cgroup: denied by namespaces.allow (not allowed to all, nor granted to nobody")
	wantError(t, explain(t, pol, "--user", name, "--ns", "cgroup", sb), errdefs.ExitDenied,
		"(the default: "+pol+" does not set it)")
	// Grants are for whom they name.
	wantError(t, explain(t, pol, "--user", name, "--cap", "CAP_SYS_ADMIN", sb), errdefs.ExitDenied,
		"capability CAP_SYS_ADMIN: denied by capabilities.grant (not granted to nobody")
	wantError(t, explain(t, pol, "--user", name, "--cap", "SYS_ADMIN", sb), errdefs.ExitDenied, "at "+pol+":8")
}

func TestPolicyExplainResolvesSymlinks(t *testing.T) {
	name, _, _ := nobody(t)
	pol := explainPolicy(t, "[images]\nlimit_paths = [\"/nonexistent/images\"]\n")
	dir := t.TempDir()
	link := filepath.Join(dir, "innocent")
	if err := os.Symlink("/root", link); err != nil {
		t.Fatal(err)
	}
	sb := t.TempDir()
	r := explain(t, pol, "--user", name, sb)
	resolved, err := filepath.EvalSymlinks(sb)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, r, errdefs.ExitDenied, "image "+resolved+`: denied by images.limit_paths (not under "/nonexistent/images") at `+pol+":12")

	pol = explainPolicy(t, "")
	wantError(t, explain(t, pol, "--user", name, "--bind", link+":/data", sb), errdefs.ExitDenied,
		`bind /root: denied by mounts.user_bind_deny ("/root")`)
	imgLink := filepath.Join(dir, "image")
	if err := os.Symlink(sb, imgLink); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, explain(t, pol, "--user", name, imgLink), "may run "+resolved+" in")
}

func TestPolicyExplainRootIsNeverDenied(t *testing.T) {
	pol := explainPolicy(t, "[access]\nallow_setuid = false\nusers = [\"nobody\"]\n")
	r := explain(t, pol, "--user", "root", "--bind", "/root,/", "--ns", "net,cgroup", "--cap", "CAP_SYS_ADMIN", t.TempDir())
	wantAllowed(t, r, "allowed: root (uid 0)", "namespaces:   net, cgroup; may ask for any (root)", "CAP_SYS_ADMIN, ", "CAP_CHOWN")
	name, _, _ := nobody(t)
	wantError(t, explain(t, pol, "--user", name, t.TempDir()), errdefs.ExitDenied,
		"setuid run for nobody (uid 65534): denied by access.allow_setuid (false) at "+pol+":12")
	wantAllowed(t, explain(t, pol, "--user", name, "--mode", "userns", t.TempDir()), "in userns mode")
}

func TestPolicyExplainSIF(t *testing.T) {
	name, _, _ := nobody(t)
	sif := testSIF(t)
	pol := explainPolicy(t, "")
	mount := "mounted with squashfuse"
	if os.Geteuid() == 0 { // the SIF is root's and 0755: the kernel's driver for root-owned
		mount = "mounted with the kernel's squashfs"
	}
	wantAllowed(t, explain(t, pol, "--user", name, sif), "sif, owner ", "mode 0755", mount)
	wantAllowed(t, explain(t, pol, "--user", name, "--mode", "userns", sif), "mounted with squashfuse")
	never := explainPolicy(t, "[images]\nkernel_squashfs = \"never\"\nformats = [\"sif\"]\n")
	wantAllowed(t, explain(t, never, "--user", name, sif), "mounted with squashfuse")
	wantError(t, explain(t, never, "--user", name, t.TempDir()), errdefs.ExitDenied,
		`denied by images.formats (sandbox is not one of "sif") at `+never+":13")
}

func TestPolicyExplainDefaultCallerIsYou(t *testing.T) {
	r := explain(t, explainPolicy(t, ""), t.TempDir())
	wantAllowed(t, r, "(uid "+strconv.Itoa(os.Getuid())+")")
}

func TestPolicyExplainBadInput(t *testing.T) {
	name, _, _ := nobody(t)
	pol := explainPolicy(t, "")
	sb := t.TempDir()
	notSIF := filepath.Join(t.TempDir(), "x.sif")
	if err := os.WriteFile(notSIF, []byte("not a SIF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(sb, "missing")
	for _, tc := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"--mode", "suid", sb}, errdefs.ExitUsage, `--mode "suid"`},
		{[]string{"--bind", "/tmp:/a:rw:x", sb}, errdefs.ExitUsage, "want SRC[:DST[:ro|rw]]"},
		{[]string{"--bind", "/tmp:data", sb}, errdefs.ExitUsage, `destination "data" is not an absolute path`},
		{[]string{"--bind", "/tmp:/data:rx", sb}, errdefs.ExitUsage, `option "rx" is not ro or rw`},
		{[]string{"--ns", "user", sb}, errdefs.ExitUsage, `namespace "user" is not one of`},
		{[]string{"--cap", "fly", sb}, errdefs.ExitUsage, `"CAP_FLY" is not a capability name`},
		{[]string{}, errdefs.ExitUsage, "usage: kerr policy explain"},
		{[]string{sb, sb}, errdefs.ExitUsage, "usage: kerr policy explain"},
		{[]string{missing}, errdefs.ExitNotFound, "image " + missing + ": no such file"},
		{[]string{"--bind", missing, sb}, errdefs.ExitNotFound, "bind " + missing + ": no such file"},
		{[]string{notSIF}, errdefs.ExitInvalidImage, "is not a SIF file"},
	} {
		wantError(t, explain(t, pol, append([]string{"--user", name}, tc.args...)...), tc.code, tc.contains)
	}
	wantError(t, explain(t, pol, "--user", "no-such-user-kerr", sb), errdefs.ExitNotFound, "--user no-such-user-kerr: no such user")
	wantError(t, explain(t, filepath.Join(sb, "none.toml"), sb), errdefs.ExitNotFound, "does not exist")
}

func TestPolicyExplainInstalledPolicyIsStrict(t *testing.T) {
	if _, err := os.Lstat(buildcfg.PolicyFile()); err == nil {
		t.Skip(buildcfg.PolicyFile() + " exists")
	}
	wantError(t, kerr(t, "policy", "explain", t.TempDir()), errdefs.ExitNotFound, buildcfg.PolicyFile())
}

func TestPolicyExplainDraftWarnsAboutOwnership(t *testing.T) {
	pol := explainPolicy(t, "")
	if err := os.Chmod(pol, 0o666); err != nil {
		t.Fatal(err)
	}
	r := kerr(t, "policy", "explain", "--policy", pol, t.TempDir())
	wantAllowed(t, r)
	if !strings.Contains(r.stderr, "WARNING: "+pol+": is writable by group or others") {
		t.Errorf("stderr %q", r.stderr)
	}
}
