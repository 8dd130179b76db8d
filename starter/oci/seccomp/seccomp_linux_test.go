//go:build linux && cgo

package seccomp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// --- Compile, without loading anything ---

func TestTablesMatchValidate(t *testing.T) {
	for a := range knownArches {
		if _, ok := scmpArches[a]; !ok {
			t.Errorf("%s: in knownArches, not in scmpArches", a)
		}
	}
	for o := range knownOperators {
		if _, ok := scmpOperators[o]; !ok {
			t.Errorf("%s: in knownOperators, not in scmpOperators", o)
		}
	}
	for f := range knownFlags {
		if _, ok := kernelFlags[f]; !ok {
			t.Errorf("%s: in knownFlags, not in kernelFlags", f)
		}
	}
	if len(scmpArches) != len(knownArches) || len(scmpOperators) != len(knownOperators) || len(kernelFlags) != len(knownFlags) {
		t.Error("a libseccomp table has entries Validate does not know")
	}
}

func mustCompile(t *testing.T, s *specs.LinuxSeccomp) *Filter {
	t.Helper()
	f, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.prog) == 0 {
		t.Fatal("Compile returned an empty program")
	}
	return f
}

func TestCompileRecordsSkippedNames(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getcwd", "kerr_no_such_call", "kerr_no_such_call"}, Action: specs.ActErrno},
			{Names: []string{"kerr_other_call", "kerr_no_such_call"}, Action: specs.ActLog},
			// Not added (same as the default), so not looked up either.
			{Names: []string{"kerr_redundant_call"}, Action: specs.ActAllow},
		},
	}
	f := mustCompile(t, s)
	if want := []string{"kerr_no_such_call", "kerr_other_call"}; !reflect.DeepEqual(f.Skipped, want) {
		t.Fatalf("Skipped = %q, want %q", f.Skipped, want)
	}
	// A name libseccomp knows for another architecture only is not skipped: it resolves to
	// a pseudo number and matters once that architecture is in the filter.
	if runtime.GOARCH == "amd64" {
		s.Syscalls = []specs.LinuxSyscall{{Names: []string{"socketcall", "arm_fadvise64_64"}, Action: specs.ActErrno}}
		s.Architectures = []specs.Arch{specs.ArchX86, specs.ArchARM}
		if f := mustCompile(t, s); len(f.Skipped) != 0 {
			t.Fatalf("Skipped = %q, want none", f.Skipped)
		}
	}
}

// TestCompileSameProgram: profiles that must mean the same filter compile to the same program.
func TestCompileSameProgram(t *testing.T) {
	base := func(def specs.LinuxSeccompAction, errno *uint, rules ...specs.LinuxSyscall) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: def, DefaultErrnoRet: errno, Syscalls: append([]specs.LinuxSyscall{
			{Names: []string{"getcwd", "getpid"}, Action: specs.ActAllow},
		}, rules...)}
	}
	prog := func(s *specs.LinuxSeccomp) []unix.SockFilter { return mustCompile(t, s).prog }
	same := func(name string, a, b *specs.LinuxSeccomp, want bool) {
		t.Helper()
		if got := reflect.DeepEqual(prog(a), prog(b)); got != want {
			t.Errorf("%s: same program = %v, want %v", name, got, want)
		}
	}
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	// A rule equal to the default action is dropped (libseccomp would refuse it).
	same("redundant rule", base(specs.ActErrno, nil),
		base(specs.ActErrno, nil, specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActErrno}), true)
	same("redundant rule, errno spelt out", base(specs.ActErrno, nil),
		base(specs.ActErrno, nil, specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eperm}), true)
	same("rule with another errno", base(specs.ActErrno, nil),
		base(specs.ActErrno, nil, specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: &enosys}), false)
	same("defaultErrnoRet defaults to EPERM", base(specs.ActErrno, nil), base(specs.ActErrno, &eperm), true)
	same("defaultErrnoRet is used", base(specs.ActErrno, nil), base(specs.ActErrno, &enosys), false)
	same("SCMP_ACT_KILL is KILL_THREAD", base(specs.ActKill, nil), base(specs.ActKillThread, nil), true)
	same("KILL_PROCESS is not KILL_THREAD", base(specs.ActKillProcess, nil), base(specs.ActKillThread, nil), false)
}

func TestConditionSets(t *testing.T) {
	arg := func(i uint, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: i, Value: v, Op: specs.OpEqualTo}
	}
	cond := func(i uint, v uint64) libseccomp.ScmpCondition {
		return libseccomp.ScmpCondition{Argument: i, Op: libseccomp.CompareEqual, Operand1: v}
	}
	got, err := conditionSets([]specs.LinuxSeccompArg{arg(2, 7), arg(0, 1), arg(0, 2), arg(2, 8), arg(4, 9)})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]libseccomp.ScmpCondition{
		{cond(0, 1), cond(2, 7), cond(4, 9)},
		{cond(0, 1), cond(2, 8), cond(4, 9)},
		{cond(0, 2), cond(2, 7), cond(4, 9)},
		{cond(0, 2), cond(2, 8), cond(4, 9)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("conditionSets:\n got %v\nwant %v", got, want)
	}
	if got, _ := conditionSets(nil); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("conditionSets(nil) = %v, want one unconditional rule", got)
	}
}

func TestCompileRefuses(t *testing.T) {
	if _, err := Compile(&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_FOO"}); err == nil ||
		err.Error() != `seccomp: defaultAction: unknown action "SCMP_ACT_FOO"` {
		t.Errorf("Compile did not validate: %v", err)
	}
	if err := Load(&specs.LinuxSeccomp{DefaultAction: specs.ActNotify}); !errors.Is(err, ErrNotifyUnsupported) {
		t.Errorf("Load with NOTIFY: %v", err)
	}
	if err := (&Filter{}).Load(); err == nil {
		t.Error("the zero Filter loaded")
	}
	if err := (*Filter)(nil).Load(); err == nil {
		t.Error("a nil Filter loaded")
	}
	// Architectures newer than the libseccomp in use fail clearly.
	if maj, minor, _ := libseccomp.GetLibraryVersion(); maj == 2 && minor < 6 {
		_, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86, specs.ArchM68K}})
		if err == nil || !strings.HasPrefix(err.Error(), "seccomp: architectures[1]: SCMP_ARCH_M68K with libseccomp 2.") {
			t.Errorf("SCMP_ARCH_M68K with libseccomp 2.%d: %v", minor, err)
		}
	}
}

func kerrProfile(t *testing.T) *specs.LinuxSeccomp {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "etc", "kerr", "seccomp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.LinuxSeccomp
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestCompileKerrProfile(t *testing.T) {
	f := mustCompile(t, kerrProfile(t))
	if len(f.Skipped) != 0 {
		maj, minor, micro := libseccomp.GetLibraryVersion()
		t.Logf("libseccomp %d.%d.%d does not know %q", maj, minor, micro, f.Skipped)
	}
	t.Logf("%d BPF instructions", len(f.prog))
}

// --- Loading, in a re-executed child: a filter cannot be removed ---

const (
	helperEnv    = "KERR_SECCOMP_HELPER"
	helperDirEnv = "KERR_SECCOMP_HELPER_DIR"
	helperOK     = "kerr-seccomp-helper: ok"
)

// runHelper runs helperCases[name] in a child and returns its output and exit status.
func runHelper(t *testing.T, name string) (string, syscall.WaitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+name, helperDirEnv+"="+t.TempDir())
	// Its own process group, so that getpgrp is not 0 when the caller's group lies
	// outside our pid namespace (as in CI containers).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func TestLoad(t *testing.T) {
	for name := range helperCases {
		if name == "kill-process" || name == "trap" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, ws := runHelper(t, name)
			if !ws.Exited() || ws.ExitStatus() != 0 || !strings.Contains(out, helperOK) {
				t.Fatalf("child: %v\n%s", ws, out)
			}
		})
	}
}

func TestLoadKillProcess(t *testing.T) {
	t.Parallel()
	out, ws := runHelper(t, "kill-process")
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("child: %v, want killed by SIGSYS\n%s", ws, out)
	}
}

func TestLoadTrap(t *testing.T) {
	t.Parallel()
	// SCMP_ACT_TRAP sends SIGSYS, which the Go runtime turns into a crash (exit status 2).
	out, ws := runHelper(t, "trap")
	if !ws.Exited() || ws.ExitStatus() != 2 || !strings.Contains(out, "SIGSYS: bad system call") {
		t.Fatalf("child: %v, want the Go runtime's SIGSYS crash\n%s", ws, out)
	}
}

// TestHelperProcess is the child side of runHelper; run without helperEnv it does nothing.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv(helperEnv)
	if name == "" {
		return
	}
	run, ok := helperCases[name]
	if !ok {
		exitHelper(fmt.Errorf("no case %q", name))
	}
	// Without TSYNC the filter is this thread's only, and every check must run on it.
	runtime.LockOSThread()
	exitHelper(run(os.Getenv(helperDirEnv)))
}

// exitHelper ends the child without going back to the testing package, which would need
// syscalls the profile may deny.
func exitHelper(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "kerr-seccomp-helper: %v\n", err)
		os.Exit(3)
	}
	fmt.Fprintln(os.Stderr, helperOK)
	os.Exit(0)
}

// load is what a starter does: no_new_privs on this (locked) thread, then Load.
func load(s *specs.LinuxSeccomp) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	f, err := Compile(s)
	if err != nil {
		return err
	}
	if len(f.Skipped) != 0 {
		return fmt.Errorf("skipped %q", f.Skipped)
	}
	return f.Load()
}

// call makes a raw syscall with six arguments and returns its result and errno.
func call(nr uintptr, args ...uintptr) (uintptr, unix.Errno) {
	var a [6]uintptr
	copy(a[:], args)
	r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return r, e
}

// expectErrno checks one call's errno (0: allowed and successful).
func expectErrno(what string, got, want unix.Errno) error {
	if got != want {
		return fmt.Errorf("%s: errno %d (%v), want %d (%v)", what, int(got), got, int(want), want)
	}
	return nil
}

// threadSeccomp returns the Seccomp: line of /proc/thread-self/status (0 none, 2 filter).
func threadSeccomp() (string, error) {
	data, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no Seccomp: line in /proc/thread-self/status")
}

func getcwdWorks() error {
	buf := make([]byte, 4096)
	if _, err := unix.Getcwd(buf); err != nil {
		return fmt.Errorf("getcwd: %w", err)
	}
	return nil
}

func mkdirErrno(dir string) unix.Errno {
	err := unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "d"), 0o700)
	if err == nil {
		_ = unix.Rmdir(filepath.Join(dir, "d"))
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EINVAL
}

// blockMkdir is a deny-list profile: everything but mkdir and mkdirat is allowed.
func blockMkdir() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		// mkdir does not exist on arm64; a name unknown to libseccomp would be skipped,
		// but libseccomp knows it everywhere (as a pseudo number where it does not exist).
		{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno},
	}}
}

// Distinctive errnos, so that a kernel error is not mistaken for the filter's.
const (
	errA = unix.ENOTRECOVERABLE
	errB = unix.EDOM
)

var helperCases = map[string]func(dir string) error{
	// SCMP_ACT_ERRNO without errnoRet is EPERM, and nothing else is touched.
	"errno": func(dir string) error {
		if err := load(blockMkdir()); err != nil {
			return err
		}
		if err := expectErrno("mkdirat", mkdirErrno(dir), unix.EPERM); err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(dir, "d")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the denied mkdirat made the directory (%v)", err)
		}
		return getcwdWorks()
	},

	// errnoRet, errnoRet 0, TRACE without a tracer, LOG.
	"errnoret": func(dir string) error {
		// The raw getpriority returns 20-nice, 1..40, never 0; getsid and getpgid
		// would do when the session is outside our pid namespace (CI containers).
		prio, e := call(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 0)
		if e != 0 || prio == 0 {
			return fmt.Errorf("getpriority before the filter: %d, %v", prio, e)
		}
		zero, traceData := uint(0), uint(1234)
		errno := uint(errA)
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &errno},
			{Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: &zero},
			{Names: []string{"getppid"}, Action: specs.ActTrace, ErrnoRet: &traceData},
			{Names: []string{"getpid"}, Action: specs.ActLog},
		}}
		if err := load(s); err != nil {
			return err
		}
		if err := expectErrno("mkdirat", mkdirErrno(dir), errA); err != nil {
			return err
		}
		// errnoRet 0: the syscall is skipped and "succeeds" with 0.
		if r, e := call(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 0); r != 0 || e != 0 {
			return fmt.Errorf("getpriority under errnoRet 0: %d, %v; want 0 and no errno", r, e)
		}
		// The kernel fails a traced syscall with ENOSYS when no tracer is attached.
		if _, e := call(unix.SYS_GETPPID); e != unix.ENOSYS {
			return fmt.Errorf("getppid under SCMP_ACT_TRACE: %v, want ENOSYS", e)
		}
		if r, e := call(unix.SYS_GETPID); e != 0 || int(r) != os.Getpid() {
			return fmt.Errorf("getpid under SCMP_ACT_LOG: %d, %v; want %d", r, e, os.Getpid())
		}
		return getcwdWorks()
	},

	// One condition; OR on one index; AND across indices.
	"args": func(string) error {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(errA)), Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo},
			}},
			// Denied: getpriority(PRIO_PROCESS or PRIO_PGRP, 0).
			{Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(errB)), Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.PRIO_PROCESS, Op: specs.OpEqualTo},
				{Index: 1, Value: 0, Op: specs.OpEqualTo},
				{Index: 0, Value: unix.PRIO_PGRP, Op: specs.OpEqualTo},
			}},
		}}
		if err := load(s); err != nil {
			return err
		}
		pid, pgrp := uintptr(unix.Getpid()), uintptr(unix.Getpgrp())
		checks := []struct {
			what string
			nr   uintptr
			args []uintptr
			want unix.Errno
		}{
			{"personality(0xffffffff)", unix.SYS_PERSONALITY, []uintptr{0xffffffff}, errA},
			{"personality(0)", unix.SYS_PERSONALITY, []uintptr{0}, 0},
			{"getpriority(PRIO_PROCESS, 0)", unix.SYS_GETPRIORITY, []uintptr{unix.PRIO_PROCESS, 0}, errB},
			{"getpriority(PRIO_PGRP, 0)", unix.SYS_GETPRIORITY, []uintptr{unix.PRIO_PGRP, 0}, errB},
			{"getpriority(PRIO_USER, 0)", unix.SYS_GETPRIORITY, []uintptr{unix.PRIO_USER, 0}, 0},
			{"getpriority(PRIO_PROCESS, pid)", unix.SYS_GETPRIORITY, []uintptr{unix.PRIO_PROCESS, pid}, 0},
			{"getpriority(PRIO_PGRP, pgrp)", unix.SYS_GETPRIORITY, []uintptr{unix.PRIO_PGRP, pgrp}, 0},
		}
		var errs []error
		for _, c := range checks {
			_, e := call(c.nr, c.args...)
			errs = append(errs, expectErrno(c.what, e, c.want))
		}
		return errors.Join(errs...)
	},

	// Every operator, with 64-bit values, each on a syscall that ignores its arguments (the
	// filter sees all six registers) and that the Go runtime does not make.
	"ops": func(string) error {
		const v, mask, datum = 0x1_0000_0010, 0xff00_0000_00ff, 0x1200_0000_0034
		ops := []struct {
			op    specs.LinuxSeccompOperator
			nr    uintptr
			name  string
			index uint
			match func(x uint64) bool
		}{
			{specs.OpNotEqual, unix.SYS_GETUID, "getuid", 0, func(x uint64) bool { return x != v }},
			{specs.OpLessThan, unix.SYS_GETEUID, "geteuid", 1, func(x uint64) bool { return x < v }},
			{specs.OpLessEqual, unix.SYS_GETGID, "getgid", 2, func(x uint64) bool { return x <= v }},
			{specs.OpEqualTo, unix.SYS_GETEGID, "getegid", 3, func(x uint64) bool { return x == v }},
			{specs.OpGreaterEqual, unix.SYS_GETPPID, "getppid", 4, func(x uint64) bool { return x >= v }},
			{specs.OpGreaterThan, unix.SYS_GETSID, "getsid", 5, func(x uint64) bool { return x > v }},
			{specs.OpMaskedEqual, unix.SYS_GETPGID, "getpgid", 1, func(x uint64) bool { return x&mask == datum }},
		}
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		for _, o := range ops {
			arg := specs.LinuxSeccompArg{Index: o.index, Value: v, Op: o.op}
			if o.op == specs.OpMaskedEqual {
				arg.Value, arg.ValueTwo = mask, datum
			}
			s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
				Names: []string{o.name}, Action: specs.ActErrno, ErrnoRet: uintp(uint(errA)),
				Args: []specs.LinuxSeccompArg{arg},
			})
		}
		if err := load(s); err != nil {
			return err
		}
		values := []uint64{0, 0x10, v - 1, v, v + 1, 0x2_0000_0010, 1 << 63,
			datum, datum | 0xff_0000, datum | 0xff00_0000_0000, datum ^ 1, 0x34}
		var errs []error
		for _, o := range ops {
			for _, x := range values {
				args := make([]uintptr, 6)
				args[o.index] = uintptr(x)
				want := unix.Errno(0)
				if o.match(x) {
					want = errA
				}
				_, e := call(o.nr, args...)
				errs = append(errs, expectErrno(fmt.Sprintf("%s %s %#x", o.name, o.op, x), e, want))
			}
		}
		return errors.Join(errs...)
	},

	"kill-process": func(string) error {
		if err := load(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActKillProcess},
		}}); err != nil {
			return err
		}
		call(unix.SYS_GETPPID)
		return errors.New("survived getppid under SCMP_ACT_KILL_PROCESS")
	},

	"trap": func(string) error {
		if err := load(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActTrap},
		}}); err != nil {
			return err
		}
		call(unix.SYS_GETPPID)
		return errors.New("survived getppid under SCMP_ACT_TRAP")
	},

	// An allow-list: default ERRNO with defaultErrnoRet. The list is what this thread needs
	// until exitHelper: the Go runtime (memory, scheduling, signals), write and exit.
	"default-errno": func(dir string) error {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(errB)), Syscalls: []specs.LinuxSyscall{{
			Action: specs.ActAllow,
			Names: []string{"getcwd", "write", "exit", "exit_group", "futex", "mmap", "munmap",
				"madvise", "mprotect", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction",
				"sigaltstack", "sched_yield", "nanosleep", "clock_nanosleep", "getpid", "gettid",
				"tgkill", "clone", "clone3"},
		}}}
		if err := load(s); err != nil {
			return err
		}
		if err := expectErrno("mkdirat", mkdirErrno(dir), errB); err != nil {
			return err
		}
		var u unix.Utsname
		if err := unix.Uname(&u); !errors.Is(err, errB) {
			return fmt.Errorf("uname: %v, want %v", err, errB)
		}
		return getcwdWorks()
	},

	// Without TSYNC the filter is the calling thread's only.
	"thread-only": func(dir string) error {
		if err := load(blockMkdir()); err != nil {
			return err
		}
		if err := expectErrno("mkdirat", mkdirErrno(dir), unix.EPERM); err != nil {
			return err
		}
		return onOtherThread(func() error {
			if mode, err := threadSeccomp(); err != nil || mode != "0" {
				return fmt.Errorf("other thread: Seccomp %q (%v), want 0", mode, err)
			}
			return expectErrno("mkdirat on another thread", mkdirErrno(dir), 0)
		})
	},

	// With TSYNC every thread gets it.
	"tsync": func(dir string) error {
		s := blockMkdir()
		s.Flags = []specs.LinuxSeccompFlag{FlagTsync}
		if err := load(s); err != nil {
			return err
		}
		return onOtherThread(func() error {
			if mode, err := threadSeccomp(); err != nil || mode != "2" {
				return fmt.Errorf("other thread: Seccomp %q (%v), want 2", mode, err)
			}
			return expectErrno("mkdirat on another thread", mkdirErrno(dir), unix.EPERM)
		})
	},

	// The other flags and extra architectures load, and the filter works.
	"flags-arches": func(dir string) error {
		s := blockMkdir()
		s.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow,
			specs.LinuxSeccompFlagWaitKillableRecv}
		s.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM}
		if err := load(s); err != nil {
			return err
		}
		if mode, err := threadSeccomp(); err != nil || mode != "2" {
			return fmt.Errorf("Seccomp %q (%v), want 2", mode, err)
		}
		if err := expectErrno("mkdirat", mkdirErrno(dir), unix.EPERM); err != nil {
			return err
		}
		return getcwdWorks()
	},

	// Without no_new_privs and CAP_SYS_ADMIN the kernel refuses, and Load says why.
	"no-nnp": func(dir string) error {
		// capset changes this thread only, so root's other threads keep their capabilities.
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capget: %w", err)
		}
		data[0].Effective, data[1].Effective = 0, 0
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capset: %w", err)
		}
		err := Load(blockMkdir())
		if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "no_new_privs") {
			return fmt.Errorf("Load without no_new_privs: %v, want EACCES naming no_new_privs", err)
		}
		if mode, err := threadSeccomp(); err != nil || mode != "0" {
			return fmt.Errorf("Seccomp %q (%v) after the refused load, want 0", mode, err)
		}
		return nil
	},

	// kerr's own profile: an allow-list with args rules, five architectures, over
	// optimizeOver rules (so libseccomp's binary tree).
	"kerr-profile": func(dir string) error {
		var s specs.LinuxSeccomp
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "etc", "kerr", "seccomp.json"))
		if err == nil {
			err = json.NewDecoder(bytes.NewReader(data)).Decode(&s)
		}
		if err != nil {
			return err
		}
		f, err := Compile(&s)
		if err != nil {
			return err
		}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
		if err := f.Load(); err != nil {
			return err
		}
		var errs []error
		_, e := call(unix.SYS_PERSONALITY, 0xffffffff)
		errs = append(errs, expectErrno("personality(query)", e, 0))
		const addrNoRandomize = 0x0040000 // <linux/personality.h>
		_, e = call(unix.SYS_PERSONALITY, addrNoRandomize)
		errs = append(errs, expectErrno("personality(ADDR_NO_RANDOMIZE)", e, unix.EPERM))
		_, e = call(unix.SYS_CLONE3)
		errs = append(errs, expectErrno("clone3", e, unix.ENOSYS))
		errs = append(errs, expectErrno("mkdirat", mkdirErrno(dir), 0), getcwdWorks())
		return errors.Join(errs...)
	},
}

// onOtherThread runs fn on a goroutine locked to another OS thread. The calling goroutine
// holds its own thread locked, so the other goroutine cannot run on it; and the Go runtime
// starts threads for a locked thread from a clean template thread, so a new thread does not
// inherit this thread's filter either.
func onOtherThread(fn func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- fn()
	}()
	return <-done
}
