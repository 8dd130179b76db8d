//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// installedPolicy is the installed policy file, as `kerr policy check` names it, and the
// line that sets key (a top-level key of its table, "user_bind_deny").
func installedPolicy(t *testing.T, s *harness.Session, key string) (path string, line int) {
	t.Helper()
	r := s.Run(h.Root, "policy", "check").OK(t)
	path, _, ok := strings.Cut(r.Stdout, ": ok\n")
	if !ok {
		t.Fatalf("policy check does not say which file is ok:\n%s", r)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key+" =") {
			return path, i + 1
		}
	}
	t.Fatalf("%s does not set %s", path, key)
	return "", 0
}

// TestPolicyExplainInstalledPolicy asks the installed kerr, as the unprivileged user and as
// root for that user, what the installed (default) policy lets the user do.
func TestPolicyExplainInstalledPolicy(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sandbox := s.Mkdir(h.User, "sandbox")
	uid := strconv.Itoa(int(h.User.UID))
	who := harness.UserName + " (uid " + uid + ")"

	r := s.Run(h.User, "policy", "explain", "--bind", s.Dir(h.User)+":/data:ro", "--ns", "pid", sandbox).OK(t)
	for _, want := range []string{
		"allowed: " + who + " may run " + sandbox + " in setuid mode",
		"sandbox, owner " + harness.UserName,
		s.Dir(h.User) + " -> /data (ro)",
		"namespaces:   pid; may ask for pid, ipc, uts",
		"capabilities: none; may ask for none",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, r)
		}
	}

	pol, denyLine := installedPolicy(t, s, "user_bind_deny")
	for _, p := range []harness.Profile{h.User, h.Root} {
		r = s.Run(p, "policy", "explain", "--user", harness.UserName, "--bind", "/etc", sandbox)
		r.Fails(t, exitDenied)
		want := `kerr: bind /etc: denied by mounts.user_bind_deny ("/etc/shadow" lies beneath it) at ` +
			pol + ":" + strconv.Itoa(denyLine) + "\n"
		if !strings.HasSuffix(r.Stderr, want) || r.Stdout != "" {
			t.Errorf("want only %q on stderr:\n%s", want, r)
		}
	}
	r = s.Run(h.User, "policy", "explain", "--ns", "net", "--cap", "net_raw", sandbox)
	r.Fails(t, exitDenied)
	if !strings.Contains(r.Stderr, "namespace net: denied by namespaces.allow") {
		t.Errorf("stderr does not name namespaces.allow:\n%s", r)
	}

	// Root is never denied.
	r = s.Run(h.Root, "policy", "explain", "--bind", "/", "--ns", "net", "--cap", "CAP_SYS_ADMIN", sandbox).OK(t)
	if !strings.HasPrefix(r.Stdout, "allowed: root (uid 0)") {
		t.Errorf("stdout:\n%s", r)
	}
}

// TestPolicyExplainDraftGrant tries a draft that grants the user's group a network
// namespace and a capability, before it would be installed.
func TestPolicyExplainDraftGrant(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sandbox := s.Mkdir(h.User, "sandbox")
	draft := filepath.Join(s.Base(), "draft.toml")
	gid := strconv.Itoa(int(h.User.GID))
	src := "[[namespaces.grant]]\ngroups = [\"" + gid + "\"]\nnamespaces = [\"net\"]\n\n" +
		"[[capabilities.grant]]\nusers = [\"" + harness.UserName + "\"]\ncapabilities = [\"CAP_NET_RAW\"]\n\n" +
		"[images]\nlimit_paths = [\"" + filepath.Dir(sandbox) + "\"]\n"
	if err := os.WriteFile(draft, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.Run(h.User, "policy", "explain", "--policy", draft, "--ns", "net", "--cap", "net_raw", sandbox)
	if r.Code != 0 || !strings.Contains(r.Stdout, "namespaces:   net; may ask for pid, ipc, uts, net") ||
		!strings.Contains(r.Stdout, "capabilities: CAP_NET_RAW; may ask for CAP_NET_RAW") {
		t.Errorf("want net and CAP_NET_RAW allowed:\n%s", r)
	}
	// The draft is root's and 0644: no warning.
	if strings.Contains(r.Stderr, "WARNING") {
		t.Errorf("warnings for a root-owned draft:\n%s", r)
	}
	// The image is outside limit_paths (line 10).
	outside := s.Mkdir(h.Root, "outside")
	r = s.Run(h.User, "policy", "explain", "--policy", draft, outside)
	r.Fails(t, exitDenied)
	if !strings.Contains(r.Stderr, "image "+outside+": denied by images.limit_paths") ||
		!strings.Contains(r.Stderr, draft+":10") {
		t.Errorf("want a denial by images.limit_paths at %s:10:\n%s", draft, r)
	}
}
