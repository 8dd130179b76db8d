package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds one kerr command; fixtures are tiny, so a command that takes this
// long is stuck.
const DefaultTimeout = 2 * time.Minute

var sessionSeq atomic.Int64

// Session is one test's use of the harness: its own directories per profile (work dir,
// cache, TMPDIR) and the state that Done compares against to find leaks.
type Session struct {
	t    *testing.T
	h    *Harness
	base string
	snap snapshot

	mu       sync.Mutex
	profiles map[string]bool
	pgids    map[int]bool // process groups of the commands run
}

// Begin starts a session for t and records the state Done checks for leaks. Every test
// defers Done:
//
//	s := h.Begin(t)
//	defer s.Done()
func (h *Harness) Begin(t *testing.T) *Session {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	base := filepath.Join(h.Tmp, "work", fmt.Sprintf("%s-%d", name, sessionSeq.Add(1)))
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Session{t: t, h: h, base: base, profiles: map[string]bool{}, pgids: map[int]bool{}}
	s.snap = h.takeSnapshot()
	return s
}

// Base is the session's root directory (root-owned, 0755).
func (s *Session) Base() string { return s.base }

// profileDir creates base/<profile> with the work dir and TMPDIR, owned by the profile.
func (s *Session) profileDir(p Profile) string {
	s.t.Helper()
	dir := filepath.Join(s.base, p.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.profiles[p.Name] {
		return dir
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o755}, {filepath.Join(dir, "work"), 0o755}, {filepath.Join(dir, "tmp"), 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			s.t.Fatal(err)
		}
		if err := os.Chown(d.path, int(p.UID), int(p.GID)); err != nil {
			s.t.Fatal(err)
		}
	}
	s.profiles[p.Name] = true
	return dir
}

// Dir is the profile's working directory in this session (commands run there).
func (s *Session) Dir(p Profile) string { return filepath.Join(s.profileDir(p), "work") }

// CacheDir is the profile's KERR_CACHEDIR in this session; it does not exist until kerr
// creates it.
func (s *Session) CacheDir(p Profile) string { return filepath.Join(s.profileDir(p), "cache") }

// TmpDir is the profile's TMPDIR in this session; it must be empty when the session ends.
func (s *Session) TmpDir(p Profile) string { return filepath.Join(s.profileDir(p), "tmp") }

// Mkdir creates a fresh directory owned by p in the profile's session dir.
func (s *Session) Mkdir(p Profile, name string) string {
	s.t.Helper()
	d := filepath.Join(s.profileDir(p), name)
	if err := os.Mkdir(d, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chown(d, int(p.UID), int(p.GID)); err != nil {
		s.t.Fatal(err)
	}
	return d
}

// Opts change how one command runs.
type Opts struct {
	Dir     string        // working directory (default: s.Dir(p))
	Env     []string      // KEY=VALUE entries added to (or replacing in) the default env
	Unset   []string      // keys removed from the env (e.g. KERR_CACHEDIR, to use the default)
	Stdin   string        // fed to stdin
	Timeout time.Duration // default DefaultTimeout
}

// Result is what one kerr command did.
type Result struct {
	Cmd            string
	Stdout, Stderr string
	Code           int // exit status; -1 when killed by a signal or not started
	Err            error
}

func (r Result) String() string {
	return fmt.Sprintf("%s\nexit %d\n--- stdout\n%s--- stderr\n%s---", r.Cmd, r.Code, r.Stdout, r.Stderr)
}

// OK fails the test at once unless the command succeeded.
func (r Result) OK(t testing.TB) Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("want success:\n%s", r)
	}
	return r
}

// Fails checks kerr's error contract: the exit code, and the error as one line on stderr
// that starts with "kerr: " and comes last (progress lines may precede it unless the
// command ran with --quiet; FailsQuiet checks that case). It reports whether both hold (as
// test errors, not fatal, so that the caller still checks what was left on disk).
func (r Result) Fails(t testing.TB, code int) bool {
	t.Helper()
	return r.fails(t, code, false)
}

// FailsQuiet is Fails for a command run with --quiet: stderr must be the error line alone.
func (r Result) FailsQuiet(t testing.TB, code int) bool {
	t.Helper()
	return r.fails(t, code, true)
}

func (r Result) fails(t testing.TB, code int, quiet bool) bool {
	t.Helper()
	ok := true
	if r.Code != code {
		t.Errorf("want exit %d, got %d:\n%s", code, r.Code, r)
		ok = false
	}
	check := CheckErrorLine
	if quiet {
		check = CheckOnlyErrorLine
	}
	if err := check(r.Stderr); err != nil {
		t.Errorf("%v:\n%s", err, r)
		ok = false
	}
	return ok
}

// CheckErrorLine checks that the last line of stderr, and no other, starts with "kerr: ".
func CheckErrorLine(stderr string) error {
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "kerr: ") {
			n++
		}
	}
	switch {
	case strings.TrimSpace(stderr) == "":
		return errors.New("stderr is empty, want an error line starting with \"kerr: \"")
	case !strings.HasPrefix(last, "kerr: "):
		return errors.New("the last line of stderr does not start with \"kerr: \" (the error must be one line, and last)")
	case n > 1:
		return fmt.Errorf("stderr has %d lines starting with \"kerr: \", want one error line", n)
	}
	return nil
}

// CheckOnlyErrorLine checks that stderr is exactly one line starting with "kerr: ".
func CheckOnlyErrorLine(stderr string) error {
	s := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(s, "\n") {
		return fmt.Errorf("stderr has %d lines with --quiet, want only the error line", strings.Count(s, "\n")+1)
	}
	return CheckErrorLine(stderr)
}

// Run runs the installed kerr as profile p with args, in s.Dir(p).
func (s *Session) Run(p Profile, args ...string) Result {
	s.t.Helper()
	return s.RunWith(p, Opts{}, args...)
}

// Env is the environment a command of profile p gets by default: a plain PATH, the
// profile's HOME, and this session's KERR_CACHEDIR and TMPDIR.
func (s *Session) Env(p Profile) []string {
	user := "root"
	if !p.Privileged() {
		user = UserName
	}
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + p.Home,
		"USER=" + user,
		"LOGNAME=" + user,
		"LANG=C.UTF-8",
		"KERR_CACHEDIR=" + s.CacheDir(p),
		"TMPDIR=" + s.TmpDir(p),
	}
}

// RunWith runs the installed kerr as profile p with the options o.
func (s *Session) RunWith(p Profile, o Opts, args ...string) Result {
	s.t.Helper()
	return s.Exec(p, o, s.h.Kerr, args...)
}

// Exec runs any program as profile p with kerr's session environment.
func (s *Session) Exec(p Profile, o Opts, prog string, args ...string) Result {
	s.t.Helper()
	return s.StartProg(p, o, prog, args...).Wait()
}

// Running is a command started with Start, not yet waited for.
type Running struct {
	s              *Session
	cmd            *exec.Cmd
	ctx            context.Context
	cancel         context.CancelFunc
	timeout        time.Duration
	started        time.Time
	startErr       error
	res            Result
	stdout, stderr bytes.Buffer
}

// Start starts the installed kerr as profile p; Wait collects it.
func (s *Session) Start(p Profile, o Opts, args ...string) *Running {
	s.t.Helper()
	return s.StartProg(p, o, s.h.Kerr, args...)
}

// StartProg starts any program as profile p with kerr's session environment, in its own
// process group.
func (s *Session) StartProg(p Profile, o Opts, prog string, args ...string) *Running {
	s.t.Helper()
	dir := o.Dir
	if dir == "" {
		dir = s.Dir(p)
	}
	r := &Running{s: s, timeout: o.Timeout}
	if r.timeout == 0 {
		r.timeout = DefaultTimeout
	}
	r.ctx, r.cancel = context.WithTimeout(context.Background(), r.timeout)
	cmd := exec.CommandContext(r.ctx, prog, args...)
	cmd.Dir = dir
	cmd.Env = mergeEnv(s.Env(p), o.Env, o.Unset)
	cmd.Stdin = strings.NewReader(o.Stdin)
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !p.Privileged() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: []uint32{}}
	}
	// On timeout kill the whole process group: kerr's helpers (tar2sqfs, the starter) too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	r.cmd = cmd
	r.res.Cmd = fmt.Sprintf("[%s in %s] %s %s", p.Name, dir, filepath.Base(prog), shellJoin(args))
	r.started = time.Now()
	if r.startErr = cmd.Start(); r.startErr == nil {
		s.mu.Lock()
		s.pgids[cmd.Process.Pid] = true
		s.mu.Unlock()
	}
	return r
}

// Signal sends sig to the command's process (not its group, as a scheduler or `kill` would).
func (r *Running) Signal(sig syscall.Signal) error {
	if r.startErr != nil {
		return r.startErr
	}
	return r.cmd.Process.Signal(sig)
}

// Pid is the command's process id, which is also its process group id (0 if it did not
// start).
func (r *Running) Pid() int {
	if r.startErr != nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Wait waits for the command and returns what it did.
func (r *Running) Wait() Result {
	r.s.t.Helper()
	defer r.cancel()
	err := r.startErr
	if err == nil {
		err = r.cmd.Wait()
	}
	res := r.res
	res.Stdout, res.Stderr = r.stdout.String(), r.stderr.String()
	res.Err = err
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.Code = 0
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		res.Code = -1
	}
	if r.ctx.Err() != nil {
		res.Code = -1
		res.Err = fmt.Errorf("timed out after %s", r.timeout)
	}
	r.s.t.Logf("%s -> exit %d (%.1fs)", res.Cmd, res.Code, time.Since(r.started).Seconds())
	return res
}

func mergeEnv(base, add, unset []string) []string {
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	var out []string
	for _, kv := range base {
		k := key(kv)
		if slices.Contains(unset, k) || slices.ContainsFunc(add, func(a string) bool { return key(a) == k }) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, add...)
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// Done checks that the session leaked nothing: no new mounts under the temp dirs, no new
// loop devices on our files, no kerr/starter/squashfs-tools processes, no temp or partial
// files in the session's directories, an empty TMPDIR per profile, and nothing new in /tmp
// owned by the test account. Whatever leaked is reported and then cleaned up, so that one
// leak does not fail the tests after it. The session's directories are removed when the
// test passed.
func (s *Session) Done() {
	s.t.Helper()
	s.mu.Lock()
	pgids := s.pgids
	s.mu.Unlock()
	for _, leak := range s.h.leaksSince(s.snap, pgids) {
		s.t.Errorf("leak: %s", leak)
	}
	for _, f := range tempFiles(s.base) {
		s.t.Errorf("leak: temporary file left: %s", f)
	}
	for name := range s.profiles {
		tmp := filepath.Join(s.base, name, "tmp")
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			s.t.Errorf("leak: left in TMPDIR: %s", filepath.Join(tmp, e.Name()))
		}
	}
	if !s.t.Failed() && !s.h.keep {
		for _, m := range mountsUnder(s.base) {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if err := os.RemoveAll(s.base); err != nil {
			s.t.Logf("removing %s: %v", s.base, err)
		}
	}
}
