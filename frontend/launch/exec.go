package launch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/rpc/native"
)

// This file is HPC mode's way to the starter (`kerr exec|run|shell`): kerr does not fork it
// but becomes it. The payload then keeps kerr's pid, its parent (the batch script), its
// session, its cgroup and its stdio, and a scheduler's signals reach the starter as they
// reached kerr, with nobody in between; kerr's exit status is the starter's, and so the
// payload's. Everything the frontend can find wrong must therefore be found before Exec:
// after it, kerr prints nothing more.

// NativeConfig returns the bytes an HPC-mode starter reads on its config fd: native.Magic,
// then the envelope of cfg for container id. The whole is at most envelope.MaxSize bytes,
// the most the starter reads.
func NativeConfig(id string, cfg *native.Config) ([]byte, error) {
	env, err := envelope.New(native.EngineName, id, cfg)
	if err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	b, err := env.Encode()
	if err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	if len(native.Magic)+len(b) > envelope.MaxSize {
		return nil, fmt.Errorf("engine config: %d bytes, the limit is %d (fewer environment variables or arguments): %w",
			len(native.Magic)+len(b), envelope.MaxSize, errdefs.ErrUsage)
	}
	return append([]byte(native.Magic), b...), nil
}

// Starter returns the starter kerr execs for the caller, checked: for root (effective uid
// 0) the plain starter, buildcfg.StarterPath(); for anyone else buildcfg.StarterSuidPath(),
// which must be owned by root, have its setuid bit and lie on a filesystem not mounted
// nosuid. A missing starter wraps errdefs.ErrNotFound; a setuid starter that cannot give
// privileges wraps errdefs.ErrDenied. Privileges: the caller's; it only stats.
func Starter() (string, error) {
	return starterFor(os.Geteuid(), buildcfg.StarterPath(), buildcfg.StarterSuidPath())
}

// StarterUserNS returns the plain starter for HPC mode in a user namespace (no setuid
// needed): it must exist and be a regular file. Privileges: the caller's; it only stats.
func StarterUserNS() (string, error) {
	return starterFor(0, buildcfg.StarterPath(), "")
}

// StarterFor is Starter, or StarterUserNS for a request in a user namespace.
func StarterFor(userns bool) (string, error) {
	if userns && os.Geteuid() != 0 {
		return StarterUserNS()
	}
	return Starter()
}

func starterFor(euid int, plain, suid string) (string, error) {
	bin := suid
	if euid == 0 {
		bin = plain
	}
	fi, err := os.Stat(bin)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("the starter %s is not installed (kerr runs containers through it; see 'Build and install' in docs/admin-guide.md): %w",
			bin, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("the starter: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("the starter %s is not a regular file: the installation is broken (see docs/admin-guide.md)", bin)
	}
	if euid == 0 {
		return bin, nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("the starter %s: no owner in its stat", bin)
	}
	if st.Uid != 0 || fi.Mode()&os.ModeSetuid == 0 {
		return "", fmt.Errorf("the starter %s is not setuid root (owner uid %d, mode %04o): only root can run containers "+
			"until an admin installs it 4755 root:root (make install as root; see docs/admin-guide.md): %w",
			bin, st.Uid, fileMode(fi), errdefs.ErrDenied)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(bin, &fs); err == nil && fs.Flags&unix.ST_NOSUID != 0 {
		return "", fmt.Errorf("the starter %s lies on a filesystem mounted nosuid, so its setuid bit has no effect: "+
			"an admin must install kerr elsewhere or remount (see docs/admin-guide.md): %w", bin, errdefs.ErrDenied)
	}
	return bin, nil
}

// fileMode is the permission bits with setuid, setgid and sticky in their octal places.
func fileMode(fi os.FileInfo) uint32 {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&os.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fi.Mode()&os.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// Exec replaces kerr with the starter bin, handing it config on an inherited fd: a sealed
// memfd holding config at offset 0, named by `--config-fd N`. The memfd keeps the number the
// kernel gave it rather than being moved onto fd 3: fd 3 is usually the Go runtime's own
// (its netpoller's epoll fd), and replacing that under a running runtime can crash it before
// the exec. Every other fd kerr holds is close-on-exec (Go opens all its fds so), and the
// starter closes anything else it finds. The environment is passed unchanged (a setuid
// starter wipes it; the container's comes from the config).
//
// On success Exec does not return. It returns an error when the memfd cannot be made or the
// exec fails; kerr is then still running and reports it. Privileges: the caller's.
func Exec(bin string, config []byte) error {
	fd, err := configMemfd(config)
	if err != nil {
		return err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		unix.Close(fd)
		return fmt.Errorf("config memfd: clear close-on-exec: %w", err)
	}
	argv := []string{bin, "--config-fd", strconv.Itoa(fd)}
	err = syscall.Exec(bin, argv, os.Environ())
	unix.Close(fd)
	return fmt.Errorf("exec the starter %s: %w", bin, err)
}

// configMemfd returns a close-on-exec memfd holding data, sealed against writes, growth and
// shrinking (and further seal changes), positioned at offset 0.
func configMemfd(data []byte) (int, error) {
	fd, err := unix.MemfdCreate("kerr-config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("config memfd: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("config memfd: %s: %w", what, err)
	}
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fail("write", errdefs.ClassifyIO(err))
		}
		rest = rest[n:]
	}
	seals := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail("seal", err)
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return fail("rewind", err)
	}
	return fd, nil
}
