package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
)

// runAsKerrEnv makes the test binary run Main instead of the tests, so that a test sees what a
// user of the kerr binary sees: its exit status and what it writes to the real stdout and
// stderr.
const runAsKerrEnv = "KERR_CLI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsKerrEnv) == "1" {
		os.Exit(Main(append([]string{"kerr"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

// kerr runs the CLI in a child process with args, a private cache and no credentials.
func kerr(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), runAsKerrEnv+"=1", "HOME="+home, "KERR_CACHEDIR="+filepath.Join(home, "cache"),
		"DOCKER_CONFIG="+filepath.Join(home, "docker"))
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run kerr %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// wantError checks that kerr failed with code and exactly one line "kerr: ..." on stderr.
func wantError(t *testing.T, r result, code int, contains string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "kerr: ") || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one line starting with \"kerr: \": %q", r.stderr)
	}
	if !strings.Contains(r.stderr, contains) {
		t.Errorf("stderr %q does not mention %q", r.stderr, contains)
	}
	for _, sentinel := range []error{errdefs.ErrUsage, errdefs.ErrNotFound, errdefs.ErrExists, errdefs.ErrInvalidImage} {
		if strings.HasSuffix(strings.TrimSpace(r.stderr), ": "+sentinel.Error()) {
			t.Errorf("stderr repeats the sentinel's text: %q", r.stderr)
		}
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	r := kerr(t, "frobnicate")
	wantError(t, r, errdefs.ExitUsage, `unknown command "frobnicate"`)
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestPullWithoutArgumentsIsUsageError(t *testing.T) {
	wantError(t, kerr(t, "pull"), errdefs.ExitUsage, "usage: kerr pull")
	wantError(t, kerr(t, "pull", "a", "b", "c"), errdefs.ExitUsage, "usage: kerr pull")
	wantError(t, kerr(t, "build", "only-one"), errdefs.ExitUsage, "usage: kerr build")
}

func TestPullOfUnknownTransportIsUsageError(t *testing.T) {
	wantError(t, kerr(t, "pull", filepath.Join(t.TempDir(), "x.sif"), "ftp://example.com/x"), errdefs.ExitUsage, "ftp")
}

func TestInspectMissingFileIsNotFound(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.sif")
	r := kerr(t, "inspect", missing)
	wantError(t, r, errdefs.ExitNotFound, missing)
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestInspectNonSIFIsInvalidImage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "text.sif")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nnot a SIF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, kerr(t, "inspect", p), errdefs.ExitInvalidImage, p)
	wantError(t, kerr(t, "sif", "list", p), errdefs.ExitInvalidImage, p)
}

func TestVersionPrintsVersion(t *testing.T) {
	r := kerr(t, "--version")
	if r.code != 0 || !strings.Contains(r.stdout, buildcfg.Version) {
		t.Errorf("kerr --version: exit %d, stdout %q; want 0 and %s", r.code, r.stdout, buildcfg.Version)
	}
	if r.stderr != "" {
		t.Errorf("kerr --version wrote to stderr: %q", r.stderr)
	}
}

func TestHelpExitsZero(t *testing.T) {
	r := kerr(t, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "pull") || !strings.Contains(r.stdout, "inspect") {
		t.Errorf("kerr --help: exit %d, stdout %q", r.code, r.stdout)
	}
}

// testSIF writes a SIF with a runscript, an environment script, labels and an OCI config.
func testSIF(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("tar2sqfs"); err != nil {
		t.Skip("tar2sqfs not in PATH")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string]string{
		".singularity.d/runscript":                    "#!/bin/sh\nexec /bin/app \"$@\"\n",
		".singularity.d/env/10-docker2singularity.sh": "#!/bin/sh\nexport A='b'\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sqfs := filepath.Join(dir, "root.sqfs")
	cmd := exec.Command("tar2sqfs", "-q", "-c", "gzip", sqfs)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar2sqfs: %v: %s", err, out)
	}
	f, err := os.Open(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := filepath.Join(dir, "image.sif")
	err = sifimage.Write(p, sifimage.Contents{Squashfs: f, Arch: "amd64", Deffile: "bootstrap: docker\nfrom: app\n",
		Labels: map[string]string{"b.label": "2", "a.label": "1"}, OCIConfig: []byte(`{"architecture":"amd64","os":"linux"}`),
		Created: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectShowsEverySection(t *testing.T) {
	p := testSIF(t)
	r := kerr(t, "inspect", p)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("inspect: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"== labels ==\na.label: 1\nb.label: 2\n", "== runscript ==\n#!/bin/sh\nexec /bin/app \"$@\"\n",
		"=== /.singularity.d/env/10-docker2singularity.sh ===\n#!/bin/sh\nexport A='b'\n", `"architecture": "amd64"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "90-environment.sh") {
		t.Errorf("inspect shows an environment file the image lacks:\n%s", r.stdout)
	}

	r = kerr(t, "inspect", "--json", p)
	var ins map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &ins); r.code != 0 || err != nil {
		t.Fatalf("inspect --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	for _, k := range []string{"labels", "runscript", "environment", "config"} {
		if _, ok := ins[k]; !ok {
			t.Errorf("inspect --json lacks %q: %s", k, r.stdout)
		}
	}

	r = kerr(t, "inspect", "--runscript", p)
	if r.code != 0 || strings.Contains(r.stdout, "== labels ==") || !strings.Contains(r.stdout, "exec /bin/app") {
		t.Errorf("inspect --runscript: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestSIFListAndInfo(t *testing.T) {
	p := testSIF(t)
	r := kerr(t, "sif", "list", p)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "SIF ") || !strings.Contains(r.stdout, "FS  ") ||
		!strings.Contains(r.stdout, "Squashfs|") || !strings.Contains(r.stdout, "|amd64") {
		t.Errorf("sif list: exit %d, stdout:\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}
	wantError(t, kerr(t, "sif", "info", "99", p), errdefs.ExitNotFound, "no object 99")
	wantError(t, kerr(t, "sif", "info", "abc", p), errdefs.ExitUsage, `"abc"`)
	wantError(t, kerr(t, "sif", "dump", "0", p), errdefs.ExitUsage, `"0"`)
	r = kerr(t, "sif", "dump", "1", p)
	if r.code != 0 || r.stdout != "bootstrap: docker\nfrom: app\n" {
		t.Errorf("sif dump 1: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestBuildOverExistingOutputIsExists(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.sif")
	if err := os.WriteFile(out, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, kerr(t, "build", out, src), errdefs.ExitExists, "--force")
	if b, _ := os.ReadFile(out); string(b) != "keep" {
		t.Errorf("output changed: %q", b)
	}
}

func TestCacheListOfEmptyCache(t *testing.T) {
	r := kerr(t, "cache", "list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "KIND") || !strings.Contains(r.stdout, "total") {
		t.Errorf("cache list: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	wantError(t, kerr(t, "cache", "list", "extra"), errdefs.ExitUsage, "usage: kerr ")
}

func TestQuietBuildPrintsNothing(t *testing.T) {
	if _, err := exec.LookPath("tar2sqfs"); err != nil {
		t.Skip("tar2sqfs not in PATH")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.sif")
	r := kerr(t, "--quiet", "build", out, src)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("kerr --quiet build: exit %d, stdout %q, stderr %q; want 0 and silence", r.code, r.stdout, r.stderr)
	}
	if img, err := sifimage.Open(out); err != nil {
		t.Errorf("built SIF: %v", err)
	} else {
		img.Close()
	}
	r = kerr(t, "build", out, src)
	wantError(t, r, errdefs.ExitExists, out)
}
