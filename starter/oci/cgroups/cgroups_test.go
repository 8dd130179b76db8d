package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocg "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

func ptr[T any](v T) *T { return &v }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test creates real cgroups")
	}
}

var testSeq atomic.Int64

// testPath returns a cgroup path no other test (or test binary) uses, and removes it from
// every hierarchy when the test ends, killing what is left in it, without trusting the
// Manager under test.
func testPath(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("/kerr-test-%d-%d", os.Getpid(), testSeq.Add(1))
	t.Cleanup(func() { scrub(t, p) })
	return p
}

// hierarchyRoots lists the mountpoints of every cgroup hierarchy.
func hierarchyRoots(t *testing.T) []string {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	var roots []string
	for _, m := range ms {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			roots = append(roots, m.Mountpoint)
		}
	}
	return roots
}

func scrub(t *testing.T, p string) {
	for _, root := range hierarchyRoots(t) {
		dir := filepath.Join(root, p)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
		_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
		var dirs []string
		_ = filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, q)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		deadline := time.Now().Add(3 * time.Second)
		for _, d := range dirs {
			for {
				pids, _ := ocg.GetPids(d)
				for _, pid := range pids {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
				err := unix.Rmdir(d)
				if err == nil || errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
					if err != nil && !errors.Is(err, unix.ENOENT) {
						t.Errorf("cleanup: rmdir %s: %v", d, err)
					}
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// start runs a command with stdin from a pipe it returns, killed and reaped when the test
// ends.
func start(t *testing.T, stdout io.Writer, name string, args ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(name, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, in
}

// cgFile reads file in m's directory for controller (v1) or its v2 directory.
func cgFile(t *testing.T, m *Manager, controller, file string) string {
	t.Helper()
	dir := m.Paths()[controller]
	if m.v2 {
		dir = m.Paths()[unifiedKey]
	}
	if dir == "" {
		t.Fatalf("no %s directory in %v", controller, m.Paths())
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func hasV2Controller(c string) bool {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	return err == nil && slices.Contains(strings.Fields(string(b)), c)
}

func waitEmpty(t *testing.T, m *Manager, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pids, err := m.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still in the cgroup after %v", pids, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPath(t *testing.T) {
	for _, c := range []struct {
		cgroupsPath, id, want, err string
	}{
		{"", "c1", "/kerr/c1", ""},
		{"", "a.b_c+d-1", "/kerr/a.b_c+d-1", ""},
		{"/my/runtime/c1", "c1", "/my/runtime/c1", ""},
		{"/my//runtime/./c1/", "x", "/my/runtime/c1", ""},
		{"group/c1", "c1", "/kerr/group/c1", ""},
		{"c1", "ignored", "/kerr/c1", ""},
		{"", "", "", "cannot name a cgroup"},
		{"", "..", "", "cannot name a cgroup"},
		{"", "a/b", "", "cannot name a cgroup"},
		{"", "a b", "", "cannot name a cgroup"},
		{"/a/../b", "c1", "", `".." is not allowed`},
		{"../escape", "c1", "", `".." is not allowed`},
		{"a/..", "c1", "", `".." is not allowed`},
		{"system.slice:kerr:c1", "c1", "", "needs the systemd cgroup driver"},
		{"/", "c1", "", "root cgroup"},
		{"//", "c1", "", "root cgroup"},
		{".", "c1", "", "kerr's parent"},
		{"/kerr", "c1", "", "kerr's parent"},
		{"/a\x00b", "c1", "", "NUL"},
	} {
		got, err := Path(DriverCgroupfs, c.cgroupsPath, c.id)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("Path(%q, %q) = %q, %v; want %q", c.cgroupsPath, c.id, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Path(%q, %q) = %q, %v; want an error with %q", c.cgroupsPath, c.id, got, err, c.err)
		case err != nil && !strings.HasPrefix(err.Error(), "cgroups: "):
			t.Errorf("Path(%q, %q): error %q lacks the package prefix", c.cgroupsPath, c.id, err)
		}
	}
}

// The systemd driver's "slice:prefix:name", as runc takes it: the slice defaults to
// system.slice, the unit is prefix-name.scope, and what systemd would refuse is refused
// here first, in one line naming the form.
func TestPathSystemd(t *testing.T) {
	long := strings.Repeat("x", 250)
	for _, c := range []struct {
		cgroupsPath, id, want, err string
	}{
		{"", "c1", "system.slice:kerr:c1", ""},
		{"system.slice:kerr:c1", "ignored", "system.slice:kerr:c1", ""},
		{":cri-containerd:abc", "abc", "system.slice:cri-containerd:abc", ""},
		{"kubepods-besteffort-pod1.slice:cri-containerd:0123abc", "x", "kubepods-besteffort-pod1.slice:cri-containerd:0123abc", ""},
		{"-.slice:kerr:c1", "c1", "-.slice:kerr:c1", ""},
		{"", "a/b", "", "cannot name a cgroup"},
		{"/kerr/c1", "c1", "", "not of the form slice:prefix:name"},
		{"a:b", "c1", "", "not of the form slice:prefix:name"},
		{"a.slice:b:c:d", "c1", "", "not of the form slice:prefix:name"},
		{"system:kerr:c1", "c1", "", "is not a slice name"},
		{"a--b.slice:kerr:c1", "c1", "", "is not a slice name"},
		{"../x.slice:kerr:c1", "c1", "", "does not allow"},
		{"system.slice::c1", "c1", "", "must not be empty"},
		{"system.slice:kerr:", "c1", "", "must not be empty"},
		{"system.slice:kerr:sub.slice", "c1", "", "the name is a slice"},
		{"system.slice:kerr:a/b", "c1", "", "does not allow"},
		{"system.slice:ke rr:c1", "c1", "", "does not allow"},
		{"system.slice:kerr:" + long, "c1", "", "longer than systemd's 255"},
	} {
		got, err := Path(DriverSystemd, c.cgroupsPath, c.id)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("Path(systemd, %q, %q) = %q, %v; want %q", c.cgroupsPath, c.id, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Path(systemd, %q, %q) = %q, %v; want an error with %q", c.cgroupsPath, c.id, got, err, c.err)
		case err != nil && (!strings.HasPrefix(err.Error(), "cgroups: ") || strings.Contains(err.Error(), "\n")):
			t.Errorf("Path(systemd, %q, %q): error %q is not one line with the package prefix", c.cgroupsPath, c.id, err)
		}
	}
	if _, err := Path("cgroupfs2", "", "c1"); err == nil {
		t.Error("Path with an unknown driver succeeded")
	}
	// A systemd path read back from a state file is checked again.
	if _, err := Load(DriverSystemd, "/kerr/c1"); err == nil {
		t.Error("Load(systemd, a cgroupfs path) succeeded")
	}
}

func TestNewAndLoadRefuseBadPaths(t *testing.T) {
	for _, p := range []string{"", "relative", "/a/../b", "/a/b/", "/", "/kerr", "/a:b:c"} {
		if _, err := New(DriverCgroupfs, p, nil, nil); err == nil {
			t.Errorf("New(%q) succeeded", p)
		}
		if _, err := Load(DriverCgroupfs, p); err == nil {
			t.Errorf("Load(%q) succeeded", p)
		}
	}
}

func TestApplySetsLimitsAndDestroyRemovesAll(t *testing.T) {
	needRoot(t)
	p := testPath(t)
	res := &specs.LinuxResources{
		Pids:   &specs.LinuxPids{Limit: ptr(int64(10))},
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Reservation: ptr(int64(32 << 20))},
	}
	memsw := !ocg.IsCgroup2UnifiedMode() && exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	if memsw {
		res.Memory.Swap = ptr(int64(128 << 20))
	}
	cpu := !ocg.IsCgroup2UnifiedMode() || hasV2Controller("cpu")
	if cpu {
		res.CPU = &specs.LinuxCPU{Quota: ptr(int64(50000)), Period: ptr(uint64(100000))}
	}
	m, err := New(DriverCgroupfs, p, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range m.Paths() {
		if exists(dir) {
			t.Fatalf("New created %s", dir)
		}
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for k, dir := range m.Paths() {
		procs, err := ocg.GetPids(dir)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !slices.Equal(procs, []int{cmd.Process.Pid}) {
			t.Errorf("%s: cgroup.procs %v, want [%d]", dir, procs, cmd.Process.Pid)
		}
	}
	if got := cgFile(t, m, "pids", "pids.max"); got != "10" {
		t.Errorf("pids.max = %q, want 10", got)
	}
	if m.v2 {
		if got := cgFile(t, m, "memory", "memory.max"); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.max = %q", got)
		}
		if got := cgFile(t, m, "memory", "memory.low"); got != strconv.Itoa(32<<20) {
			t.Errorf("memory.low = %q", got)
		}
		if cpu {
			if got := cgFile(t, m, "cpu", "cpu.max"); got != "50000 100000" {
				t.Errorf("cpu.max = %q", got)
			}
		}
	} else {
		if got := cgFile(t, m, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.limit_in_bytes = %q", got)
		}
		if got := cgFile(t, m, "memory", "memory.soft_limit_in_bytes"); got != strconv.Itoa(32<<20) {
			t.Errorf("memory.soft_limit_in_bytes = %q", got)
		}
		if memsw {
			if got := cgFile(t, m, "memory", "memory.memsw.limit_in_bytes"); got != strconv.Itoa(128<<20) {
				t.Errorf("memory.memsw.limit_in_bytes = %q", got)
			}
		}
		if got := cgFile(t, m, "cpu", "cpu.cfs_quota_us"); got != "50000" {
			t.Errorf("cpu.cfs_quota_us = %q", got)
		}
	}

	// Update: a new pids limit, then 0, which the spec says is a limit of its own.
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(20))}}); err != nil {
		t.Fatal(err)
	}
	if got := cgFile(t, m, "pids", "pids.max"); got != "20" {
		t.Errorf("after Set: pids.max = %q, want 20", got)
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(0))}}); err != nil {
		t.Fatal(err)
	}
	if got := cgFile(t, m, "pids", "pids.max"); got != "0" {
		t.Errorf("after Set(0): pids.max = %q, want 0", got)
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}}); err != nil {
		t.Fatal(err)
	}
	if got := cgFile(t, m, "pids", "pids.max"); got != "max" {
		t.Errorf("after Set(-1): pids.max = %q, want max", got)
	}

	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PidsStats.Current != 1 {
		t.Errorf("Stats: pids.current = %d, want 1", st.PidsStats.Current)
	}

	// Destroy kills nothing: with the process inside, it fails and the directories stay.
	if err := m.Destroy(); !errors.Is(err, unix.EBUSY) {
		t.Errorf("Destroy with a process in the cgroup: %v, want EBUSY", err)
	}
	for _, dir := range m.Paths() {
		if !exists(dir) {
			t.Errorf("Destroy removed %s of a busy cgroup", dir)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range m.Paths() {
		if exists(dir) {
			t.Errorf("%s still exists after Destroy", dir)
		}
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestFreezeThawFrozen(t *testing.T) {
	needRoot(t)
	m, err := New(DriverCgroupfs, testPath(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The shell answers each line it reads, which it can only do while thawed.
	out := newLineReader(t)
	cmd, in := start(t, out, "sh", "-c", `while read x; do echo "got $x"; done`)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.Frozen(); err != nil || frozen {
		t.Fatalf("Frozen() = %v, %v before Freeze", frozen, err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.Frozen(); err != nil || !frozen {
		t.Fatalf("Frozen() = %v, %v after Freeze", frozen, err)
	}
	fmt.Fprintln(in, "1")
	if l, ok := out.next(300 * time.Millisecond); ok {
		t.Fatalf("a frozen process answered %q", l)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.Frozen(); err != nil || frozen {
		t.Fatalf("Frozen() = %v, %v after Thaw", frozen, err)
	}
	if l, ok := out.next(5 * time.Second); !ok || l != "got 1" {
		t.Fatalf("after Thaw the process answered %q, %v", l, ok)
	}
}

// lineReader collects a process's output lines.
type lineReader struct {
	w     *io.PipeWriter
	lines chan string
}

func newLineReader(t *testing.T) *lineReader {
	r, w := io.Pipe()
	lr := &lineReader{w: w, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { w.Close() })
	return lr
}

func (lr *lineReader) Write(b []byte) (int, error) { return lr.w.Write(b) }

func (lr *lineReader) next(timeout time.Duration) (string, bool) {
	select {
	case l := <-lr.lines:
		return l, true
	case <-time.After(timeout):
		return "", false
	}
}

func TestPidsAndSignalKillAll(t *testing.T) {
	needRoot(t)
	// The pids limit keeps the forking below in bounds.
	m, err := New(DriverCgroupfs, testPath(t), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(200))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The shell forks only once it is in the cgroup (after reading a line), so its
	// children are there too; four of them keep forking as fast as they can, which would
	// leave survivors if Signal listed and killed without freezing.
	cmd, in := start(t, nil, "sh", "-c", `read x; sleep 30 & for i in 1 2 3 4; do (while :; do sleep 30 & done) 2>/dev/null & done; wait`)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "go")
	deadline := time.Now().Add(5 * time.Second)
	var pids []int
	for {
		if pids, err = m.Pids(); err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(pids) < 6 || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Pids() = %v, want the shell %d and at least 5 descendants", pids, cmd.Process.Pid)
	}
	if err := m.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the shell ended with %v, want killed", err)
	}
	waitEmpty(t, m, 5*time.Second)
	if frozen, err := m.Frozen(); err != nil || frozen {
		t.Errorf("after Signal(SIGKILL) Frozen() = %v, %v", frozen, err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestSignalOther(t *testing.T) {
	needRoot(t)
	m, err := New(DriverCgroupfs, testPath(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := m.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("sleep ended with %v, want terminated", err)
	}
	waitEmpty(t, m, 5*time.Second)
	// An empty cgroup: nothing to signal, no error.
	if err := m.Signal(unix.SIGKILL); err != nil {
		t.Errorf("Signal on an empty cgroup: %v", err)
	}
}

func TestLoad(t *testing.T) {
	needRoot(t)
	p := testPath(t)
	if _, err := Load(DriverCgroupfs, p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing cgroup: %v, want fs.ErrNotExist", err)
	}
	m, err := New(DriverCgroupfs, p, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(7))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, nil, "sleep", "30")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}

	l, err := Load(DriverCgroupfs, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Paths(), m.Paths(); !mapsEqual(got, want) {
		t.Errorf("Load paths %v, want %v", got, want)
	}
	if pids, err := l.Pids(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("loaded Pids() = %v, %v", pids, err)
	}
	if got := cgFile(t, l, "pids", "pids.max"); got != "7" {
		t.Errorf("pids.max = %q", got)
	}
	if err := l.Freeze(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := m.Frozen(); err != nil || !frozen {
		t.Errorf("frozen through Load, the first manager says %v, %v", frozen, err)
	}
	if err := l.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitEmpty(t, l, 5*time.Second)
	if err := l.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(DriverCgroupfs, p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load after Destroy: %v", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestApplyFailureRemovesWhatItMade(t *testing.T) {
	needRoot(t)
	p := testPath(t)
	// A parent that does not exist yet, to see that Apply removes it too.
	child := p + "/inner"
	m, err := New(DriverCgroupfs, child, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(5))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No process has a pid as high as pid_max, so Apply creates the directories, sets the
	// limit and then fails to find the process.
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err = m.Apply(pid); err == nil {
		t.Fatal("Apply of a process that cannot exist succeeded")
	}
	if !strings.HasPrefix(err.Error(), "cgroups: apply "+child) {
		t.Errorf("error %q", err)
	}
	for _, root := range hierarchyRoots(t) {
		if d := filepath.Join(root, p); exists(d) {
			t.Errorf("%s left behind", d)
		}
	}
}

func TestApplyRefusesBusyCgroup(t *testing.T) {
	needRoot(t)
	p := testPath(t)
	a, err := New(DriverCgroupfs, p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := start(t, nil, "sleep", "30")
	if err := a.Apply(first.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := New(DriverCgroupfs, p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := start(t, nil, "sleep", "30")
	err = b.Apply(second.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), "already holds 1 process") {
		t.Fatalf("Apply into a busy cgroup: %v", err)
	}
	// The refusal removed nothing of the first container's.
	if pids, err := a.Pids(); err != nil || !slices.Equal(pids, []int{first.Process.Pid}) {
		t.Errorf("first container's Pids() = %v, %v", pids, err)
	}
	// An existing empty cgroup is fine to reuse.
	_ = first.Process.Kill()
	_ = first.Wait()
	waitEmpty(t, a, 5*time.Second)
	if err := b.Apply(second.Process.Pid); err != nil {
		t.Errorf("Apply into an existing empty cgroup: %v", err)
	}
}

func TestDevicesApplied(t *testing.T) {
	needRoot(t)
	rules := append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, DefaultDeviceRules()...)
	rules = append(rules, specs.LinuxDeviceCgroup{Allow: false, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(5)), Access: "rw"})
	m, err := New(DriverCgroupfs, testPath(t), &specs.LinuxResources{Devices: rules}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := newLineReader(t)
	// /dev/null is allowed, reading /dev/zero (1:5) denied by the last rule (which cannot
	// take away "m": "c *:* m" allows mknod of every character device); the shell opens both
	// only after joining.
	cmd, in := start(t, out, "sh", "-c", `read x
if (: >/dev/null) 2>/dev/null; then echo null-ok; else echo null-denied; fi
if (: </dev/zero) 2>/dev/null; then echo zero-ok; else echo zero-denied; fi`)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if !m.v2 {
		want := []string{"b *:* m", "c *:* m", "c 136:* rwm", "c 1:3 rwm", "c 1:5 m", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm"}
		got := strings.Split(cgFile(t, m, "devices", "devices.list"), "\n")
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("devices.list = %q, want %q", got, want)
		}
	}
	fmt.Fprintln(in, "go")
	for _, want := range []string{"null-ok", "zero-denied"} {
		if l, ok := out.next(5 * time.Second); !ok || l != want {
			t.Errorf("got %q, %v; want %q", l, ok, want)
		}
	}
}

func TestDefaultDeviceRules(t *testing.T) {
	r := DefaultDeviceRules()
	if len(r) != 10 {
		t.Fatalf("%d rules", len(r))
	}
	s := newDevState()
	for i, d := range r {
		if !d.Allow || d.Type == "" || d.Type == "a" {
			t.Errorf("rule %d %+v", i, d)
		}
		if err := s.apply(i, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkValues(&specs.LinuxResources{Devices: r}); err != nil {
		t.Error(err)
	}
	want := []string{"b *:* m", "c *:* m", "c 136:* rwm", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm"}
	if got := s.lines(); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	// A new slice each time.
	r[0].Access = "x"
	if DefaultDeviceRules()[0].Access != "m" {
		t.Error("DefaultDeviceRules shares its slice")
	}
}

// TestJoinFailureMovesBack makes joining fail partway (v1: a cpuset with no CPUs refuses
// tasks) and checks that the process is back in every cgroup it was in before.
func TestJoinFailureMovesBack(t *testing.T) {
	needRoot(t)
	if ocg.IsCgroup2UnifiedMode() {
		t.Skip("the partial-join trick needs the v1 cpuset controller; v2 joins one directory")
	}
	m, err := New(DriverCgroupfs, testPath(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpuset := m.Paths()["cpuset"]
	if cpuset == "" {
		t.Skip("no v1 cpuset controller")
	}
	cmd, _ := start(t, nil, "sleep", "30")
	procCgroup := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup"
	before, err := os.ReadFile(procCgroup)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.lib.Apply(-1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cpuset, "cpuset.cpus"), []byte("\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.join(cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), cpuset) {
		t.Fatalf("join with an empty cpuset: %v", err)
	}
	after, err := os.ReadFile(procCgroup)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("after a failed join the process is in\n%s\nwas in\n%s", after, before)
	}
	for k, dir := range m.Paths() {
		if pids, err := ocg.GetPids(dir); err != nil || len(pids) != 0 {
			t.Errorf("%s: %v, %v left in the cgroup", k, pids, err)
		}
	}
}
