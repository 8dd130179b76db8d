//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// --add-caps: a capability the admin grants to the user is the payload's (effective and
// ambient, so that it survives exec); one not granted is refused naming the key; root keeps
// its root_keeps. The policy's hostfs binds the host's filesystems.
func TestHPCCapabilityGrantsAndHostfs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	img := userSIF(t, s)
	const netRaw = "0000000000002000" // bit 13, CAP_NET_RAW
	// Not granted (the default policy grants nothing).
	if r := s.Run(h.User, "exec", "--add-caps", "net_raw", img, "true"); r.Fails(t, 5) && !strings.Contains(r.Stderr, "capabilities.grant") {
		t.Errorf("an ungranted capability: %s", r)
	}
	withPolicy(t, "grant = []\n\n[security]", "[[capabilities.grant]]\nusers = [\"kerr-e2e\"]\ngroups = []\ncapabilities = [\"CAP_NET_RAW\"]\n\n[security]")
	r := s.Run(h.User, "exec", "--add-caps", "net_raw", img, "/bin/sh", "-c", "grep -E '^Cap(Eff|Amb|Bnd)' /proc/self/status; id -u").OK(t)
	for _, key := range []string{"CapEff", "CapAmb", "CapBnd"} {
		if got := statusField(r.Stdout, key); got != netRaw {
			t.Errorf("%s %q, want only CAP_NET_RAW (%s)\n%s", key, got, netRaw, r)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(r.Stdout), itoa(int(h.User.UID))) {
		t.Errorf("not the user: %s", r)
	}
	// Granted but not asked for: none.
	if r := s.Run(h.User, "exec", img, "grep", "CapEff", "/proc/self/status").OK(t); statusField(r.Stdout, "CapEff") != "0000000000000000" {
		t.Errorf("a granted capability not asked for: %s", r)
	}
	// Another capability is still refused.
	s.Run(h.User, "exec", "--add-caps", "CAP_SYS_ADMIN", img, "true").Fails(t, 5)

	// hostfs: every host filesystem's mount point is bound (here: the e2e tree's own
	// mounts, if any, and the filesystems of the host, like /boot when it is one).
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] != "/" && !strings.HasPrefix(f[4], "/proc") && !strings.HasPrefix(f[4], "/sys") &&
			!strings.HasPrefix(f[4], "/dev") && !strings.HasPrefix(f[4], "/run") && !strings.Contains(f[4], `\`) && !strings.HasPrefix(f[4], "/tmp") && f[4] != "/boot" && !strings.HasPrefix(f[4], "/boot/") {
			want = f[4]
			break
		}
	}
	if want != "" {
		if r := s.Exec(h.User, harness.Opts{}, "test", "-x", want); r.Code != 0 {
			want = "" // not the user's to reach: hostfs leaves it out
		}
	}
	if want == "" {
		t.Log("no host mount point the user can reach besides the kernel's; hostfs checked for errors only")
	}
	withPolicy(t, "hostfs = false", "hostfs = true")
	r = s.Run(h.User, "exec", img, "/bin/sh", "-c", "cat /proc/self/mountinfo").OK(t)
	if want != "" && !strings.Contains(r.Stdout, " "+want+" ") {
		t.Errorf("hostfs: %s is not bound:\n%s", want, r.Stdout)
	}
}
