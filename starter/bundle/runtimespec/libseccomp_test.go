//go:build cgo

package runtimespec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// Tests of etc/kerr/seccomp.json against libseccomp itself (cgo, libseccomp-dev).

// TestKerrProfileNamesResolveOnX86_64: every name is one libseccomp knows; 32-bit-only and
// arm-only names resolve to its pseudo numbers on x86_64, which is fine.
func TestKerrProfileNamesResolveOnX86_64(t *testing.T) {
	for _, sc := range loadKerrProfile(t).Syscalls {
		for _, n := range sc.Names {
			if _, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}
	}
}

// buildFilter turns a profile into a libseccomp filter, as a runtime would.
func buildFilter(p *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	action := func(a specs.LinuxSeccompAction, errno *uint) (libseccomp.ScmpAction, error) {
		switch a {
		case specs.ActAllow:
			return libseccomp.ActAllow, nil
		case specs.ActErrno:
			code := uint(syscall.EPERM)
			if errno != nil {
				code = *errno
			}
			return libseccomp.ActErrno.SetReturnCode(int16(code)), nil
		case specs.ActKillProcess:
			return libseccomp.ActKillProcess, nil
		case specs.ActLog:
			return libseccomp.ActLog, nil
		}
		return libseccomp.ActInvalid, fmt.Errorf("action %s not handled by this test", a)
	}
	ops := map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
		specs.OpEqualTo:     libseccomp.CompareEqual,
		specs.OpNotEqual:    libseccomp.CompareNotEqual,
		specs.OpMaskedEqual: libseccomp.CompareMaskedEqual,
	}

	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, err
	}
	for _, a := range p.Architectures {
		arch, err := libseccomp.GetArchFromString(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
	}
	for _, sc := range p.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, err
		}
		var conds []libseccomp.ScmpCondition
		for _, arg := range sc.Args {
			op, ok := ops[arg.Op]
			if !ok {
				return nil, fmt.Errorf("op %s not handled by this test", arg.Op)
			}
			c, err := libseccomp.MakeCondition(arg.Index, op, arg.Value, arg.ValueTwo)
			if err != nil {
				return nil, err
			}
			conds = append(conds, c)
		}
		for _, n := range sc.Names {
			call, err := libseccomp.GetSyscallFromName(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			if err := f.AddRuleConditional(call, act, conds); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	return f, nil
}

func TestKerrProfileCompilesForEveryArchitecture(t *testing.T) {
	f, err := buildFilter(loadKerrProfile(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	// ExportBPFMem needs libseccomp 2.6; a file works with 2.5.
	out, err := os.CreateTemp(t.TempDir(), "bpf")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := f.ExportBPF(out); err != nil {
		t.Fatal(err)
	}
	if fi, err := out.Stat(); err != nil || fi.Size() == 0 {
		t.Fatalf("empty BPF program (%v)", err)
	}
}

const seccompChildEnv = "KERR_TEST_SECCOMP_EXEC"

// runFiltered runs argv under kerr's profile (and no_new_privs): the test binary re-executes
// itself, loads the filter, and execs argv.
func runFiltered(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	enc, err := json.Marshal(argv)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompChild$")
	cmd.Env = append(os.Environ(), seccompChildEnv+"="+string(enc))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSeccompChild is the re-executed side of runFiltered; run directly, it does nothing.
func TestSeccompChild(t *testing.T) {
	enc := os.Getenv(seccompChildEnv)
	if enc == "" {
		return
	}
	var argv []string
	if err := json.Unmarshal([]byte(enc), &argv); err != nil {
		t.Fatal(err)
	}
	p := loadKerrProfile(t)
	runtime.LockOSThread()
	f, err := buildFilter(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Load(); err != nil {
		t.Fatalf("load filter: %v", err)
	}
	err = syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", argv[0], err)
	os.Exit(127)
}

func TestKerrProfileRunsBusyboxShell(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox")
	}
	script := `set -e
grep -q '^Seccomp:[[:space:]]*2' /proc/self/status
ls -la / >/dev/null
cat /proc/self/status | busybox head -n 1 >/dev/null
echo hi > /tmp/kerr-seccomp-test.$$ && cat /tmp/kerr-seccomp-test.$$ >/dev/null && rm /tmp/kerr-seccomp-test.$$
x=$(echo sub)
( exit 0 )
busybox true
echo ok`
	out, err := runFiltered(t, busybox, "sh", "-c", script)
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("busybox sh under the profile: %v\n%s", err, out)
	}
}

func TestKerrProfileRunsGlibcTools(t *testing.T) {
	script := `set -e
ls -la / >/dev/null
cat /etc/hostname >/dev/null
x=$(date)
echo ok`
	out, err := runFiltered(t, "/bin/sh", "-c", script)
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("dash and coreutils under the profile: %v\n%s", err, out)
	}
	// glibc creates threads with clone3 and falls back to clone on ENOSYS.
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 for the thread check")
	}
	out, err = runFiltered(t, python, "-c", "import threading; t = threading.Thread(target=print, args=('ok',)); t.start(); t.join()")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("threads under the profile: %v\n%s", err, out)
	}
}

// TestKerrProfileDeniesNamespaces: root with every capability still cannot make namespaces
// under the profile, while it can without it.
func TestKerrProfileDeniesNamespaces(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox")
	}
	for _, flag := range []string{"-U", "-m", "-n", "-p"} {
		if out, err := exec.Command(busybox, "unshare", flag, "true").CombinedOutput(); err != nil {
			t.Logf("unshare %s fails even without the profile here (%v: %s); skipped", flag, err, bytes.TrimSpace(out))
			continue
		}
		out, err := runFiltered(t, busybox, "unshare", flag, "true")
		if err == nil {
			t.Errorf("unshare %s succeeded under the profile", flag)
		} else if !strings.Contains(out, "Operation not permitted") {
			t.Errorf("unshare %s: %v, want EPERM\n%s", flag, err, out)
		}
	}
	// unshare without namespace flags stays allowed (CLONE_FS, CLONE_FILES).
	if py, err := exec.LookPath("python3"); err == nil {
		out, err := runFiltered(t, py, "-c", "import ctypes; libc = ctypes.CDLL(None, use_errno=True); print('ok' if libc.unshare(0x600) == 0 else ctypes.get_errno())")
		if err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("unshare(CLONE_FS|CLONE_FILES): %v\n%s", err, out)
		}
	}
}
