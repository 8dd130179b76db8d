package seccomp

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func uintp(v uint) *uint { return &v }

// allow is a valid profile for the table below to break one field at a time.
func allow() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getcwd"}, Action: specs.ActLog},
			{Names: []string{"mkdir"}, Action: specs.ActErrno},
			{Names: []string{"mkdirat"}, Action: specs.ActErrno},
			{Names: []string{"rmdir"}, Action: specs.ActErrno},
		},
	}
}

func TestValidateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(s *specs.LinuxSeccomp)
		want   string
	}{
		{"missing default", func(s *specs.LinuxSeccomp) { s.DefaultAction = "" },
			`seccomp: defaultAction: missing action`},
		{"unknown default", func(s *specs.LinuxSeccomp) { s.DefaultAction = "SCMP_ACT_NOPE" },
			`seccomp: defaultAction: unknown action "SCMP_ACT_NOPE"`},
		{"lower-case default", func(s *specs.LinuxSeccomp) { s.DefaultAction = "scmp_act_allow" },
			`seccomp: defaultAction: unknown action "scmp_act_allow"`},
		{"notify default", func(s *specs.LinuxSeccomp) { s.DefaultAction = specs.ActNotify },
			`seccomp: SCMP_ACT_NOTIFY is not supported (defaultAction)`},
		{"defaultErrnoRet with allow", func(s *specs.LinuxSeccomp) { s.DefaultErrnoRet = uintp(1) },
			`seccomp: defaultErrnoRet: set, but action SCMP_ACT_ALLOW takes no errno`},
		{"defaultErrnoRet with kill", func(s *specs.LinuxSeccomp) {
			s.DefaultAction, s.DefaultErrnoRet = specs.ActKillProcess, uintp(1)
		}, `seccomp: defaultErrnoRet: set, but action SCMP_ACT_KILL_PROCESS takes no errno`},
		{"defaultErrnoRet over MAX_ERRNO", func(s *specs.LinuxSeccomp) {
			s.DefaultAction, s.DefaultErrnoRet = specs.ActErrno, uintp(4096)
		}, `seccomp: defaultErrnoRet: 4096 is over the kernel's largest errno (4095)`},
		{"defaultErrnoRet over 16 bits for trace", func(s *specs.LinuxSeccomp) {
			s.DefaultAction, s.DefaultErrnoRet = specs.ActTrace, uintp(65536)
		}, `seccomp: defaultErrnoRet: 65536 does not fit SCMP_ACT_TRACE's 16 bits`},
		{"unknown arch", func(s *specs.LinuxSeccomp) {
			s.Architectures = []specs.Arch{specs.ArchX86_64, "SCMP_ARCH_Z80"}
		}, `seccomp: architectures[1]: unknown architecture "SCMP_ARCH_Z80"`},
		{"libseccomp arch spelling", func(s *specs.LinuxSeccomp) { s.Architectures = []specs.Arch{"amd64"} },
			`seccomp: architectures[0]: unknown architecture "amd64"`},
		{"unknown flag", func(s *specs.LinuxSeccomp) {
			s.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"}
		}, `seccomp: flags[1]: unknown flag "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"`},
		{"metadata without listener", func(s *specs.LinuxSeccomp) { s.ListenerMetadata = "x" },
			`seccomp: listenerMetadata: set without listenerPath`},
		{"no names", func(s *specs.LinuxSeccomp) { s.Syscalls[2].Names = nil },
			`seccomp: syscalls[2].names: empty`},
		{"empty name", func(s *specs.LinuxSeccomp) { s.Syscalls[2].Names = []string{"mkdirat", ""} },
			`seccomp: syscalls[2].names[1]: empty name`},
		{"unknown rule action", func(s *specs.LinuxSeccomp) { s.Syscalls[3].Action = "SCMP_ACT_FOO" },
			`seccomp: syscalls[3]: unknown action "SCMP_ACT_FOO"`},
		{"missing rule action", func(s *specs.LinuxSeccomp) { s.Syscalls[0].Action = "" },
			`seccomp: syscalls[0]: missing action`},
		{"notify rule", func(s *specs.LinuxSeccomp) {
			s.Syscalls[1].Action, s.ListenerPath = specs.ActNotify, "/run/agent.sock"
		}, `seccomp: SCMP_ACT_NOTIFY is not supported (syscalls[1])`},
		{"errnoRet with allow", func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Action, s.Syscalls[0].ErrnoRet = specs.ActAllow, uintp(1)
		}, `seccomp: syscalls[0].errnoRet: set, but action SCMP_ACT_ALLOW takes no errno`},
		{"errnoRet with log", func(s *specs.LinuxSeccomp) { s.Syscalls[0].ErrnoRet = uintp(0) },
			`seccomp: syscalls[0].errnoRet: set, but action SCMP_ACT_LOG takes no errno`},
		{"errnoRet with trap", func(s *specs.LinuxSeccomp) {
			s.Syscalls[0].Action, s.Syscalls[0].ErrnoRet = specs.ActTrap, uintp(1)
		}, `seccomp: syscalls[0].errnoRet: set, but action SCMP_ACT_TRAP takes no errno`},
		{"errnoRet over MAX_ERRNO", func(s *specs.LinuxSeccomp) { s.Syscalls[1].ErrnoRet = uintp(1 << 16) },
			`seccomp: syscalls[1].errnoRet: 65536 is over the kernel's largest errno (4095)`},
		{"arg index 6", func(s *specs.LinuxSeccomp) {
			s.Syscalls[1].Args = []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo}, {Index: 6, Op: specs.OpEqualTo}}
		}, `seccomp: syscalls[1].args[1]: index 6 out of range (0-5)`},
		{"unknown operator", func(s *specs.LinuxSeccomp) {
			s.Syscalls[1].Args = []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_LIKE"}}
		}, `seccomp: syscalls[1].args[0]: unknown operator "SCMP_CMP_LIKE"`},
		{"missing operator", func(s *specs.LinuxSeccomp) {
			s.Syscalls[1].Args = []specs.LinuxSeccompArg{{Index: 0, Value: 1}}
		}, `seccomp: syscalls[1].args[0]: unknown operator ""`},
		{"too many combinations", func(s *specs.LinuxSeccomp) {
			// 3*3*3*3 = 81 rules.
			for idx := uint(0); idx < 4; idx++ {
				for v := uint64(0); v < 3; v++ {
					s.Syscalls[1].Args = append(s.Syscalls[1].Args,
						specs.LinuxSeccompArg{Index: idx, Value: v, Op: specs.OpEqualTo})
				}
			}
		}, `seccomp: syscalls[1].args: more than 64 combinations of conditions`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := allow()
			tc.modify(s)
			err := Validate(s)
			if err == nil {
				t.Fatalf("Validate accepted the profile, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("Validate:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestValidateNotifyIsErrNotifyUnsupported(t *testing.T) {
	s := allow()
	s.Syscalls[2].Action = specs.ActNotify
	if err := Validate(s); !errors.Is(err, ErrNotifyUnsupported) {
		t.Fatalf("Validate = %v, want ErrNotifyUnsupported", err)
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Fatal("Validate(nil) = nil")
	}
}

// TestValidateAccepts: everything runtime-spec 1.3 defines (but NOTIFY) passes.
func TestValidateAccepts(t *testing.T) {
	s := allow()
	for a := range knownArches {
		s.Architectures = append(s.Architectures, a)
	}
	for f := range knownFlags {
		s.Flags = append(s.Flags, f)
	}
	for a := range knownActions {
		if a == specs.ActNotify {
			continue
		}
		sc := specs.LinuxSyscall{Names: []string{"getpid", "no_such_syscall_is_fine"}, Action: a}
		if a == specs.ActErrno || a == specs.ActTrace {
			sc.ErrnoRet = uintp(4095)
		}
		s.Syscalls = append(s.Syscalls, sc)
	}
	var args []specs.LinuxSeccompArg
	for op := range knownOperators {
		args = append(args, specs.LinuxSeccompArg{Index: 5, Value: 1, ValueTwo: 1, Op: op})
	}
	// 7 conditions on index 5 and one on index 0: 7 rules, within the limit.
	args = append(args, specs.LinuxSeccompArg{Index: 0, Op: specs.OpEqualTo})
	s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActErrno, Args: args})
	// errno 0 makes the syscall "succeed" without running; runtimes allow it.
	s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"sync"}, Action: specs.ActErrno, ErrnoRet: uintp(0)})
	s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"sync"}, Action: specs.ActTrace, ErrnoRet: uintp(65535)})
	// listenerPath without NOTIFY is ignored, as the spec says.
	s.ListenerPath, s.ListenerMetadata = "/run/agent.sock", "meta"
	if err := Validate(s); err != nil {
		t.Fatal(err)
	}

	for _, def := range []specs.LinuxSeccompAction{specs.ActErrno, specs.ActTrace} {
		s := allow()
		s.DefaultAction, s.DefaultErrnoRet = def, uintp(38)
		if err := Validate(s); err != nil {
			t.Errorf("default %s with defaultErrnoRet: %v", def, err)
		}
	}
}
