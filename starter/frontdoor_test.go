package starter_test

// These tests build cmd/starter with the test-only probe engine (-tags kerrtest) and attack
// its front door: the command line, the config fd, the environment, inherited fds and, as
// root, the setuid path. They run the binary because stage 0 is C that runs before Go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/rpc/envelope"
)

// Exit codes from starter-c/starter.h (enum kerr_exit).
const (
	exitEngine = 252
	exitConfig = 253
	exitUsage  = 254
	exitFatal  = 255
)

var bins struct {
	dir         string
	starter     string // -tags kerrtest
	starterSuid string // -tags kerrtest,suid
	err         error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kerr-starter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.starter = filepath.Join(dir, "starter")
	bins.starterSuid = filepath.Join(dir, "starter-suid")
	bins.err = build(bins.starter, "kerrtest")
	if bins.err == nil {
		bins.err = build(bins.starterSuid, "kerrtest,suid")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(out, tags string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building the starter needs the go command in PATH: %w", err)
	}
	cmd := exec.Command(goTool, "build", "-tags", tags, "-o", out, "github.com/kerr-hpc/kerr/cmd/starter")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags %s: %w\n%s", tags, err, b)
	}
	return nil
}

func needBins(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// probeReport mirrors ProbeReport in cmd/starter/engine_kerrtest.go.
type probeReport struct {
	ID       string          `json:"id"`
	Config   json.RawMessage `json:"config"`
	ResUID   [3]int          `json:"resuid"`
	ResGID   [3]int          `json:"resgid"`
	Dumpable int             `json:"dumpable"`
	FDs      map[int]string  `json:"fds"`
	Env      []string        `json:"env"`
	Stage0   struct {
		SuidBuild, Dropped bool
		UID, GID           int
	} `json:"stage0"`
	Paths struct {
		Prefix, SysconfDir, LibexecDir, LocalstateDir, PolicyFile, Version string
	} `json:"paths"`
	ConfigMax int               `json:"config_max"`
	NS        map[string]string `json:"ns"`
	Pid       int               `json:"pid"`
}

type run struct {
	bin    string
	args   []string // default: --config-fd 3
	config []byte   // written to a pipe placed at fd 3 (unless extra says otherwise)
	extra  []*os.File
	env    []string
	cred   *syscall.Credential
	shell  string // if set, run through sh -c shell with $0 = bin
}

type result struct {
	code           int
	stdout, stderr string
}

func (r run) do(t *testing.T) result {
	t.Helper()
	args := r.args
	if args == nil {
		args = []string{"--config-fd", "3"}
	}
	var cmd *exec.Cmd
	if r.shell != "" {
		cmd = exec.Command("/bin/sh", append([]string{"-c", r.shell, r.bin}, args...)...)
	} else {
		cmd = exec.Command(r.bin, args...)
	}
	cmd.Env = r.env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = r.extra
	var w *os.File
	if r.extra == nil && r.config != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{pr}
		defer pr.Close()
		w = pw
	}
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if w != nil {
		go func() {
			w.Write(r.config) // EPIPE when the starter stops reading early: expected
			w.Close()
		}()
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (res result) report(t *testing.T) probeReport {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("starter exited %d, stderr %q", res.code, res.stderr)
	}
	var r probeReport
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("probe report %q: %v", res.stdout, err)
	}
	return r
}

// wantFailure checks the exit code and that stderr is one line starting with "starter: ".
func (res result) wantFailure(t *testing.T, code int, contains string) {
	t.Helper()
	if res.code != code {
		t.Fatalf("exit %d, want %d; stderr %q", res.code, code, res.stderr)
	}
	if !strings.HasPrefix(res.stderr, "starter: ") || strings.Count(res.stderr, "\n") != 1 ||
		!strings.HasSuffix(res.stderr, "\n") {
		t.Fatalf("stderr is not one 'starter: ' line: %q", res.stderr)
	}
	if !strings.Contains(res.stderr, contains) {
		t.Fatalf("stderr %q does not contain %q", res.stderr, contains)
	}
	if res.stdout != "" {
		t.Fatalf("stdout not empty: %q", res.stdout)
	}
}

func probeConfig(id string) []byte {
	return []byte(`{"version":1,"engine":"probe","id":"` + id + `","config":{"k":"v"}}`)
}

func TestStarterRunsEngineWithCleanProcess(t *testing.T) {
	needBins(t)
	r := run{bin: bins.starter, config: probeConfig("c1")}.do(t).report(t)
	if r.ID != "c1" || string(r.Config) != `{"k":"v"}` {
		t.Errorf("engine got id %q config %s", r.ID, r.Config)
	}
	if len(r.Env) != 0 {
		t.Errorf("environment not empty: %q", r.Env)
	}
	if r.Dumpable != 0 {
		t.Errorf("dumpable = %d, want 0", r.Dumpable)
	}
	if len(r.FDs) != 3 {
		t.Errorf("open fds %v, want only 0, 1, 2 (the config fd must be closed)", r.FDs)
	}
	if r.Stage0.SuidBuild || r.Stage0.Dropped {
		t.Errorf("plain starter reports stage0 %+v", r.Stage0)
	}
}

// The C stage and the envelope package must agree on the size limit, and an unconfigured
// build must agree with buildcfg's defaults (cmd/starter refuses to run otherwise).
func TestStarterBuildValuesMatchGo(t *testing.T) {
	needBins(t)
	r := run{bin: bins.starter, config: probeConfig("c1")}.do(t).report(t)
	if r.ConfigMax != envelope.MaxSize {
		t.Errorf("C reads up to %d bytes, envelope.MaxSize is %d", r.ConfigMax, envelope.MaxSize)
	}
	if r.Paths.PolicyFile != buildcfg.PolicyFile() || r.Paths.LibexecDir != buildcfg.LibexecDir {
		t.Errorf("C paths %+v differ from buildcfg", r.Paths)
	}
}

func TestStarterWithoutEnginesSaysEngineUnavailable(t *testing.T) {
	needBins(t)
	for _, bin := range []string{bins.starter, bins.starterSuid} {
		res := run{bin: bin, config: []byte(`{"version":1,"engine":"nosuch","id":"c1","config":{}}`)}.do(t)
		res.wantFailure(t, exitEngine, `starter: engine "nosuch" is not available in this starter`)
	}
	// The root-only engines are not in the setuid starter (DESIGN.md rule 4).
	for _, engine := range []string{"oci", "oci-init", "bundle"} {
		res := run{bin: bins.starterSuid, config: []byte(`{"version":1,"engine":"` + engine + `","id":"c1","config":{}}`)}.do(t)
		res.wantFailure(t, exitEngine, `engine "`+engine+`" is not available in this starter`)
	}
}

func TestStarterRejectsMalformedConfig(t *testing.T) {
	needBins(t)
	cases := map[string]string{
		"empty":         ``,
		"garbage":       "\x00\x01garbage",
		"truncated":     `{"version":1,"engine":"probe","id":"c1","config":{`,
		"wrong version": `{"version":2,"engine":"probe","id":"c1","config":{}}`,
		"id traversal":  `{"version":1,"engine":"probe","id":"../x","config":{}}`,
		"id slash":      `{"version":1,"engine":"probe","id":"a/b","config":{}}`,
		"unknown key":   `{"version":1,"engine":"probe","id":"c1","config":{},"policy":{"allow":true}}`,
		"duplicate key": `{"version":1,"engine":"probe","id":"c1","id":"c2","config":{}}`,
		"trailing data": `{"version":1,"engine":"probe","id":"c1","config":{}}{}`,
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			run{bin: bins.starter, config: []byte(cfg)}.do(t).wantFailure(t, exitConfig, "invalid engine config")
		})
	}
}

// A config of exactly envelope.MaxSize bytes is read whole; one byte more is refused by the C
// stage before Go runs, without reading the rest.
func TestStarterConfigSizeBound(t *testing.T) {
	needBins(t)
	base := probeConfig("c1")
	exact := append(append([]byte{}, base...), bytes.Repeat([]byte(" "), envelope.MaxSize-len(base))...)
	run{bin: bins.starter, config: exact}.do(t).report(t)

	over := append(exact, ' ')
	run{bin: bins.starter, config: over}.do(t).wantFailure(t, exitConfig, "more than 1048576 bytes")

	huge := bytes.Repeat([]byte("x"), 8*envelope.MaxSize)
	run{bin: bins.starter, config: huge}.do(t).wantFailure(t, exitConfig, "more than 1048576 bytes")
}

func TestStarterRejectsBadCommandLine(t *testing.T) {
	needBins(t)
	cases := map[string][]string{
		"no args":       {},
		"flag only":     {"--config-fd"},
		"equals form":   {"--config-fd=3"},
		"extra arg":     {"--config-fd", "3", "--debug"},
		"other flag":    {"--config", "3"},
		"negative":      {"--config-fd", "-1"},
		"leading zero":  {"--config-fd", "03"},
		"plus sign":     {"--config-fd", "+3"},
		"stdin":         {"--config-fd", "0"},
		"stderr":        {"--config-fd", "2"},
		"overflow":      {"--config-fd", "99999999999999999999"},
		"not a number":  {"--config-fd", "three"},
		"trailing junk": {"--config-fd", "3x"},
		"fd not open":   {"--config-fd", "7"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			run{bin: bins.starter, args: args, config: probeConfig("c1")}.do(t).wantFailure(t, exitUsage, "")
		})
	}
}

// The caller's environment must reach neither the Go runtime (GODEBUG=inittrace=1 would
// print a trace on stderr) nor the engine.
func TestStarterIgnoresCallerEnvironment(t *testing.T) {
	needBins(t)
	env := []string{
		"GODEBUG=inittrace=1", "GOTRACEBACK=crash", "GOMAXPROCS=1", "GCONV_PATH=/tmp/evil",
		"LD_LIBRARY_PATH=/tmp/evil", "KERRENV_FOO=bar", "PATH=/tmp/evil:/usr/bin", "HOME=/tmp/evil",
	}
	res := run{bin: bins.starter, config: probeConfig("c1"), env: env}.do(t)
	r := res.report(t)
	if len(r.Env) != 0 {
		t.Errorf("engine sees environment %q", r.Env)
	}
	if res.stderr != "" {
		t.Errorf("the Go runtime honoured the caller's GODEBUG: stderr %q", res.stderr)
	}
}

// Named after the runc bug where an fd of the host leaked into the container: whatever the
// caller leaves open, stage 1 starts with fds 0, 1 and 2 only.
func TestCVE_2024_21626_InheritedFDsAreClosed(t *testing.T) {
	needBins(t)
	dir, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() { pw.Write(probeConfig("c1")); pw.Close() }()
	// fd 3: a host directory, 4: /dev/null, 5: the config, 6 and 7: more of the same.
	res := run{bin: bins.starter, args: []string{"--config-fd", "5"},
		extra: []*os.File{dir, null, pr, dir, null}}.do(t)
	r := res.report(t)
	for fd, target := range r.FDs {
		if fd > 2 {
			t.Errorf("fd %d (%s) reached stage 1", fd, target)
		}
	}
}

// A caller may close stdio so that a file the starter opens lands on fd 2; stage 0 puts
// /dev/null there first.
func TestStarterReopensClosedStdio(t *testing.T) {
	needBins(t)
	f := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(f, probeConfig("c1"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := run{bin: bins.starter, args: []string{"--config-fd", "3", f},
		shell: `exec "$0" "$1" "$2" 3<"$3" 0<&- 2>&-`}.do(t)
	r := res.report(t)
	if r.FDs[0] != os.DevNull || r.FDs[2] != os.DevNull {
		t.Errorf("fds 0 and 2 are %q and %q, want %s", r.FDs[0], r.FDs[2], os.DevNull)
	}
}

// --- as root: the setuid path ---

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: installing a setuid-root starter needs root (run `make check` as root)")
	}
}

// testUser returns the credential of the unprivileged account kerr-test, creating it.
func testUser(t *testing.T) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("kerr-test")
	if err != nil {
		out, err := exec.Command("useradd", "-M", "-r", "-s", "/usr/sbin/nologin", "kerr-test").CombinedOutput()
		if err != nil {
			t.Fatalf("useradd kerr-test: %v: %s", err, out)
		}
		if u, err = user.Lookup("kerr-test"); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// publicDir returns a fresh directory that kerr-test can reach.
func publicDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// installSetuid copies bin into dir as root:root 4755, as `make install` does.
func installSetuid(t *testing.T, bin, dir string) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(dst, b, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Flags&0x2 != 0 { // ST_NOSUID
		t.Skipf("skipped: %s is on a nosuid filesystem; set TMPDIR to a suid-capable place", dir)
	}
	return dst
}

func TestSetuidStarterDropsToCaller(t *testing.T) {
	needBins(t)
	needRoot(t)
	cred := testUser(t)
	dir := publicDir(t)
	bin := installSetuid(t, bins.starterSuid, dir)

	r := run{bin: bin, config: probeConfig("c1"), cred: cred}.do(t).report(t)
	u, g := int(cred.Uid), int(cred.Gid)
	if r.ResUID != [3]int{u, u, 0} {
		t.Errorf("real/effective/saved uid = %v, want [%d %d 0]", r.ResUID, u, u)
	}
	// 4755 is setuid, not setgid: the gids were the caller's from the start.
	if r.ResGID != [3]int{g, g, g} {
		t.Errorf("real/effective/saved gid = %v, want [%d %d %d]", r.ResGID, g, g, g)
	}
	if !r.Stage0.SuidBuild || !r.Stage0.Dropped || r.Stage0.UID != u || r.Stage0.GID != g {
		t.Errorf("stage0 = %+v", r.Stage0)
	}
	if r.Dumpable != 0 {
		t.Errorf("dumpable = %d while the saved uid is root", r.Dumpable)
	}
	if len(r.FDs) != 3 {
		t.Errorf("fds %v, want 0, 1, 2 only", r.FDs)
	}

	res := run{bin: bin, config: []byte(`{"version":1,"engine":"oci","id":"c1","config":{}}`), cred: cred}.do(t)
	res.wantFailure(t, exitEngine, `engine "oci" is not available in this starter`)
	res = run{bin: bin, args: []string{}, cred: cred}.do(t)
	res.wantFailure(t, exitUsage, "usage")
}

// In setuid mode the Go runtime must see the kernel's AT_SECURE and harden itself; the one
// sign it leaves is GOTRACEBACK=none, its own addition to an environment stage 0 emptied.
// Variables the loader deletes (GCONV_PATH, LD_LIBRARY_PATH) shift the environment array;
// stage 0 must keep the auxiliary vector where Go looks for it even then.
func TestSetuidStarterGoRuntimeSeesSecureMode(t *testing.T) {
	needBins(t)
	needRoot(t)
	cred := testUser(t)
	bin := installSetuid(t, bins.starterSuid, publicDir(t))
	envs := map[string][]string{
		"empty":         nil,
		"plain":         {"GODEBUG=inittrace=1", "GOTRACEBACK=all", "KERRENV_X=1"},
		"loader-unsafe": {"GCONV_PATH=/tmp", "LD_LIBRARY_PATH=/tmp", "GODEBUG=inittrace=1", "MALLOC_TRACE=/tmp/m", "TMPDIR=/tmp"},
	}
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			res := run{bin: bin, config: probeConfig("c1"), cred: cred, env: env}.do(t)
			r := res.report(t)
			if len(r.Env) != 1 || r.Env[0] != "GOTRACEBACK=none" {
				t.Errorf("stage 1 environment %q, want only Go's own GOTRACEBACK=none", r.Env)
			}
			if res.stderr != "" {
				t.Errorf("stderr %q", res.stderr)
			}
		})
	}
}

// LD_PRELOAD from the caller must not run code in the setuid starter. The same library and
// account do load it into an ordinary program, which shows that the test can fail.
func TestSetuidStarterIgnoresLDPreload(t *testing.T) {
	needBins(t)
	needRoot(t)
	cred := testUser(t)
	dir := publicDir(t)
	bin := installSetuid(t, bins.starterSuid, dir)
	marker := filepath.Join(dir, "preloaded")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "preload.c")
	lib := filepath.Join(dir, "preload.so")
	code := `#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void)
{
	int fd = open("` + marker + `", O_WRONLY | O_CREAT, 0644);
	if (fd >= 0 && close(fd) != 0)
		_exit(99);
}
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	env := []string{"LD_PRELOAD=" + lib}

	ctl := exec.Command("/bin/true")
	ctl.Env = env
	ctl.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := ctl.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("control: LD_PRELOAD did not load into /bin/true (%v); the test proves nothing", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	run{bin: bin, config: probeConfig("c1"), cred: cred, env: env}.do(t).report(t)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("LD_PRELOAD code ran inside the setuid starter")
	}
}

// Only starter-suid may be setuid: it is built without the root-only engines.
func TestPlainStarterRefusesToRunSetuid(t *testing.T) {
	needBins(t)
	needRoot(t)
	cred := testUser(t)
	bin := installSetuid(t, bins.starter, publicDir(t))
	res := run{bin: bin, config: probeConfig("c1"), cred: cred}.do(t)
	res.wantFailure(t, exitFatal, "only starter-suid may be")
}

// Root may run starter-suid directly: nothing to drop, but it stays the setuid build.
func TestSetuidStarterRunByRoot(t *testing.T) {
	needBins(t)
	needRoot(t)
	r := run{bin: bins.starterSuid, config: probeConfig("c1")}.do(t).report(t)
	if !r.Stage0.SuidBuild || r.Stage0.Dropped || r.ResUID != [3]int{0, 0, 0} {
		t.Errorf("stage0 %+v, resuid %v", r.Stage0, r.ResUID)
	}
}

// The starters `make` builds: mconfig's paths reach C (config.h) and Go (-X) alike, or
// cmd/starter would exit 255; and the test-only probe engine is not in them.
func TestMadeStartersAgreeOnPathsAndLackProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: runs ./mconfig and builds both starters")
	}
	tmp := t.TempDir()
	build := filepath.Join(tmp, "build")
	for _, argv := range [][]string{
		{"./mconfig", "--prefix=" + filepath.Join(tmp, "prefix"), "--sysconfdir=/etc/kerr-test-nowhere", "-b", build},
		{"make", "-s", "-C", build, "starter", "starter-suid"},
	} {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	h, err := os.ReadFile(filepath.Join(build, "config.h"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h), `#define KERR_POLICY_FILE "/etc/kerr-test-nowhere/kerr/kerr.toml"`) {
		t.Errorf("config.h lacks the policy path:\n%s", h)
	}
	for _, name := range []string{"starter", "starter-suid"} {
		res := run{bin: filepath.Join(build, name), config: probeConfig("c1")}.do(t)
		res.wantFailure(t, exitEngine, `engine "probe" is not available in this starter`)
	}
}
