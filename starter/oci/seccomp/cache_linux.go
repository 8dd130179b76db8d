//go:build linux && cgo

package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// A compiled profile can be kept and loaded again without libseccomp: compiling kerr's
// default profile (2000 BPF instructions) takes about 40 ms, a third of a container's start.

// filterMagic starts a marshalled Filter; the version of the layout is its last byte.
const filterMagic = "KERRBPF1"

// maxInstructions is the most a BPF program may have (BPF_MAXINSNS).
const maxInstructions = 4096

// CacheKey names what a compiled profile depends on: the profile's bytes, this libseccomp
// and this kernel's architecture. Privileges: none used.
func CacheKey(profile []byte) string {
	maj, minor, micro := libseccomp.GetLibraryVersion()
	arch, _ := libseccomp.GetNativeArch()
	h := sha256.New()
	fmt.Fprintf(h, "%s libseccomp %d.%d.%d %s\n", filterMagic, maj, minor, micro, arch)
	h.Write(profile)
	return hex.EncodeToString(h.Sum(nil))
}

// MarshalBinary is the program and its flags, to be read back by UnmarshalFilter. The
// skipped names are not kept.
func (f *Filter) MarshalBinary() ([]byte, error) {
	if f == nil || len(f.prog) == 0 || len(f.prog) > maxInstructions {
		return nil, errors.New("seccomp: no program to marshal")
	}
	b := append([]byte(filterMagic), make([]byte, 12)...)
	binary.LittleEndian.PutUint64(b[8:], uint64(f.flags))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(f.prog)))
	for _, ins := range f.prog {
		b = binary.LittleEndian.AppendUint16(b, ins.Code)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.LittleEndian.AppendUint32(b, ins.K)
	}
	return b, nil
}

// UnmarshalFilter reads what MarshalBinary wrote. It checks the form only: the bytes must
// come from a place only root writes (the kernel verifies the program when it loads it).
// Privileges: none used.
func UnmarshalFilter(b []byte) (*Filter, error) {
	if len(b) < 20 || string(b[:8]) != filterMagic {
		return nil, errors.New("seccomp: not a compiled filter")
	}
	flags := binary.LittleEndian.Uint64(b[8:])
	n := binary.LittleEndian.Uint32(b[16:])
	if n == 0 || n > maxInstructions || uint64(len(b)-20) != uint64(n)*8 {
		return nil, errors.New("seccomp: a compiled filter of the wrong size")
	}
	known := uint64(0)
	for _, k := range kernelFlags {
		known |= uint64(k.set)
	}
	if flags&^known != 0 {
		return nil, fmt.Errorf("seccomp: a compiled filter with unknown flags %#x", flags)
	}
	f := &Filter{flags: uintptr(flags), prog: make([]unix.SockFilter, n)}
	for i := range f.prog {
		p := b[20+8*i:]
		f.prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(p), Jt: p[2], Jf: p[3], K: binary.LittleEndian.Uint32(p[4:])}
	}
	return f, nil
}
