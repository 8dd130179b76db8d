package runtimespec

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Tests of etc/kerr/seccomp.json, kerr's default profile, that need no libseccomp.

func loadKerrProfile(t *testing.T) *specs.LinuxSeccomp {
	t.Helper()
	p, err := readSeccompProfile(kerrProfile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// allowed returns the syscalls the profile allows without conditions, and those it allows
// only under argument conditions.
func allowed(p *specs.LinuxSeccomp) (plain, conditional map[string]bool) {
	plain, conditional = map[string]bool{}, map[string]bool{}
	for _, sc := range p.Syscalls {
		if sc.Action != specs.ActAllow {
			continue
		}
		for _, n := range sc.Names {
			if len(sc.Args) == 0 {
				plain[n] = true
			} else {
				conditional[n] = true
			}
		}
	}
	return plain, conditional
}

func TestKerrProfileDefaults(t *testing.T) {
	p := loadKerrProfile(t)
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Errorf("default = %s %v, want SCMP_ACT_ERRNO with EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	wantArches := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM}
	if !slices.Equal(p.Architectures, wantArches) {
		t.Errorf("architectures = %q", p.Architectures)
	}
	if len(p.Flags) != 0 || p.ListenerPath != "" {
		t.Errorf("flags %q listener %q, want none", p.Flags, p.ListenerPath)
	}
}

func TestKerrProfileAllowsWhatBusyboxNeeds(t *testing.T) {
	plain, conditional := allowed(loadKerrProfile(t))
	for _, n := range []string{
		// sh, ls, cat, echo under glibc or musl, static or dynamic, on x86_64 and arm64
		"read", "write", "writev", "open", "openat", "close", "execve", "brk", "mmap",
		"munmap", "mprotect", "exit", "exit_group", "getdents64", "newfstatat", "fstat",
		"stat", "lstat", "statx", "lseek", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
		"wait4", "ioctl", "fcntl", "dup2", "dup3", "pipe", "pipe2", "getpid", "getppid",
		"getuid", "geteuid", "getgid", "getegid", "arch_prctl", "set_tid_address",
		"set_robust_list", "rseq", "prlimit64", "getcwd", "chdir", "uname", "access",
		"faccessat", "readlink", "readlinkat", "getrandom", "futex", "clock_gettime",
		"poll", "ppoll", "select", "pselect6", "kill", "setpgid", "getpgrp", "vfork",
		"fork", "madvise", "sched_getaffinity",
	} {
		if !plain[n] {
			t.Errorf("%s is not allowed", n)
		}
	}
	if !conditional["clone"] || plain["clone"] {
		t.Error("clone must be allowed only with its namespace-flag filter")
	}
	if !conditional["personality"] || plain["personality"] {
		t.Error("personality must be allowed only for its listed personas")
	}
}

func TestKerrProfileLeavesOutPrivilegedSyscalls(t *testing.T) {
	plain, conditional := allowed(loadKerrProfile(t))
	for _, n := range []string{
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"reboot", "swapon", "swapoff", "mount", "umount", "umount2", "pivot_root",
		"move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
		"mount_setattr", "bpf", "perf_event_open", "add_key", "keyctl", "request_key",
		"open_by_handle_at", "name_to_handle_at", "setns", "acct", "settimeofday",
		"clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "syslog",
		"sethostname", "setdomainname", "userfaultfd", "lookup_dcookie", "quotactl",
		"quotactl_fd", "vhangup", "modify_ldt", "fanotify_init", "kcmp", "io_uring_setup",
		"io_uring_enter", "io_uring_register", "clone3", "uselib", "_sysctl", "vm86",
		"vm86old", "nfsservctl",
	} {
		if plain[n] || conditional[n] {
			t.Errorf("%s is allowed", n)
		}
	}
}

func TestKerrProfileFilters(t *testing.T) {
	p := loadKerrProfile(t)
	const nsFlags = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
	var personas []uint64
	seen := map[string]int{}
	for _, sc := range p.Syscalls {
		for _, n := range sc.Names {
			seen[n]++
		}
		switch {
		case slices.Equal(sc.Names, []string{"clone"}):
			want := []specs.LinuxSeccompArg{{Index: 0, Value: nsFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}}
			if sc.Action != specs.ActAllow || !slices.Equal(sc.Args, want) {
				t.Errorf("clone rule = %+v", sc)
			}
		case slices.Equal(sc.Names, []string{"unshare"}):
			// unshare also takes CLONE_NEWTIME (0x80).
			want := []specs.LinuxSeccompArg{{Index: 0, Value: nsFlags | 0x80, ValueTwo: 0, Op: specs.OpMaskedEqual}}
			if sc.Action != specs.ActAllow || !slices.Equal(sc.Args, want) {
				t.Errorf("unshare rule = %+v", sc)
			}
		case slices.Equal(sc.Names, []string{"personality"}):
			if sc.Action != specs.ActAllow || len(sc.Args) != 1 || sc.Args[0].Index != 0 || sc.Args[0].Op != specs.OpEqualTo {
				t.Errorf("personality rule = %+v", sc)
				continue
			}
			personas = append(personas, sc.Args[0].Value)
		case slices.Contains(sc.Names, "clone3"):
			// ENOSYS, so that the C library falls back to clone, which can be filtered.
			if sc.Action != specs.ActErrno || sc.ErrnoRet == nil || *sc.ErrnoRet != 38 || len(sc.Args) != 0 {
				t.Errorf("clone3 rule = %+v", sc)
			}
		}
	}
	if want := []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}; !slices.Equal(personas, want) {
		t.Errorf("personality allows %#x, want %#x", personas, want)
	}
	for n, count := range seen {
		if count > 1 && n != "personality" {
			t.Errorf("%s has %d rules", n, count)
		}
	}
}
