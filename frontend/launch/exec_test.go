package launch

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/native"
)

// execHelperEnv makes the test binary call Exec instead of running the tests: the starter
// in $KERR_LAUNCH_TEST_STARTER, the config in $KERR_LAUNCH_TEST_CONFIG.
const execHelperEnv = "KERR_LAUNCH_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execHelperEnv) == "1" {
		err := Exec(os.Getenv("KERR_LAUNCH_TEST_STARTER"), []byte(os.Getenv("KERR_LAUNCH_TEST_CONFIG")))
		os.Stderr.WriteString("exec failed: " + err.Error() + "\n")
		os.Exit(99)
	}
	os.Exit(m.Run())
}

func testConfig() *native.Config {
	return &native.Config{Action: native.ActionExec, Image: "/i.sif", Args: []string{"ls", "-l"}, Cwd: "/w",
		Env: []string{"A=1"}}
}

func TestNativeConfigIsMagicThenEnvelope(t *testing.T) {
	b, err := NativeConfig("exec-1", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := bytes.CutPrefix(b, []byte(native.Magic))
	if !ok || len(native.Magic) != 9 {
		t.Fatalf("config %q does not start with the 9-byte magic", b)
	}
	env, err := envelope.Decode(rest)
	if err != nil {
		t.Fatalf("envelope after the magic: %v", err)
	}
	var cfg native.Config
	if err := envelope.DecodeConfig(env.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if env.Engine != native.EngineName || env.ID != "exec-1" || cfg.Image != "/i.sif" || strings.Join(cfg.Args, " ") != "ls -l" {
		t.Errorf("decoded %+v %+v", env, cfg)
	}
}

func TestNativeConfigTooLarge(t *testing.T) {
	cfg := testConfig()
	cfg.Args = []string{"x", strings.Repeat("a", envelope.MaxSize-100)}
	if _, err := NativeConfig("exec-1", cfg); !errors.Is(err, errdefs.ErrUsage) && !errors.Is(err, envelope.ErrInvalid) {
		t.Errorf("NativeConfig of a huge config = %v", err)
	}
}

func TestConfigMemfdHoldsTheBytesAtOffsetZeroSealed(t *testing.T) {
	data := []byte(native.Magic + `{"version":1}`)
	fd, err := configMemfd(data)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if off, err := unix.Seek(fd, 0, 1); err != nil || off != 0 {
		t.Errorf("offset %d, %v; want 0", off, err)
	}
	got := make([]byte, 2*len(data))
	n, err := unix.Read(fd, got)
	if err != nil || !bytes.Equal(got[:n], data) {
		t.Errorf("read %q, %v; want %q", got[:n], err, data)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	want := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if err != nil || seals&want != want {
		t.Errorf("seals %#x, %v; want %#x", seals, err, want)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 0); err == nil {
		t.Error("the memfd can still be written")
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("fd flags %#x, %v: want close-on-exec until Exec clears it", flags, err)
	}
}

// TestExecBecomesTheStarter runs Exec in a child process; the fake starter is a script that
// checks its arguments, prints its pid and copies its config fd to a file. The pid must be
// the child's own (an exec, not a fork), the config the bytes handed to Exec, and only the
// config fd may be open besides stdio.
func TestExecBecomesTheStarter(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "config")
	bin := filepath.Join(dir, "starter")
	script := "#!/bin/sh\n" +
		`[ "$1" = --config-fd ] && [ $# -eq 2 ] || { echo "bad args $*" >&2; exit 254; }` + "\n" +
		`echo "pid $$ fd $2"` + "\n" +
		`ls /proc/$$/fd | sort -n | tr '\n' ' '; echo` + "\n" +
		`cat <&"$2" > ` + got + "\n" +
		"exit 42\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	config := native.Magic + `{"version":1,"engine":"native"}`
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execHelperEnv+"=1", "KERR_LAUNCH_TEST_STARTER="+bin, "KERR_LAUNCH_TEST_CONFIG="+config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("child: %v, stdout %q, stderr %q; want the starter's exit 42", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	var pid, fd int
	if len(lines) < 2 {
		t.Fatalf("stdout %q", stdout.String())
	}
	if _, err := fmtSscan(lines[0], &pid, &fd); err != nil || pid != cmd.Process.Pid {
		t.Errorf("starter says %q; kerr's pid was %d (want the same process)", lines[0], cmd.Process.Pid)
	}
	// The shell itself opens fds for the pipeline (ls | sort): allow 0-2, the config fd and
	// those above it that ls's own /proc read shows; what must not be there is another fd
	// of kerr's below the config fd.
	for _, f := range strings.Fields(lines[1]) {
		n, _ := strconv.Atoi(f)
		if n > 2 && n < fd {
			t.Errorf("fd %d of kerr's was inherited by the starter (open: %s; config fd %d)", n, lines[1], fd)
		}
	}
	t.Logf("starter: %s; open fds: %s", lines[0], lines[1])
	b, err := os.ReadFile(got)
	if err != nil || string(b) != config {
		t.Errorf("starter read %q, %v; want %q", b, err, config)
	}
}

// fmtSscan parses "pid P fd N".
func fmtSscan(line string, pid, fd *int) (int, error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "pid" || f[2] != "fd" {
		return 0, errors.New("unexpected line")
	}
	var err1, err2 error
	*pid, err1 = strconv.Atoi(f[1])
	*fd, err2 = strconv.Atoi(f[3])
	return 2, errors.Join(err1, err2)
}

func TestExecOfAMissingStarterReturnsAnError(t *testing.T) {
	err := Exec(filepath.Join(t.TempDir(), "none"), []byte(native.Magic+"{}"))
	if err == nil || !strings.Contains(err.Error(), "exec the starter") {
		t.Errorf("Exec = %v", err)
	}
}

func TestStarterFor(t *testing.T) {
	dir := t.TempDir()
	plain, suid := filepath.Join(dir, "starter"), filepath.Join(dir, "starter-suid")
	missing := filepath.Join(dir, "none")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := starterFor(0, plain, missing); err != nil || got != plain {
		t.Errorf("root: %q, %v; want the plain starter", got, err)
	}
	if _, err := starterFor(0, missing, suid); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("root, no starter: %v; want not found", err)
	}
	if _, err := starterFor(1000, plain, missing); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("user, no starter-suid: %v; want not found naming it", err)
	}
	if err := os.WriteFile(suid, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := starterFor(1000, plain, suid); !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "not setuid root") ||
		!strings.Contains(err.Error(), "mode 0755") {
		t.Errorf("user, starter-suid without its bit: %v; want denied", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the setuid-root cases need root to make the file")
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	got, err := starterFor(1000, plain, suid)
	var fs unix.Statfs_t
	if serr := unix.Statfs(dir, &fs); serr == nil && fs.Flags&unix.ST_NOSUID != 0 {
		if !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "nosuid") {
			t.Errorf("user, starter-suid on a nosuid mount: %v; want denied", err)
		}
	} else if err != nil || got != suid {
		t.Errorf("user, setuid-root starter: %q, %v", got, err)
	}
	if err := os.Chown(suid, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil { // chown clears the setuid bit
		t.Fatal(err)
	}
	if _, err := starterFor(1000, plain, suid); !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "owner uid 1000") {
		t.Errorf("user, setuid starter not owned by root: %v; want denied", err)
	}
}
