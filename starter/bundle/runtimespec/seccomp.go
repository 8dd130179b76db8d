package runtimespec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxSeccompProfile bounds the profile file; kerr's own is about 12 KiB.
const maxSeccompProfile = 1 << 20

// readSeccompProfile reads the specs.LinuxSeccomp in the file at path, strictly: unknown
// fields, trailing data and values the spec does not define are errors, each naming the file.
// The path is an admin's (kerr.toml) or root's choice, so symlinks are followed; what is
// opened must be a regular file.
func readSeccompProfile(path string) (*specs.LinuxSeccomp, error) {
	p, err := decodeSeccompProfile(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	return p, nil
}

func decodeSeccompProfile(path string) (*specs.LinuxSeccomp, error) {
	// O_NONBLOCK: a FIFO put where the profile should be fails the type check below
	// instead of blocking the open.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSeccompProfile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSeccompProfile {
		return nil, fmt.Errorf("larger than %d bytes", maxSeccompProfile)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p specs.LinuxSeccomp
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if err := checkSeccomp(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

var (
	seccompActions = setOf(
		specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
		specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
	)
	seccompArches = setOf(
		specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
		specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
		specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
		specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
		specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K,
		specs.ArchSH, specs.ArchSHEB,
	)
	// The spec also lists TSYNC, which specs-go has no constant for.
	seccompFlags = setOf(
		"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog,
		specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv,
	)
	seccompOperators = setOf(
		specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
	)
)

func setOf[T ~string](values ...T) map[T]bool {
	m := make(map[T]bool, len(values))
	for _, v := range values {
		m[v] = true
	}
	return m
}

// errnoActions are the actions that take an errno (the spec's "errnoRet"/"defaultErrnoRet").
var errnoActions = setOf(specs.ActErrno, specs.ActTrace)

// checkSeccomp checks what the runtime-spec says of a seccomp section and the runtime-tools
// validator does not look at. Syscall names are not checked: runtimes skip names their
// libseccomp does not know, so that one profile serves old and new kernels.
func checkSeccomp(p *specs.LinuxSeccomp) error {
	if !seccompActions[p.DefaultAction] {
		return fmt.Errorf("defaultAction %q is not a seccomp action", p.DefaultAction)
	}
	if p.DefaultErrnoRet != nil && !errnoActions[p.DefaultAction] {
		return fmt.Errorf("defaultErrnoRet is set but defaultAction %s takes no errno", p.DefaultAction)
	}
	for _, a := range p.Architectures {
		if !seccompArches[a] {
			return fmt.Errorf("architecture %q is not a seccomp architecture", a)
		}
	}
	for _, f := range p.Flags {
		if !seccompFlags[f] {
			return fmt.Errorf("flag %q is not a seccomp filter flag", f)
		}
	}
	if p.ListenerMetadata != "" && p.ListenerPath == "" {
		return errors.New("listenerMetadata is set without listenerPath")
	}
	notify := p.DefaultAction == specs.ActNotify
	for i, sc := range p.Syscalls {
		if len(sc.Names) == 0 {
			return fmt.Errorf("syscalls[%d] has no names", i)
		}
		for _, n := range sc.Names {
			if n == "" {
				return fmt.Errorf("syscalls[%d] has an empty name", i)
			}
		}
		if !seccompActions[sc.Action] {
			return fmt.Errorf("syscalls[%d] (%s): action %q is not a seccomp action", i, sc.Names[0], sc.Action)
		}
		if sc.ErrnoRet != nil && !errnoActions[sc.Action] {
			return fmt.Errorf("syscalls[%d] (%s): errnoRet is set but action %s takes no errno", i, sc.Names[0], sc.Action)
		}
		notify = notify || sc.Action == specs.ActNotify
		for _, arg := range sc.Args {
			if arg.Index > 5 {
				return fmt.Errorf("syscalls[%d] (%s): argument index %d is over 5", i, sc.Names[0], arg.Index)
			}
			if !seccompOperators[arg.Op] {
				return fmt.Errorf("syscalls[%d] (%s): op %q is not a seccomp operator", i, sc.Names[0], arg.Op)
			}
		}
	}
	if notify && p.ListenerPath == "" {
		return errors.New("SCMP_ACT_NOTIFY is used without listenerPath")
	}
	return nil
}
