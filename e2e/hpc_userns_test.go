//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// withPolicy rewrites the installed policy for the test's duration (old -> new, each must
// be found), keeping it root-owned 0644, and puts it back afterwards.
func withPolicy(t *testing.T, edits ...string) {
	t.Helper()
	p := filepath.Join(h.Prefix, "etc", "kerr", "kerr.toml")
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(orig)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("policy has no %q", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Errorf("restore the policy: %v", err)
		}
	})
}

// userSandbox is the busybox image as a sandbox directory of the user's.
func userSandbox(t *testing.T, s *harness.Session) string {
	t.Helper()
	img := userSIF(t, s)
	dir := filepath.Join(s.Dir(h.User), "sandbox")
	out, err := exec.Command("unsquashfs", "-q", "-d", dir, "-o", itoa(int(sifRootfsOffset(t, img))), img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", itoa(int(h.User.UID))+":"+itoa(int(h.User.GID)), dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	return dir
}

// HPC mode without setuid: the plain starter in a user namespace of the user's, by --userns
// or because the policy turns setuid off; nothing of the host's privileges in it.
func TestHPCUserNamespaceMode(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sbx := userSandbox(t, s)
	r := s.Run(h.User, "exec", "--userns", sbx, "/bin/sh", "-c", "id -u; cat /proc/self/uid_map; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; exit 3")
	if r.Code != 3 {
		t.Fatalf("exec --userns: %s", r)
	}
	f := strings.Fields(r.Stdout)
	u := itoa(int(h.User.UID))
	if len(f) < 10 || f[0] != u || f[1] != u || f[2] != u || f[3] != "1" || f[5] != "0000000000000000" || f[7] != "0000000000000000" || f[9] != "1" {
		t.Errorf("in the user namespace: want the user mapped to itself, no capabilities, no_new_privs:\n%s", r)
	}
	// A pid namespace and an instance work there too.
	if r := s.Run(h.User, "exec", "-u", "-p", sbx, "/bin/sh", "-c", "echo $$").OK(t); strings.TrimSpace(r.Stdout) != "2" {
		t.Errorf("-u -p: %s", r)
	}
	s.Run(h.User, "instance", "start", "-u", sbx, "uinst").OK(t)
	if r := s.Run(h.User, "exec", "-u", "instance://uinst", "cat", "/proc/self/uid_map").OK(t); len(strings.Fields(r.Stdout)) != 3 {
		t.Errorf("exec instance:// in a user namespace: %s", r)
	}
	s.Run(h.User, "instance", "stop", "uinst").OK(t)
	// A SIF needs FUSE there: it works where /dev/fuse is open to users, else a clear no.
	r = s.Run(h.User, "exec", "-u", userSIF(t, s), "true")
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 == 0o006 {
		r.OK(t)
	} else if r.Fails(t, 5) && !strings.Contains(r.Stderr, "/dev/fuse") {
		t.Errorf("a SIF without setuid and without FUSE: %s", r)
	}
	// setuid off in the policy: kerr chooses the user namespace by itself.
	withPolicy(t, "allow_setuid = true", "allow_setuid = false")
	if r := s.Run(h.User, "exec", sbx, "cat", "/proc/self/uid_map").OK(t); len(strings.Fields(r.Stdout)) != 3 || strings.Fields(r.Stdout)[2] != "1" {
		t.Errorf("setuid off: not in a user namespace: %s", r)
	}
	// Both off: the user may not run containers at all.
	withPolicy(t, "allow_user_namespaces = true", "allow_user_namespaces = false")
	if r := s.Run(h.User, "exec", "-u", sbx, "true"); r.Fails(t, 5) && !strings.Contains(r.Stderr, "allow_user_namespaces") {
		t.Errorf("user namespaces off: %s", r)
	}
}

// sifRootfsOffset is where a SIF's squashfs root filesystem starts.
func sifRootfsOffset(t *testing.T, path string) int64 {
	t.Helper()
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.UnloadContainer() }()
	d, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		t.Fatal(err)
	}
	return d.Offset()
}
