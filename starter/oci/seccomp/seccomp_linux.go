//go:build linux && cgo

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Filter is a compiled profile: the BPF program libseccomp generated and the seccomp(2)
// flags to load it with. Compile makes one; the zero Filter loads nothing and says so.
type Filter struct {
	// Skipped lists the profile's syscall names that libseccomp does not know (profile
	// order, each once). Their rules are not in the program; the caller should log them.
	Skipped []string

	prog  []unix.SockFilter
	flags uintptr
}

// scmpArches maps every name in knownArches; TestArchTables keeps the two in step.
var scmpArches = map[specs.Arch]libseccomp.ScmpArch{
	specs.ArchX86: libseccomp.ArchX86, specs.ArchX86_64: libseccomp.ArchAMD64,
	specs.ArchX32: libseccomp.ArchX32, specs.ArchARM: libseccomp.ArchARM,
	specs.ArchAARCH64: libseccomp.ArchARM64, specs.ArchMIPS: libseccomp.ArchMIPS,
	specs.ArchMIPS64: libseccomp.ArchMIPS64, specs.ArchMIPS64N32: libseccomp.ArchMIPS64N32,
	specs.ArchMIPSEL: libseccomp.ArchMIPSEL, specs.ArchMIPSEL64: libseccomp.ArchMIPSEL64,
	specs.ArchMIPSEL64N32: libseccomp.ArchMIPSEL64N32, specs.ArchPPC: libseccomp.ArchPPC,
	specs.ArchPPC64: libseccomp.ArchPPC64, specs.ArchPPC64LE: libseccomp.ArchPPC64LE,
	specs.ArchS390: libseccomp.ArchS390, specs.ArchS390X: libseccomp.ArchS390X,
	specs.ArchPARISC: libseccomp.ArchPARISC, specs.ArchPARISC64: libseccomp.ArchPARISC64,
	specs.ArchRISCV64: libseccomp.ArchRISCV64, specs.ArchLOONGARCH64: libseccomp.ArchLOONGARCH64,
	specs.ArchM68K: libseccomp.ArchM68K, specs.ArchSH: libseccomp.ArchSH,
	specs.ArchSHEB: libseccomp.ArchSHEB,
}

var scmpOperators = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual: libseccomp.CompareNotEqual, specs.OpLessThan: libseccomp.CompareLess,
	specs.OpLessEqual: libseccomp.CompareLessOrEqual, specs.OpEqualTo: libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual, specs.OpGreaterThan: libseccomp.CompareGreater,
	specs.OpMaskedEqual: libseccomp.CompareMaskedEqual,
}

// kernelFlags maps each flag to the seccomp(2) bits to ask for and the bits that show the
// kernel knows it. They differ for WAIT_KILLABLE_RECV: the kernel takes it only together
// with NEW_LISTENER, i.e. with a notify fd, which this package never asks for; without one
// the flag has no effect, so it is checked but not passed.
var kernelFlags = map[specs.LinuxSeccompFlag]struct{ set, probe uintptr }{
	FlagTsync:                       {unix.SECCOMP_FILTER_FLAG_TSYNC, unix.SECCOMP_FILTER_FLAG_TSYNC},
	specs.LinuxSeccompFlagLog:       {unix.SECCOMP_FILTER_FLAG_LOG, unix.SECCOMP_FILTER_FLAG_LOG},
	specs.LinuxSeccompFlagSpecAllow: {unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW},
	specs.LinuxSeccompFlagWaitKillableRecv: {0,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV},
}

// optimizeOver is the number of rules above which libseccomp is asked for a binary-tree
// filter (O(log n) per syscall instead of a linear scan). runc uses the same threshold:
// libseccomp up to 2.5.4 generates a broken tree for a filter with no rules.
const optimizeOver = 32

// Compile validates s (see Validate) and builds its BPF program with libseccomp, for the
// native architecture and s.Architectures; it also checks that the kernel accepts the
// requested flags. It loads nothing: a starter can compile before it forks or drops
// privileges and keep only Filter.Load for the last moment. Architectures this libseccomp
// does not know, and flags this kernel does not know, are errors.
//
// Privileges: any; makes no change to the process (it asks seccomp(2) about flags with no
// program, which the kernel refuses before it installs anything).
func Compile(s *specs.LinuxSeccomp) (*Filter, error) {
	if err := Validate(s); err != nil {
		return nil, err
	}
	def := scmpAction(s.DefaultAction, s.DefaultErrnoRet)
	sf, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("seccomp: defaultAction %s: creating filter: %w", s.DefaultAction, err)
	}
	defer sf.Release()

	for i, a := range s.Architectures {
		if err := sf.AddArch(scmpArches[a]); err != nil {
			maj, minor, micro := libseccomp.GetLibraryVersion()
			return nil, fmt.Errorf("seccomp: architectures[%d]: %s with libseccomp %d.%d.%d: %w", i, a, maj, minor, micro, err)
		}
	}

	f := &Filter{}
	rules, err := addRules(sf, s, def, f)
	if err != nil {
		return nil, err
	}
	if rules > optimizeOver {
		// Best effort: libseccomp before 2.5 lacks the attribute, and the linear filter it
		// then generates is just as correct.
		_ = sf.SetOptimize(2)
	}

	if f.prog, err = exportBPF(sf); err != nil {
		return nil, err
	}
	for i, fl := range s.Flags {
		kf := kernelFlags[fl]
		if err := probeFlags(kf.probe); err != nil {
			return nil, fmt.Errorf("seccomp: flags[%d]: %s: not supported by this kernel: %w", i, fl, err)
		}
		f.flags |= kf.set
	}
	return f, nil
}

// scmpAction converts an action Validate accepted; errno nil means EPERM (runtime-spec).
func scmpAction(a specs.LinuxSeccompAction, errno *uint) libseccomp.ScmpAction {
	code := uint(unix.EPERM)
	if errno != nil {
		code = *errno
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		// libseccomp's SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD.
		return libseccomp.ActKillThread
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess
	case specs.ActTrap:
		return libseccomp.ActTrap
	case specs.ActErrno:
		// Validate bounded code to 16 bits; the int16 conversion keeps those bits.
		return libseccomp.ActErrno.SetReturnCode(int16(code))
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(int16(code))
	case specs.ActAllow:
		return libseccomp.ActAllow
	case specs.ActLog:
		return libseccomp.ActLog
	}
	return libseccomp.ActInvalid // unreachable after Validate; libseccomp refuses it
}

// addRules adds the rules of s that differ from the default action def, records unknown
// names in f.Skipped, and returns the number of libseccomp rules added.
func addRules(sf *libseccomp.ScmpFilter, s *specs.LinuxSeccomp, def libseccomp.ScmpAction, f *Filter) (int, error) {
	skipped := map[string]bool{}
	rules := 0
	for i, sc := range s.Syscalls {
		act := scmpAction(sc.Action, sc.ErrnoRet)
		if act == def {
			continue
		}
		conds, err := conditionSets(sc.Args)
		if err != nil {
			return 0, fmt.Errorf("seccomp: syscalls[%d].args: %w", i, err)
		}
		for _, name := range sc.Names {
			nr, err := libseccomp.GetSyscallFromName(name)
			if errors.Is(err, libseccomp.ErrSyscallDoesNotExist) {
				if !skipped[name] {
					skipped[name] = true
					f.Skipped = append(f.Skipped, name)
				}
				continue
			} else if err != nil {
				return 0, fmt.Errorf("seccomp: syscalls[%d]: resolving %s: %w", i, name, err)
			}
			for _, c := range conds {
				if err := sf.AddRuleConditional(nr, act, c); err != nil {
					return 0, fmt.Errorf("seccomp: syscalls[%d]: adding rule for %s: %w", i, name, err)
				}
				rules++
			}
		}
	}
	return rules, nil
}

// conditionSets expands args into the condition lists of the libseccomp rules to add: one
// empty list for no args, else one list per way of picking one condition on each index
// used. libseccomp ANDs the conditions of a rule and ORs its rules, so this reads as OR
// within an index and AND across indices. Validate bounded the number of lists.
func conditionSets(args []specs.LinuxSeccompArg) ([][]libseccomp.ScmpCondition, error) {
	var byIndex [maxArgs][]libseccomp.ScmpCondition
	for j, a := range args {
		c, err := libseccomp.MakeCondition(a.Index, scmpOperators[a.Op], a.Value, a.ValueTwo)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", j, err)
		}
		byIndex[a.Index] = append(byIndex[a.Index], c)
	}
	sets := [][]libseccomp.ScmpCondition{nil}
	for _, alts := range byIndex {
		if len(alts) == 0 {
			continue
		}
		next := make([][]libseccomp.ScmpCondition, 0, len(sets)*len(alts))
		for _, set := range sets {
			for _, c := range alts {
				// A fresh slice each time: appending to set would share its backing array.
				next = append(next, append(append([]libseccomp.ScmpCondition(nil), set...), c))
			}
		}
		sets = next
	}
	return sets, nil
}

// exportBPF returns the program libseccomp generates for sf. It goes through a memfd
// because ExportBPFMem needs libseccomp 2.6 and Debian 12 has 2.5.4.
func exportBPF(sf *libseccomp.ScmpFilter) ([]unix.SockFilter, error) {
	fd, err := unix.MemfdCreate("kerr-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: exporting filter: memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "kerr-seccomp-bpf")
	defer file.Close()
	if err := sf.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("seccomp: exporting filter: %w", err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp: exporting filter: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(file, (unix.BPF_MAXINSNS+1)*8))
	if err != nil {
		return nil, fmt.Errorf("seccomp: exporting filter: %w", err)
	}
	const insnSize = int(unsafe.Sizeof(unix.SockFilter{}))
	n := len(raw) / insnSize
	switch {
	case len(raw)%insnSize != 0 || n == 0:
		return nil, fmt.Errorf("seccomp: exporting filter: libseccomp wrote %d bytes, not a BPF program", len(raw))
	case n > unix.BPF_MAXINSNS:
		return nil, fmt.Errorf("seccomp: filter is longer than the kernel's limit of %d instructions", unix.BPF_MAXINSNS)
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		// libseccomp writes struct sock_filter in host byte order.
		b := raw[i*insnSize:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	return prog, nil
}

// probeFlags asks the kernel whether it knows flags: seccomp(2) checks the flags before it
// reads the program, so a NULL program fails with EFAULT exactly when they are known
// (libseccomp probes the same way). Nothing is installed either way.
func probeFlags(flags uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, 0)
	switch errno {
	case unix.EFAULT:
		return nil
	case 0:
		return errors.New("seccomp(2) accepted a NULL program")
	default:
		return errno
	}
}

// Load installs f on the calling thread, or on every thread of the process when the
// profile had SECCOMP_FILTER_FLAG_TSYNC. The caller must have locked its OS thread
// (runtime.LockOSThread) and should execve from it: without TSYNC the other threads stay
// unfiltered, and a filter cannot be removed. Setting no_new_privs is the caller's job:
// without it (or CAP_SYS_ADMIN in the thread's user namespace) the kernel refuses the
// filter with EACCES. With TSYNC, a thread that cannot be synchronised makes Load fail and
// nothing is installed.
//
// Privileges: any, given no_new_privs (else CAP_SYS_ADMIN); changes only the calling
// thread's seccomp filter (every thread's with TSYNC), for good.
func (f *Filter) Load() error {
	if f == nil || len(f.prog) == 0 {
		return errors.New("seccomp: loading filter: empty filter (use Compile)")
	}
	fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	r1, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(f.prog)
	switch {
	case errno == unix.EACCES:
		return fmt.Errorf("seccomp: loading filter (no_new_privs is not set and the thread lacks CAP_SYS_ADMIN): %w", errno)
	case errno != 0:
		return fmt.Errorf("seccomp: loading filter: %w", errno)
	case r1 != 0:
		// TSYNC reports the thread it could not move onto the filter by returning its id.
		return fmt.Errorf("seccomp: loading filter: thread %d cannot be synchronised (TSYNC); nothing was installed", r1)
	}
	return nil
}

// Load compiles s (see Compile) and installs it (see Filter.Load). It drops the list of
// skipped syscall names; call Compile and Filter.Load to log them.
//
// Privileges: any, given no_new_privs (else CAP_SYS_ADMIN); changes only the calling
// thread's seccomp filter (every thread's with SECCOMP_FILTER_FLAG_TSYNC), for good.
func Load(s *specs.LinuxSeccomp) error {
	f, err := Compile(s)
	if err != nil {
		return err
	}
	return f.Load()
}
