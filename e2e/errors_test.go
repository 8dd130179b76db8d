//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// Exit codes of the CLI contract (docs/exit-codes.md).
const (
	exitUsage   = 2
	exitExists  = 3
	exitMissing = 4
	exitDenied  = 5
	exitNoReach = 6
	exitInvalid = 7
	exitNoSpace = 8
)

// pullFails pulls src into a fresh output dir (explicit OUT), and again with --quiet and the
// default output name in the work dir, and checks the error contract and that nothing was
// left behind.
func pullFails(t *testing.T, code int, opts harness.Opts, args ...string) {
	t.Helper()
	s := h.Begin(t)
	defer s.Done()
	outDir := s.Mkdir(h.Root, "out")
	src := args[len(args)-1]
	flags := args[:len(args)-1]
	s.RunWith(h.Root, opts, append(append([]string{"pull"}, flags...), filepath.Join(outDir, "out.sif"), src)...).Fails(t, code)
	wantDir(t, outDir)
	s.RunWith(h.Root, opts, append(append([]string{"--quiet", "pull"}, flags...), src)...).FailsQuiet(t, code)
	wantDir(t, s.Dir(h.Root))
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no-command-args", []string{"pull"}},
		{"too-many-args", []string{"pull", "a.sif", "docker://127.0.0.1:1/a:b", "extra"}},
		{"unknown-flag", []string{"pull", "--no-such-flag", "docker://127.0.0.1:1/a:b"}},
		{"unknown-command", []string{"no-such-command"}},
		{"inspect-no-args", []string{"inspect"}},
		{"build-one-arg", []string{"build", "out.sif"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			s.Run(h.Root, tc.args...).Fails(t, exitUsage)
			wantDir(t, s.Dir(h.Root))
		})
	}
}

func TestPullUnknownTransportExits2(t *testing.T) {
	pullFails(t, exitUsage, harness.Opts{}, "foo://x")
}

func TestPullMalformedReferenceExits2(t *testing.T) {
	for _, tc := range []struct{ name, ref string }{
		{"empty", "docker://"},
		{"uppercase-repo", "docker://" + h.Registry.Addr + "/BusyBox:latest"},
		{"space", "docker://" + h.Registry.Addr + "/busy box:latest"},
		{"bad-tag", "docker://" + h.Registry.Addr + "/busybox:bad:tag"},
		{"short-digest", "docker://" + h.Registry.Addr + "/busybox@sha256:1234"},
	} {
		t.Run(tc.name, func(t *testing.T) { pullFails(t, exitUsage, harness.Opts{}, "--insecure", tc.ref) })
	}
}

func TestPullRegistryDownExits6(t *testing.T) {
	pullFails(t, exitNoReach, harness.Opts{}, "--insecure", "docker://"+h.DownAddr+"/busybox:latest")
}

func TestPullUnknownTagOrManifestExits4(t *testing.T) {
	zero := "sha256:" + fmt.Sprintf("%064d", 0)
	for _, tc := range []struct{ name, ref string }{
		{"tag", "docker://" + h.Registry.Addr + "/busybox:no-such-tag"},
		{"repo", "docker://" + h.Registry.Addr + "/no-such-repo:latest"},
		{"digest", "docker://" + h.Registry.Addr + "/busybox@" + zero},
	} {
		t.Run(tc.name, func(t *testing.T) { pullFails(t, exitMissing, harness.Opts{}, "--insecure", tc.ref) })
	}
}

func TestPullNoMatchingPlatformExits4(t *testing.T) {
	pullFails(t, exitMissing, harness.Opts{}, "--insecure", "--arch", "s390x", h.Ref(h.Images.Index))
}

func TestPullMissingLocalSourceExits4(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"oci-dir", "oci:/nonexistent/kerr-e2e-layout"},
		{"oci-tag", "oci:" + h.Images.Layout + ":no-such-tag"},
		{"oci-archive", "oci-archive:/nonexistent/kerr-e2e.tar"},
		{"docker-archive", "docker-archive:/nonexistent/kerr-e2e.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) { pullFails(t, exitMissing, harness.Opts{}, tc.src) })
	}
}

func authRef() string { return "docker://" + h.AuthRegistry.Addr + "/busybox:latest" }

func TestPullWithoutCredentialsExits5(t *testing.T) {
	pullFails(t, exitDenied, harness.Opts{}, "--insecure", authRef())
}

func TestPullWrongPasswordExits5(t *testing.T) {
	pullFails(t, exitDenied, harness.Opts{Stdin: "wrong-password\n"}, "--insecure", "--username", harness.AuthUser, "--password-stdin", authRef())
}

func TestPullWrongDockerConfigCredentialsExits5(t *testing.T) {
	dir := writeDockerConfig(t, h.Root, harness.AuthUser, "wrong-password")
	pullFails(t, exitDenied, harness.Opts{Env: []string{"DOCKER_CONFIG=" + dir}}, "--insecure", authRef())
}

func TestPullPasswordStdin(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.RunWith(h.Root, harness.Opts{Stdin: harness.AuthPassword + "\n"},
		"pull", "--insecure", "--username", harness.AuthUser, "--password-stdin", authRef()).OK(t)
	checkSIF(t, filepath.Join(s.Dir(h.Root), "busybox_latest.sif"))
}

// writeDockerConfig writes a config.json with base64 auth for the auth registry into a new
// directory readable by p and returns the directory.
func writeDockerConfig(t *testing.T, p harness.Profile, user, password string) string {
	t.Helper()
	dir, err := os.MkdirTemp(h.Tmp, "docker-config-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, h.AuthRegistry.Addr, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "config.json"), int(p.UID), int(p.GID)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPullDockerConfigCredentials(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	dir := writeDockerConfig(t, h.Root, harness.AuthUser, harness.AuthPassword)
	s.RunWith(h.Root, harness.Opts{Env: []string{"DOCKER_CONFIG=" + dir}}, "pull", "--insecure", authRef()).OK(t)
	checkSIF(t, filepath.Join(s.Dir(h.Root), "busybox_latest.sif"))
}

// tamper rewrites the registry's copy of a blob.
func tamper(t *testing.T, p harness.Pushed, change func([]byte) []byte) {
	t.Helper()
	path := h.Registry.BlobPath(p.Layers[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, change(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPullCorruptBlobExits7(t *testing.T) {
	p := pushUnique(t, fixture.Spec{})
	tamper(t, p, func(b []byte) []byte {
		for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		return b
	})
	pullFails(t, exitInvalid, harness.Opts{}, "--insecure", h.Ref(p))
}

func TestPullTruncatedBlobExits7(t *testing.T) {
	p := pushUnique(t, fixture.Spec{})
	tamper(t, p, func(b []byte) []byte { return b[:len(b)/2] })
	pullFails(t, exitInvalid, harness.Opts{}, "--insecure", h.Ref(p))
}

func TestPullDiskFullExits8(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	full := s.Mkdir(h.Root, "full")
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=256k,mode=0755"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	defer func() {
		if err := syscall.Unmount(full, 0); err != nil {
			t.Errorf("unmounting %s: %v", full, err)
		}
	}()
	mounted := func() {
		t.Helper()
		var st, parent syscall.Statfs_t
		if syscall.Statfs(full, &st) != nil || syscall.Statfs(filepath.Dir(full), &parent) != nil || st.Type == parent.Type {
			t.Fatalf("the small tmpfs on %s is gone: something outside the test unmounted it", full)
		}
	}
	mounted()
	s.Run(h.Root, "pull", "--insecure", filepath.Join(full, "busybox.sif"), h.Ref(h.Images.Busybox)).Fails(t, exitNoSpace)
	wantDir(t, full)
	mounted()
	s.RunWith(h.Root, harness.Opts{Dir: full}, "--quiet", "pull", "--insecure", h.Ref(h.Images.Busybox)).FailsQuiet(t, exitNoSpace)
	wantDir(t, full)
}

func TestInspectNotASIFExits7(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	text := filepath.Join(s.Dir(h.Root), "notes.txt")
	if err := os.WriteFile(text, []byte("this is not a SIF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "inspect", text).Fails(t, exitInvalid)
	s.Run(h.Root, "sif", "list", text).Fails(t, exitInvalid)
	empty := filepath.Join(s.Dir(h.Root), "empty.sif")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "inspect", empty).Fails(t, exitInvalid)
}

func TestInspectMissingFileExits4(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	s.Run(h.Root, "inspect", filepath.Join(s.Dir(h.Root), "missing.sif")).Fails(t, exitMissing)
	s.Run(h.Root, "sif", "list", filepath.Join(s.Dir(h.Root), "missing.sif")).Fails(t, exitMissing)
}

func TestInspectTruncatedSIFExits7(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "busybox.sif")
	s.Run(h.Root, "pull", "--insecure", out, h.Ref(h.Images.Busybox)).OK(t)
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(out, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "inspect", out).Fails(t, exitInvalid)
	s.Run(h.Root, "inspect", "--json", out).Fails(t, exitInvalid)
}

func TestInspectSIFWithoutRootfsExits7(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	out := filepath.Join(s.Dir(h.Root), "norootfs.sif")
	di, err := sif.NewDescriptorInput(sif.DataGenericJSON, strings.NewReader(`{"hello":"world"}`))
	if err != nil {
		t.Fatal(err)
	}
	f, err := sif.CreateContainerAtPath(out, sif.OptCreateWithDescriptors(di))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	s.Run(h.Root, "inspect", out).Fails(t, exitInvalid)
}
