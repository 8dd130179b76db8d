package rootfs

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// procRootIno is the inode number of every procfs root (PROC_ROOT_INO).
const procRootIno = 1

// WriteSysctls writes linux.sysctl, each key as /proc/sys/<key with dots as slashes>, in
// key order. CVE-2025-52881: a write meant for /proc/sys must not be redirected elsewhere
// by what is mounted in the container (a bind over /proc/sys/kernel/x, a fake /proc). So
// /proc is opened and checked to be the root of a real procfs (statfs magic and root inode),
// a non-recursive copy of that mount is taken (open_tree without AT_RECURSIVE: nothing
// mounted on top of anything below /proc comes along, the read-only bind of /proc/sys that
// linux.readonlyPaths usually makes included), and each file is opened from that copy with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_XDEV|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) and
// checked to be on procfs before the value is written.
//
// Keys are checked to be sysctl names (dot-separated, no empty part, no "/", no ".."),
// never paths. Which keys a container may set is the engine's decision, not this
// function's: in particular the engine must refuse net.* when the container shares the
// host's network namespace, and kernel.* ones that are not namespaced.
//
// Privileges: root in the container's namespaces (the values land in the namespaces of the
// calling thread: its IPC namespace for kernel.shm*, its network namespace for net.*),
// after Setup; needs the container's /proc mounted.
func WriteSysctls(sysctl map[string]string) error {
	if len(sysctl) == 0 {
		return nil
	}
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		if err := checkSysctlName(k); err != nil {
			return fmt.Errorf("sysctl %q: %w", k, err)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	proc, err := openProcCopy()
	if err != nil {
		return fmt.Errorf("sysctl: %w", err)
	}
	defer closeFd(proc)
	for _, k := range keys {
		if err := writeSysctl(proc, k, sysctl[k]); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	return nil
}

// openProcCopy checks /proc and returns a detached, non-recursive copy of its mount.
func openProcCopy() (int, error) {
	fd, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /proc: %w", err)
	}
	defer closeFd(fd)
	if err := checkProcRoot(fd); err != nil {
		return -1, fmt.Errorf("/proc: %w", err)
	}
	cp, err := cloneTree(fd, "", false)
	if err != nil {
		return -1, fmt.Errorf("copy the /proc mount: %w", err)
	}
	if err := checkProcRoot(cp); err != nil {
		closeFd(cp)
		return -1, fmt.Errorf("copy of /proc: %w", err)
	}
	return cp, nil
}

func checkProcRoot(fd int) error {
	if err := checkOnProc(fd); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Ino != procRootIno {
		return errors.New("not the root of a procfs (something is mounted over /proc)")
	}
	return nil
}

func checkOnProc(fd int) error {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("not on procfs (filesystem magic %#x)", sfs.Type)
	}
	return nil
}

func writeSysctl(proc int, key, value string) error {
	rel := "sys/" + strings.ReplaceAll(key, ".", "/")
	var fd int
	var err error
	for {
		fd, err = unix.Openat2(proc, rel, &unix.OpenHow{
			Flags: unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS |
				unix.RESOLVE_NO_MAGICLINKS,
		})
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("open /proc/%s: %w", rel, err)
	}
	defer closeFd(fd)
	if err := checkOnProc(fd); err != nil {
		return fmt.Errorf("/proc/%s: %w", rel, err)
	}
	n, err := unix.Write(fd, []byte(value))
	if err != nil {
		return fmt.Errorf("write /proc/%s: %w", rel, err)
	}
	if n != len(value) {
		return fmt.Errorf("write /proc/%s: short write (%d of %d bytes)", rel, n, len(value))
	}
	return nil
}

// checkSysctlName accepts dot-separated names whose parts are not empty and hold no "/",
// whitespace or control characters: the name becomes a path below /proc/sys and must stay
// one. (A network interface name with a dot cannot be given; sysctl(8) would spell it
// with a "/", which a path cannot take.)
func checkSysctlName(k string) error {
	if k == "" {
		return errors.New("empty name")
	}
	for _, part := range strings.Split(k, ".") {
		if part == "" {
			return errors.New("not a sysctl name (empty part, \"..\" or a dot at an end)")
		}
	}
	for _, r := range k {
		if r == '/' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("not a sysctl name (%q is not allowed)", r)
		}
	}
	return nil
}
