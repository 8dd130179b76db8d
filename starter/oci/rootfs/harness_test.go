package rootfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

// The integration tests run Setup for real, in a child: the test binary runs itself again
// (TestHelperSetup) in new mount, pid, UTS and IPC namespaces, builds a Config for a
// busybox rootfs the parent made, calls Setup, checks from inside the container and
// reports as JSON on stdout. The parent asserts on the report and checks that nothing was
// left mounted in its own mount namespace.
//
// The parent's test directory is a tmpfs made shared, so that a child that let its mounts
// propagate would leak them into the parent's mount table, where the leak check sees them.

const (
	caseEnv   = "KERR_ROOTFS_TEST_CASE"
	envEnv    = "KERR_ROOTFS_TEST_ENV"
	resultTag = "KERR-ROOTFS-RESULT "
)

// env is what parent and child share about one run.
type env struct {
	Dir    string            // the shared tmpfs of the test
	Rootfs string            // Dir/rootfs
	Vars   map[string]string // case-specific values from the parent
}

// report is the child's answer.
type report struct {
	SetupErr string
	Failures []string
}

func (r *report) errorf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// tcase is one integration case; parent and child find it by name in cases.
type tcase struct {
	// prepare runs in the parent, after the rootfs is made.
	prepare func(t *testing.T, e *env)
	// before runs in the child before Setup (in its new namespaces).
	before func(e *env, r *report)
	// config builds the child's Config.
	config func(e *env) Config
	// check runs in the child after Setup succeeded.
	check func(e *env, r *report)
	// wantErr: Setup must fail with an error containing it.
	wantErr string
	// flags are added to the child's clone flags; userns maps root to root in a new user
	// namespace.
	flags  uintptr
	userns bool
	// after runs in the parent after the child.
	after func(t *testing.T, e *env, r *report)
}

var cases = map[string]*tcase{}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: Setup mounts for real")
	}
}

// TestHelperSetup is the child side; it does nothing when run as a test.
func TestHelperSetup(t *testing.T) {
	name := os.Getenv(caseEnv)
	if name == "" {
		t.Skip("the child of the integration tests; they run it in new namespaces")
	}
	runtime.LockOSThread()
	var e env
	r := &report{}
	c := cases[name]
	switch {
	case c == nil:
		r.errorf("no case %q", name)
	case json.Unmarshal([]byte(os.Getenv(envEnv)), &e) != nil:
		r.errorf("bad %s", envEnv)
	default:
		runChild(c, &e, r)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(os.Stdout, "\n%s%s\n", resultTag, b)
	os.Exit(0)
}

func runChild(c *tcase, e *env, r *report) {
	if c.before != nil {
		c.before(e, r)
		if len(r.Failures) > 0 {
			return
		}
	}
	err := Setup(c.config(e))
	if err != nil {
		r.SetupErr = err.Error()
		return
	}
	if c.check != nil {
		c.check(e, r)
	}
}

// run runs case name: rootfs, prepare, child, report, leak check.
func run(t *testing.T, name string) *report {
	t.Helper()
	needRoot(t)
	c := cases[name]
	if c == nil {
		t.Fatalf("no case %q", name)
	}
	e := &env{Dir: sharedTmpfs(t), Vars: map[string]string{}}
	e.Rootfs = filepath.Join(e.Dir, "rootfs")
	makeRootfs(t, e.Rootfs)
	if c.prepare != nil {
		c.prepare(t, e)
	}
	before := hostMounts(t, e.Dir)
	r := runHelper(t, name, c, e)
	if after := hostMounts(t, e.Dir); !equal(before, after) {
		t.Errorf("mounts leaked into the parent's mount namespace:\nbefore %q\nafter  %q", before, after)
	}
	switch {
	case c.wantErr == "" && r.SetupErr != "":
		t.Errorf("Setup: %s", r.SetupErr)
	case c.wantErr != "" && !strings.Contains(r.SetupErr, c.wantErr):
		t.Errorf("Setup error %q, want one containing %q", r.SetupErr, c.wantErr)
	}
	for _, f := range r.Failures {
		t.Error(f)
	}
	if c.after != nil {
		c.after(t, e, r)
	}
	return r
}

func runHelper(t *testing.T, name string, c *tcase, e *env) *report {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSetup$", "-test.count=1")
	cmd.Env = append(os.Environ(), caseEnv+"="+name, envEnv+"="+string(b))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | c.flags,
		Pdeathsig:  syscall.SIGKILL,
	}
	if c.userns {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the child: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the child hung; stderr:\n%s", stderr.String())
	}
	i := bytes.LastIndex(out.Bytes(), []byte(resultTag))
	if i < 0 {
		t.Fatalf("the child (%v) gave no report; stdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	line, _, _ := bytes.Cut(out.Bytes()[i+len(resultTag):], []byte("\n"))
	var r report
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("the child's report %q: %v", line, err)
	}
	return &r
}

// sharedTmpfs mounts a tmpfs on a new test directory and makes it shared; it is detached
// when the test ends.
func sharedTmpfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "t")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// nosuid and nodev, so that tests see that binds keep the flags of their source.
	if err := unix.Mount("kerr-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", dir, err)
	}
	return dir
}

// hostMounts lists the parent's mounts under dir and at /etc: what a leak would add.
func hostMounts(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") ||
			m.Mountpoint == "/etc" || strings.HasPrefix(m.Mountpoint, "/etc/") {
			out = append(out, m.Mountpoint+" "+m.FSType)
		}
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// busyboxApplets are linked to /bin/busybox in the test rootfs.
var busyboxApplets = []string{"sh", "ls", "cat", "stat", "mount", "echo", "touch", "readlink", "test"}

// makeRootfs makes a minimal busybox rootfs at dir.
func makeRootfs(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "mnt", "tmp", "ro-dir"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil { // os.Chmod drops a raw sticky bit
		t.Fatal(err)
	}
	src, err := os.Open("/bin/busybox")
	if err != nil {
		t.Fatalf("the tests need busybox-static at /bin/busybox: %v", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "bin/busybox"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "etc/marker"), "image")
	writeFile(t, filepath.Join(dir, "ro-dir/file"), "ro")
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// spec is a spec for the test rootfs with the given mounts.
func spec(e *env, mounts ...specs.Mount) *specs.Spec {
	return &specs.Spec{
		Root:   &specs.Root{Path: e.Rootfs},
		Mounts: mounts,
		Linux:  &specs.Linux{},
	}
}

// Mounts as runc's default spec has them.
var (
	procMount   = specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	devMount    = specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}}
	devptsMount = specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}
	shmMount    = specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}
	mqueueMount = specs.Mount{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}}
	sysMount    = specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}
	cgroupMount = specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}}
)

// Checks for the child.

func statOf(r *report, p string, follow bool) (unix.Stat_t, bool) {
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(p, &st)
	} else {
		err = unix.Lstat(p, &st)
	}
	if err != nil {
		r.errorf("stat %s: %v", p, err)
		return st, false
	}
	return st, true
}

func checkCharDev(r *report, p string, major, minor, perm uint32) {
	st, ok := statOf(r, p, false)
	if !ok {
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != major || unix.Minor(st.Rdev) != minor {
		r.errorf("%s: mode %#o rdev %d:%d, want char %d:%d", p, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), major, minor)
	}
	if perm != 0 && st.Mode&0o7777 != perm {
		r.errorf("%s: permissions %#o, want %#o", p, st.Mode&0o7777, perm)
	}
}

func checkMagic(r *report, p string, magic int64) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		r.errorf("statfs %s: %v", p, err)
		return
	}
	if sfs.Type != magic {
		r.errorf("%s: filesystem magic %#x, want %#x", p, sfs.Type, magic)
	}
}

// checkFlags checks that p's mount has the statfs flags (ST_*) want.
func checkFlags(r *report, p string, want int64) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		r.errorf("statfs %s: %v", p, err)
		return
	}
	if sfs.Flags&want != want {
		r.errorf("%s: mount flags %#x lack %#x", p, sfs.Flags, want)
	}
}

func checkReadonly(r *report, p string, want bool) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		r.errorf("statfs %s: %v", p, err)
		return
	}
	if got := sfs.Flags&unix.ST_RDONLY != 0; got != want {
		r.errorf("%s: read-only %v, want %v", p, got, want)
	}
}

// checkWrite creates p and checks the outcome: nil, or the errno want.
func checkWrite(r *report, p string, want error) {
	err := os.WriteFile(p, []byte("x"), 0o644)
	switch {
	case want == nil && err != nil:
		r.errorf("write %s: %v", p, err)
	case want != nil && !errors.Is(err, want):
		r.errorf("write %s: %v, want %v", p, err, want)
	}
}

func checkContent(r *report, p, want string) {
	b, err := os.ReadFile(p)
	if err != nil {
		r.errorf("read %s: %v", p, err)
		return
	}
	if string(b) != want {
		r.errorf("%s holds %q, want %q", p, b, want)
	}
}

func checkLink(r *report, p, want string) {
	got, err := os.Readlink(p)
	if err != nil || got != want {
		r.errorf("readlink %s = %q, %v; want %q", p, got, err, want)
	}
}

func checkMissing(r *report, p string) {
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		r.errorf("%s exists (%v), want it missing", p, err)
	}
}

// sh runs a busybox shell command in the container and returns its output.
func sh(r *report, script string) string {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.errorf("sh -c %q: %v: %s", script, err, out)
	}
	return string(out)
}

// rootMountLine is the line of / in the container's mountinfo (needs /proc).
func rootMountLine(r *report) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		r.errorf("read mountinfo: %v", err)
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			return l
		}
	}
	r.errorf("no / in mountinfo:\n%s", b)
	return ""
}
