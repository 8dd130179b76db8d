package seccomp

import (
	"errors"
	"fmt"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNotifyUnsupported is wrapped by the error for a profile that uses SCMP_ACT_NOTIFY: kerr
// has no seccomp agent (listenerPath) support.
var ErrNotifyUnsupported = errors.New("seccomp: SCMP_ACT_NOTIFY is not supported")

// ErrUnavailable is returned by Compile and Load in a build without cgo (or not for Linux):
// they need libseccomp.
var ErrUnavailable = errors.New("seccomp: not available: built without cgo and libseccomp")

// FlagTsync is the runtime-spec flag name specs-go has no constant for.
const FlagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

const (
	// maxArgs: a syscall has at most six arguments (seccomp_data.args).
	maxArgs = 6
	// maxErrno is the kernel's MAX_ERRNO: SECCOMP_RET_ERRNO clamps larger values to it, so a
	// profile asking for more would silently get another errno.
	maxErrno = 4095
	// maxTraceData: SECCOMP_RET_TRACE passes 16 bits to the tracer; libseccomp masks the rest
	// away, which would change the value silently.
	maxTraceData = 0xffff
	// maxCombinations bounds the rules one syscalls[] entry expands to (the product of the
	// number of conditions on each index), so that a profile cannot make Compile build a huge
	// filter; real profiles need 1 or 2.
	maxCombinations = 64
)

var (
	knownActions = map[specs.LinuxSeccompAction]bool{
		specs.ActKill: true, specs.ActKillProcess: true, specs.ActKillThread: true,
		specs.ActTrap: true, specs.ActErrno: true, specs.ActTrace: true,
		specs.ActAllow: true, specs.ActLog: true, specs.ActNotify: true,
	}
	knownOperators = map[specs.LinuxSeccompOperator]bool{
		specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true,
		specs.OpEqualTo: true, specs.OpGreaterEqual: true, specs.OpGreaterThan: true,
		specs.OpMaskedEqual: true,
	}
	knownArches = map[specs.Arch]bool{
		specs.ArchX86: true, specs.ArchX86_64: true, specs.ArchX32: true,
		specs.ArchARM: true, specs.ArchAARCH64: true, specs.ArchMIPS: true,
		specs.ArchMIPS64: true, specs.ArchMIPS64N32: true, specs.ArchMIPSEL: true,
		specs.ArchMIPSEL64: true, specs.ArchMIPSEL64N32: true, specs.ArchPPC: true,
		specs.ArchPPC64: true, specs.ArchPPC64LE: true, specs.ArchS390: true,
		specs.ArchS390X: true, specs.ArchPARISC: true, specs.ArchPARISC64: true,
		specs.ArchRISCV64: true, specs.ArchLOONGARCH64: true, specs.ArchM68K: true,
		specs.ArchSH: true, specs.ArchSHEB: true,
	}
	knownFlags = map[specs.LinuxSeccompFlag]bool{
		FlagTsync: true, specs.LinuxSeccompFlagLog: true,
		specs.LinuxSeccompFlagSpecAllow: true, specs.LinuxSeccompFlagWaitKillableRecv: true,
	}
)

// Validate checks s without libseccomp or the kernel: known default and rule actions,
// operators, architectures and flags; argument indices below 6; errnoRet and
// defaultErrnoRet only with SCMP_ACT_ERRNO (at most 4095) or SCMP_ACT_TRACE (at most
// 65535); names present and non-empty; listenerMetadata only with listenerPath.
// SCMP_ACT_NOTIFY is refused with an error wrapping ErrNotifyUnsupported. Syscall names are
// not looked up (Compile skips unknown ones). The error is one line naming the field, e.g.
// `seccomp: syscalls[3]: unknown action "SCMP_ACT_FOO"`.
//
// Privileges: any; touches nothing outside s.
func Validate(s *specs.LinuxSeccomp) error {
	if s == nil {
		return errors.New("seccomp: no profile (nil)")
	}
	if err := checkAction(s.DefaultAction, s.DefaultErrnoRet, "defaultAction", "defaultErrnoRet"); err != nil {
		return err
	}
	for i, a := range s.Architectures {
		if !knownArches[a] {
			return fmt.Errorf("seccomp: architectures[%d]: unknown architecture %q", i, a)
		}
	}
	for i, f := range s.Flags {
		if !knownFlags[f] {
			return fmt.Errorf("seccomp: flags[%d]: unknown flag %q", i, f)
		}
	}
	if s.ListenerMetadata != "" && s.ListenerPath == "" {
		return errors.New("seccomp: listenerMetadata: set without listenerPath")
	}
	for i, sc := range s.Syscalls {
		field := fmt.Sprintf("syscalls[%d]", i)
		if len(sc.Names) == 0 {
			return fmt.Errorf("seccomp: %s.names: empty", field)
		}
		for j, n := range sc.Names {
			if n == "" {
				return fmt.Errorf("seccomp: %s.names[%d]: empty name", field, j)
			}
		}
		if err := checkAction(sc.Action, sc.ErrnoRet, field, field+".errnoRet"); err != nil {
			return err
		}
		var perIndex [maxArgs]int
		for j, arg := range sc.Args {
			if arg.Index >= maxArgs {
				return fmt.Errorf("seccomp: %s.args[%d]: index %d out of range (0-%d)", field, j, arg.Index, maxArgs-1)
			}
			if !knownOperators[arg.Op] {
				return fmt.Errorf("seccomp: %s.args[%d]: unknown operator %q", field, j, arg.Op)
			}
			perIndex[arg.Index]++
		}
		combos := 1
		for _, n := range perIndex {
			if n > 0 {
				combos *= n
			}
			if combos > maxCombinations {
				return fmt.Errorf("seccomp: %s.args: more than %d combinations of conditions", field, maxCombinations)
			}
		}
	}
	return nil
}

// checkAction checks one action and its errno; field and errnoField name them in errors.
func checkAction(a specs.LinuxSeccompAction, errno *uint, field, errnoField string) error {
	switch {
	case a == "":
		return fmt.Errorf("seccomp: %s: missing action", field)
	case a == specs.ActNotify:
		return fmt.Errorf("%w (%s)", ErrNotifyUnsupported, field)
	case !knownActions[a]:
		return fmt.Errorf("seccomp: %s: unknown action %q", field, a)
	}
	if errno == nil {
		return nil
	}
	switch a {
	case specs.ActErrno:
		if *errno > maxErrno {
			return fmt.Errorf("seccomp: %s: %d is over the kernel's largest errno (%d)", errnoField, *errno, maxErrno)
		}
	case specs.ActTrace:
		if *errno > maxTraceData {
			return fmt.Errorf("seccomp: %s: %d does not fit SCMP_ACT_TRACE's 16 bits", errnoField, *errno)
		}
	default:
		return fmt.Errorf("seccomp: %s: set, but action %s takes no errno", errnoField, a)
	}
	return nil
}

// Supported lists the actions (SCMP_ACT_NOTIFY left out), operators, architectures and
// flags Validate accepts, sorted: what `features` reports.
func Supported() (actions, operators, archs, flags []string) {
	for a := range knownActions {
		if a != specs.ActNotify {
			actions = append(actions, string(a))
		}
	}
	for o := range knownOperators {
		operators = append(operators, string(o))
	}
	for a := range knownArches {
		archs = append(archs, string(a))
	}
	for f := range knownFlags {
		flags = append(flags, string(f))
	}
	for _, l := range [][]string{actions, operators, archs, flags} {
		sort.Strings(l)
	}
	return actions, operators, archs, flags
}
