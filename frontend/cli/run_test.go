package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/hpcenv"
	"github.com/kerr-hpc/kerr/policy"
	"github.com/kerr-hpc/kerr/rpc/native"
)

// hpc runs the CLI in this process with args, the starter replaced by a recorder: it returns
// the request kerr would have handed to the starter (nil if it stopped before) and the error.
func hpc(t *testing.T, args ...string) (*native.Config, error) {
	cfg, _, err := hpcStderr(t, args...)
	return cfg, err
}

// hpcStderr is hpc that also returns what kerr wrote on stderr.
func hpcStderr(t *testing.T, args ...string) (*native.Config, string, error) {
	t.Helper()
	var got *native.Config
	old := execHPC
	execHPC = func(id string, cfg *native.Config) error {
		if !strings.HasPrefix(id, cfg.Action+"-") {
			t.Errorf("container id %q", id)
		}
		got = cfg
		return nil
	}
	t.Cleanup(func() { execHPC = old })
	var stdout, stderr bytes.Buffer
	err := runApp(context.Background(), NewApp(&stdout, &stderr), append([]string{"kerr"}, args...))
	if err == nil && got == nil {
		t.Fatalf("kerr %q: no error and no request", args)
	}
	return got, stderr.String(), err
}

// hpcOK is hpc for a command line that must succeed.
func hpcOK(t *testing.T, args ...string) *native.Config {
	t.Helper()
	cfg, err := hpc(t, args...)
	if err != nil {
		t.Fatalf("kerr %q: %v", args, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("kerr %q made an invalid request: %v", args, err)
	}
	return cfg
}

// sandbox makes a directory to serve as a sandbox image and enters its parent, so that tests
// can name it relatively; it returns the parent.
func sandbox(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	return dir
}

func TestHPCArgsAfterTheImageAreTheCommands(t *testing.T) {
	dir := sandbox(t)
	cfg := hpcOK(t, "exec", "img", "ls", "-l", "--color", "-B", "/x", "--help", "-h")
	if cfg.Action != native.ActionExec || cfg.Image != filepath.Join(dir, "img") || cfg.Cwd != dir {
		t.Errorf("request %+v", cfg)
	}
	if want := []string{"ls", "-l", "--color", "-B", "/x", "--help", "-h"}; !slices.Equal(cfg.Args, want) || len(cfg.Binds) != 0 {
		t.Errorf("args %q, binds %v; want %q and none", cfg.Args, cfg.Binds, want)
	}
	cfg = hpcOK(t, "exec", "--", "img", "--", "ls", "--", "x")
	if want := []string{"ls", "--", "x"}; !slices.Equal(cfg.Args, want) {
		t.Errorf("args %q; want %q (the -- after IMAGE dropped)", cfg.Args, want)
	}
	cfg = hpcOK(t, "run", "img", "a", "-b")
	if cfg.Action != native.ActionRun || !slices.Equal(cfg.Args, []string{"a", "-b"}) {
		t.Errorf("run: %+v", cfg)
	}
	cfg = hpcOK(t, "shell", "./img/")
	if cfg.Action != native.ActionShell || len(cfg.Args) != 0 || cfg.Image != filepath.Join(dir, "img") {
		t.Errorf("shell: %+v", cfg)
	}
}

func TestHPCFlags(t *testing.T) {
	dir := sandbox(t)
	for _, d := range []string{"data", "scratch", "myhome", "ov", "work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "prof.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := hpcOK(t, "exec",
		"-B", "data,scratch:/scratch:ro", "--bind", "/tmp/../tmp::rw", "-B", "data/../work:/w/./x:rw",
		"--home", "myhome:/home/me", "--pwd", "work", "--overlay", "ov", "--security", "seccomp:prof.json",
		"--no-mount", "proc,/etc/hosts/", "--no-mount", "tmp", "-c", "--writable-tmpfs=false",
		"-p", "-i", "--hostname", "node1", "-n", "img", "true")
	wantBinds := []native.Bind{
		{Source: filepath.Join(dir, "data"), Dest: filepath.Join(dir, "data")},
		{Source: filepath.Join(dir, "scratch"), Dest: "/scratch", ReadOnly: true},
		{Source: "/tmp", Dest: "/tmp"},
		{Source: filepath.Join(dir, "work"), Dest: "/w/x"},
	}
	if !slices.Equal(cfg.Binds, wantBinds) {
		t.Errorf("binds\n got %+v\nwant %+v", cfg.Binds, wantBinds)
	}
	if cfg.HomeSource != filepath.Join(dir, "myhome") || cfg.HomeDest != "/home/me" || cfg.NoHome {
		t.Errorf("home %q -> %q, no-home %v", cfg.HomeSource, cfg.HomeDest, cfg.NoHome)
	}
	if cfg.Pwd != filepath.Join(dir, "work") || cfg.Overlay != filepath.Join(dir, "ov") || cfg.Seccomp != filepath.Join(dir, "prof.json") {
		t.Errorf("pwd %q, overlay %q, seccomp %q", cfg.Pwd, cfg.Overlay, cfg.Seccomp)
	}
	if want := []string{"proc", "/etc/hosts", "tmp"}; !slices.Equal(cfg.NoMount, want) {
		t.Errorf("no-mount %q; want %q", cfg.NoMount, want)
	}
	if want := []string{"pid", "ipc", "uts", "net"}; !slices.Equal(cfg.Namespaces, want) || cfg.Hostname != "node1" {
		t.Errorf("namespaces %q hostname %q; want %q node1", cfg.Namespaces, cfg.Hostname, want)
	}
	if !cfg.Contain || cfg.ContainAll || cfg.WritableTmpfs {
		t.Errorf("contain %v containall %v writable-tmpfs %v", cfg.Contain, cfg.ContainAll, cfg.WritableTmpfs)
	}
	if !slices.Contains(cfg.Env, "HOME=/home/me") {
		t.Errorf("env %q lacks HOME=/home/me", cfg.Env)
	}
	if !slices.Contains(cfg.Env, "KERR_BIND=data,scratch:/scratch:ro,/tmp/../tmp::rw,data/../work:/w/./x:rw") {
		t.Errorf("env %q lacks KERR_BIND", cfg.Env)
	}

	cfg = hpcOK(t, "run", "-C", "--uts", "img")
	if !cfg.Contain || !cfg.ContainAll || !slices.Equal(cfg.Namespaces, []string{"pid", "ipc", "uts"}) {
		t.Errorf("-C: contain %v containall %v namespaces %q", cfg.Contain, cfg.ContainAll, cfg.Namespaces)
	}
	cfg = hpcOK(t, "shell", "--no-home", "--writable-tmpfs", "img")
	if !cfg.NoHome || !cfg.WritableTmpfs || cfg.Contain || len(cfg.Namespaces) != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestHPCEnvironment(t *testing.T) {
	dir := sandbox(t)
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte("# file\nA=file\nB=file\nexport C='file c'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KERRTEST_PASSED", "yes")
	t.Setenv("KERR_TEST_SETTING", "no")
	t.Setenv("LD_LIBRARY_PATH", "/host/lib")
	t.Setenv("TERM", "xterm")
	t.Setenv("SINGULARITYENV_A", "sing")
	t.Setenv("APPTAINERENV_D", "app")
	t.Setenv("SINGULARITYENV_D", "sing")
	t.Setenv("KERRENV_E", "kerr")
	t.Setenv("APPTAINERENV_E", "app")
	t.Setenv("KERRENV_HOME", "/nope")

	cfg, stderr, err := hpcStderr(t, "exec", "--env-file", "env", "--env", "A=flag,F=1,2", "--env", "G=x=y", "img", "env")
	if err != nil {
		t.Fatal(err)
	}
	wantWarn := "WARNING: APPTAINERENV_E ignored: KERRENV_E sets E\nWARNING: KERRENV_HOME ignored: HOME cannot be overridden (use --home)\n" +
		"WARNING: SINGULARITYENV_D ignored: APPTAINERENV_D sets D\n"
	if stderr != wantWarn {
		t.Errorf("stderr %q; want %q", stderr, wantWarn)
	}
	if _, stderr, _ = hpcStderr(t, "-q", "exec", "img", "env"); stderr != "" {
		t.Errorf("kerr -q: stderr %q", stderr)
	}
	wantOver := []string{"A=flag", "B=file", "C=file c", "D=app", "E=kerr", "F=1,2", "G=x=y"}
	if !slices.Equal(cfg.EnvOverride, wantOver) {
		t.Errorf("overrides\n got %q\nwant %q", cfg.EnvOverride, wantOver)
	}
	for _, want := range []string{"KERRTEST_PASSED=yes", "TERM=xterm", "PATH=" + hpcenv.DefaultPath,
		"KERR_CONTAINER=" + filepath.Join(dir, "img"), "SINGULARITY_NAME=img", "APPTAINER_COMMAND=exec"} {
		if !slices.Contains(cfg.Env, want) {
			t.Errorf("env lacks %q: %q", want, cfg.Env)
		}
	}
	for _, e := range cfg.Env {
		if strings.HasPrefix(e, "KERR_TEST_SETTING=") || strings.HasPrefix(e, "LD_LIBRARY_PATH=") ||
			strings.HasPrefix(e, "KERRENV_") || strings.HasPrefix(e, "APPTAINERENV_") ||
			strings.HasPrefix(e, "SINGULARITYENV_") || e == "HOME=/nope" {
			t.Errorf("env passes %q", e)
		}
	}

	for _, flag := range []string{"-e", "--cleanenv", "-C"} {
		cfg = hpcOK(t, "exec", flag, "img", "env")
		if slices.Contains(cfg.Env, "KERRTEST_PASSED=yes") || !slices.Contains(cfg.Env, "TERM=xterm") ||
			!slices.Contains(cfg.Env, "LANG=C") || !slices.Contains(cfg.EnvOverride, "E=kerr") {
			t.Errorf("%s: env %q, overrides %q", flag, cfg.Env, cfg.EnvOverride)
		}
	}
}

func TestHPCUsageErrors(t *testing.T) {
	sandbox(t)
	if err := os.WriteFile("file", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("badenv", []byte("A=1\nB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"exec"}, errdefs.ExitUsage, "usage: kerr exec [flags] IMAGE COMMAND [ARGS...]"},
		{[]string{"exec", "img"}, errdefs.ExitUsage, "usage: kerr exec"},
		{[]string{"exec", "img", "--"}, errdefs.ExitUsage, "usage: kerr exec"},
		{[]string{"run"}, errdefs.ExitUsage, "usage: kerr run [flags] IMAGE [ARGS...]"},
		{[]string{"shell"}, errdefs.ExitUsage, "usage: kerr shell"},
		{[]string{"exec", "-B", "/tmp", "instance://job", "ls"}, errdefs.ExitUsage, "given at instance start"},
		{[]string{"exec", "instance://../x", "ls"}, errdefs.ExitUsage, "instance name"},
		{[]string{"run", "docker://busybox"}, errdefs.ExitUsage, "'kerr pull' it"},
		{[]string{"exec", "--frob", "img", "ls"}, errdefs.ExitUsage, "frob"},
		{[]string{"exec", "-B", "", "img", "ls"}, errdefs.ExitUsage, "--bind"},
		{[]string{"exec", "-B", "/a:/b:ro:x", "img", "ls"}, errdefs.ExitUsage, "want SRC[:DST[:ro|rw]]"},
		{[]string{"exec", "-B", "/tmp:b", "img", "ls"}, errdefs.ExitUsage, "not an absolute path"},
		{[]string{"exec", "-B", "/tmp:/b:rx", "img", "ls"}, errdefs.ExitUsage, `option "rx" is not ro or rw`},
		{[]string{"exec", "--home", "a:b", "img", "ls"}, errdefs.ExitUsage, "not an absolute path"},
		{[]string{"exec", "--home", "a:/b:/c", "img", "ls"}, errdefs.ExitUsage, "want SRC[:DST]"},
		{[]string{"exec", "--home", "/tmp", "--no-home", "img", "ls"}, errdefs.ExitUsage, "do not go together"},
		{[]string{"exec", "--overlay", "/tmp", "--writable-tmpfs", "img", "ls"}, errdefs.ExitUsage, "do not go together"},
		{[]string{"exec", "--overlay", "file", "img", "ls"}, errdefs.ExitUsage, "not a directory"},
		{[]string{"exec", "--env", "NOVALUE", "img", "ls"}, errdefs.ExitUsage, "want NAME=VALUE"},
		{[]string{"exec", "--env-file", "badenv", "img", "ls"}, errdefs.ExitUsage, "badenv:2:"},
		{[]string{"exec", "--security", "apparmor:x", "img", "ls"}, errdefs.ExitUsage, "only seccomp:PROFILE"},
		{[]string{"exec", "--security", "seccomp:/a,seccomp:/b", "img", "ls"}, errdefs.ExitUsage, "one seccomp profile"},
		{[]string{"exec", "--no-mount", "proc,etc", "img", "ls"}, errdefs.ExitUsage, `--no-mount "etc"`},
		{[]string{"exec", "--hostname", "a b", "img", "ls"}, errdefs.ExitUsage, "--hostname"},
		{[]string{"exec", "none.sif", "ls"}, errdefs.ExitNotFound, "none.sif: no such file"},
		{[]string{"exec", "file", "ls"}, errdefs.ExitInvalidImage, "is not a SIF file"},
		{[]string{"exec", "-B", "nowhere", "img", "ls"}, errdefs.ExitNotFound, "nowhere: no such file"},
		{[]string{"exec", "--home", "nohome", "img", "ls"}, errdefs.ExitNotFound, "nohome: no such file"},
		{[]string{"exec", "--overlay", "noov", "img", "ls"}, errdefs.ExitNotFound, "noov: no such file"},
		{[]string{"exec", "--security", "seccomp:noprof", "img", "ls"}, errdefs.ExitNotFound, "noprof: no such file"},
		{[]string{"exec", "--env-file", "noenv", "img", "ls"}, errdefs.ExitNotFound, "noenv: no such file"},
	}
	if err := os.Mkdir("img", 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	for _, tc := range cases {
		cfg, err := hpc(t, tc.args...)
		if err == nil || cfg != nil {
			t.Errorf("kerr %q: %v, request %+v; want an error", tc.args, err, cfg)
			continue
		}
		if code := errdefs.ExitCode(err); code != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("kerr %q: exit %d %q; want %d and %q", tc.args, code, err, tc.code, tc.msg)
		}
	}
}

// TestHPCErrorsAreOneLine runs kerr as a user would for a few failures.
func TestHPCErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	wantError(t, kerr(t, "exec", dir), errdefs.ExitUsage, "usage: kerr exec [flags] IMAGE COMMAND [ARGS...]")
	wantError(t, kerr(t, "shell", "-p", "instance://x"), errdefs.ExitUsage, "given at instance start")
	wantError(t, kerr(t, "run", filepath.Join(dir, "none.sif")), errdefs.ExitNotFound, "none.sif")
	wantError(t, kerr(t, "exec", "-B", "/x:y", dir, "ls"), errdefs.ExitUsage, `--bind "/x:y"`)
}

func TestHPCHelpNamesEveryFlag(t *testing.T) {
	for _, cmd := range []string{"exec", "run", "shell"} {
		r := kerr(t, cmd, "--help")
		if r.code != 0 {
			t.Fatalf("kerr %s --help: exit %d %q", cmd, r.code, r.stderr)
		}
		for _, f := range []string{"--bind", "-B", "--home", "--no-home", "--contain, -c", "--containall, -C", "--cleanenv, -e",
			"--env NAME=VALUE", "--env-file", "--pwd", "--writable-tmpfs", "--overlay", "--pid, -p", "--ipc, -i", "--uts",
			"--hostname", "--net, -n", "--security", "--no-mount", "Flags go before IMAGE", "Exit status"} {
			if !strings.Contains(r.stdout, f) {
				t.Errorf("kerr %s --help does not mention %q", cmd, f)
			}
		}
	}
}

// TestHPCEarlyPolicyDenial decides with a policy of the test's own (root-owned when the
// tests run as root, which policy.Load insists on) for a request of a non-root caller.
func TestHPCEarlyPolicyDenial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("policy.Load wants a root-owned file")
	}
	old := buildcfg.SysconfDir
	buildcfg.SysconfDir = t.TempDir()
	t.Cleanup(func() { buildcfg.SysconfDir = old })
	img := t.TempDir()
	req := &policy.Request{Caller: policy.Caller{UID: 1000, GID: 1000, Name: "alice"}, Mode: policy.ModeSetuid,
		Image: policy.Image{Path: img, Format: policy.FormatSandbox}, Namespaces: []string{"net"}}

	// No policy file: the check is left to the starter.
	if err := earlyPolicyCheck(nil, req); err != nil {
		t.Errorf("without a policy: %v", err)
	}
	if err := os.Mkdir(filepath.Join(buildcfg.SysconfDir, "kerr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(buildcfg.PolicyFile(), []byte("[namespaces]\nallow = [\"pid\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := earlyPolicyCheck(nil, req)
	want := "namespace net: denied by namespaces.allow"
	if errdefs.ExitCode(err) != errdefs.ExitDenied || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), buildcfg.PolicyFile()+":2") {
		t.Errorf("earlyPolicyCheck = %v; want exit 5, %q at line 2", err, want)
	}
	req.Namespaces = []string{"pid"}
	if err := earlyPolicyCheck(nil, req); err != nil {
		t.Errorf("allowed request: %v", err)
	}
	// A policy kerr cannot load (here: writable by others) is the starter's to report.
	if err := os.Chmod(buildcfg.PolicyFile(), 0o666); err != nil {
		t.Fatal(err)
	}
	req.Namespaces = []string{"net"}
	if err := earlyPolicyCheck(nil, req); err != nil {
		t.Errorf("with an unloadable policy: %v", err)
	}
}

func TestHPCInterruptedBeforeTheExec(t *testing.T) {
	sandbox(t)
	old := execHPC
	execHPC = func(string, *native.Config) error { t.Error("the starter was started"); return nil }
	t.Cleanup(func() { execHPC = old })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := runApp(ctx, NewApp(&out, &out), []string{"kerr", "exec", "img", "true"})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("runApp = %v; want interrupted", err)
	}
}

// Job scripts written for Singularity and Apptainer set their binds in the environment:
// those come first, then -B's; KERR_BIND wins over the others.
func TestHPCBindsFromTheEnvironment(t *testing.T) {
	dir := sandbox(t)
	for _, d := range []string{"data", "scratch", "cli"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SINGULARITY_BINDPATH", "data:/d:ro, scratch")
	cfg := hpcOK(t, "exec", "-B", "cli", "img", "true")
	want := []native.Bind{
		{Source: filepath.Join(dir, "data"), Dest: "/d", ReadOnly: true},
		{Source: filepath.Join(dir, "scratch"), Dest: filepath.Join(dir, "scratch")},
		{Source: filepath.Join(dir, "cli"), Dest: filepath.Join(dir, "cli")},
	}
	if !slices.Equal(cfg.Binds, want) {
		t.Errorf("binds\n got %+v\nwant %+v", cfg.Binds, want)
	}
	t.Setenv("KERR_BIND", "cli:/c")
	cfg = hpcOK(t, "exec", "img", "true")
	if want := []native.Bind{{Source: filepath.Join(dir, "cli"), Dest: "/c"}}; !slices.Equal(cfg.Binds, want) {
		t.Errorf("KERR_BIND over SINGULARITY_BINDPATH: %+v", cfg.Binds)
	}
	t.Setenv("KERR_BIND", "cli:relative")
	if _, err := hpc(t, "exec", "img", "true"); errdefs.ExitCode(err) != errdefs.ExitUsage {
		t.Errorf("a bad bind in KERR_BIND: %v", err)
	}
}
