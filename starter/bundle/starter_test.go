package bundle

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bundlerpc "github.com/kerr-hpc/kerr/rpc/bundle"
	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// DESIGN.md rule 4: the root-only engine is never linked into starter-suid.
func TestStarterSuidDoesNotContainTheBundleEngine(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH")
	}
	const pkg = "github.com/kerr-hpc/kerr/starter/bundle"
	for _, tags := range []string{"suid", "suid,kerrtest", "", "kerrtest"} {
		out, err := exec.Command(goTool, "list", "-deps", "-tags", tags, "github.com/kerr-hpc/kerr/cmd/starter").Output()
		if err != nil {
			t.Fatalf("go list -tags %q: %v", tags, err)
		}
		has := bytes.Contains(append([]byte("\n"), out...), []byte("\n"+pkg+"\n"))
		if want := !strings.Contains(tags, "suid"); has != want {
			t.Errorf("go list -deps -tags %q cmd/starter: contains %s = %v", tags, pkg, has)
		}
	}
}

// buildStarter builds cmd/starter into a directory every user may enter.
func buildStarter(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the starter")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH")
	}
	dir, err := os.MkdirTemp("", "kerr-bundle-starter-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "starter")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/kerr-hpc/kerr/cmd/starter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runStarter runs the starter with config on fd 3 and returns its exit code and stderr.
func runStarter(t *testing.T, bin string, config []byte, cred *syscall.Credential) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-fd", "3")
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{r}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	if _, err := w.Write(config); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func bundleConfig(t *testing.T, cfg bundlerpc.Config) []byte {
	t.Helper()
	env, err := envelope.New(bundlerpc.EngineName, bundlerpc.ID(cfg.Bundle), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The starter runs the bundle engine and exits with the errdefs code of its error, with
// one line on stderr.
func TestStarterExitsWithTheEngineErrorsCode(t *testing.T) {
	e := newEnv(t)
	bin := buildStarter(t)
	empty := filepath.Join(e.dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(e.dir, "b")
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	cases := []struct {
		name   string
		config []byte
		cred   *syscall.Credential
		code   int
		msg    string
	}{
		{"umount of a non-bundle", bundleConfig(t, bundlerpc.Config{Action: "umount", Bundle: empty}), nil, 2, "is not a kerr bundle"},
		{"missing image", bundleConfig(t, bundlerpc.Config{Action: "mount", Image: e.sif + ".no", Bundle: b}), nil, 4, "no such file"},
		{"not root", bundleConfig(t, bundlerpc.Config{Action: "mount", Image: e.sif, Bundle: b}), nobody, 5, "needs root"},
		{"bundle not empty", bundleConfig(t, bundlerpc.Config{Action: "mount", Image: e.sif, Bundle: e.dir}), nil, 3, "is not empty"},
		{"unknown config field", []byte(`{"version":1,"engine":"bundle","id":"` + bundlerpc.ID(b) + `","config":{"action":"mount","bundle":"` + b + `","x":1}}`), nil, 253, "invalid engine config"},
		{"id of another bundle", []byte(`{"version":1,"engine":"bundle","id":"bundle-0000","config":{"action":"umount","bundle":"` + b + `"}}`), nil, 253, "invalid engine config"},
	}
	for _, c := range cases {
		code, stderr := runStarter(t, bin, c.config, c.cred)
		if code != c.code || !strings.HasPrefix(stderr, "starter: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", c.name, code, stderr, c.code, c.msg)
		}
	}

	// A real mount through the starter: it needs the installed seccomp profile. Without one
	// it fails after mounting and must leave nothing.
	code, stderr := runStarter(t, bin, bundleConfig(t, bundlerpc.Config{Action: "mount", Image: e.sif, Bundle: b}), nil)
	if _, err := os.Stat(seccompProfile()); err != nil {
		if code != 1 || !strings.Contains(stderr, "seccomp") {
			t.Errorf("mount without %s: exit %d, stderr %q", seccompProfile(), code, stderr)
		}
		e.checkLeftAsFound(b, dirState{})
		return
	}
	if code != 0 {
		t.Fatalf("mount: exit %d, stderr %q", code, stderr)
	}
	code, stderr = runStarter(t, bin, bundleConfig(t, bundlerpc.Config{Action: "umount", Bundle: b}), nil)
	if code != 0 {
		t.Fatalf("umount: exit %d, stderr %q", code, stderr)
	}
	e.checkLeftAsFound(b, dirState{})
}
