package rootfs

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

// Privileges, for every function in this file: root in the container's mount namespace
// (CAP_SYS_ADMIN over it, CAP_SYS_CHROOT for NoPivot).

// prepareRoot sets the propagation of / (linux.rootfsPropagation, rslave by default, so
// that the mounts made here do not reach the host while host mounts still reach the
// container), makes sure the mount holding the rootfs is neither shared (pivot_root refuses
// a shared parent, and a shared one would carry the container's mounts to its peers) nor
// unbindable (the rootfs could not be bound), and binds the rootfs onto itself,
// recursively, so that it is a mount of its own.
func (s *setup) prepareRoot() error {
	prop, rec := uint64(unix.MS_SLAVE), true
	if l := s.spec.Linux; l != nil && l.RootfsPropagation != "" {
		f := propagationFlags[l.RootfsPropagation]
		prop, rec = f.prop, f.rec
	}
	flags := uint(0)
	if rec {
		flags = unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", flags, &unix.MountAttr{Propagation: prop}); err != nil {
		return fmt.Errorf("set propagation of / to %s: %w", propName(prop, rec), err)
	}
	dirfd, err := unix.Open(s.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", s.root, err)
	}
	defer closeFd(dirfd)
	if err := unshareMountOf(dirfd, s.root); err != nil {
		return err
	}
	mfd, err := cloneTree(dirfd, "", true)
	if err != nil {
		return fmt.Errorf("bind rootfs %s onto itself: %w", s.root, err)
	}
	if err := attach(mfd, dirfd); err != nil {
		closeFd(mfd)
		return fmt.Errorf("bind rootfs %s onto itself: %w", s.root, err)
	}
	// The fd of the clone is now the root of the rootfs mount: everything below is
	// resolved from it.
	s.rootfd = mfd
	return nil
}

// unshareMountOf makes the mount that fd (at path) is on private when it is shared or
// unbindable.
func unshareMountOf(fd int, path string) error {
	id, err := mountID(fd)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", path, err)
	}
	mountpoint, fix, err := sharedOrUnbindable(id)
	if err != nil || !fix {
		return err
	}
	mfd, err := unix.Open(mountpoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s, the mount holding the rootfs: %w", mountpoint, err)
	}
	defer closeFd(mfd)
	if got, err := mountID(mfd); err != nil || got != id {
		return fmt.Errorf("open %s, the mount holding the rootfs: something is mounted over it", mountpoint)
	}
	if err := setPropagation(mfd, unix.MS_PRIVATE, false); err != nil {
		return fmt.Errorf("%s, the mount holding the rootfs: %w", mountpoint, err)
	}
	return nil
}

// mountID is the id of the mount fd is on (the top one at a mount point).
func mountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, fmt.Errorf("statx: %w", err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("statx gave no mount id")
	}
	return stx.Mnt_id, nil
}

// sharedOrUnbindable finds mount id in this thread's mount table: its mount point and
// whether it is in a peer group or unbindable (the optional fields "shared:N",
// "unbindable").
func sharedOrUnbindable(id uint64) (string, bool, error) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("read mount table: %w", err)
	}
	prefix := strconv.FormatUint(id, 10) + " "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ms, err := parseMountLine(line)
		if err != nil {
			return "", false, err
		}
		fix := false
		fields := strings.Fields(line)
		if len(fields) < 7 {
			return "", false, fmt.Errorf("parse mount table line %q: too short", line)
		}
		for _, f := range fields[6:] {
			if f == "-" {
				break
			}
			fix = fix || strings.HasPrefix(f, "shared:") || f == "unbindable"
		}
		return ms, fix, nil
	}
	return "", false, fmt.Errorf("mount %d is not in the mount table", id)
}

func parseMountLine(line string) (string, error) {
	ms, err := mountinfo.Parse([]byte(line + "\n"))
	if err != nil || len(ms) != 1 {
		return "", fmt.Errorf("parse mount table line %q: %v", line, err)
	}
	return ms[0].Mountpoint, nil
}

// enterRoot makes the rootfs the process's root and "/" its working directory.
func (s *setup) enterRoot() error {
	var err error
	switch {
	case s.c.NoMountNS:
		err = s.chrootRoot()
	case s.c.NoPivot:
		err = s.moveRoot()
	default:
		err = s.pivotRoot()
	}
	if err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// As runc does, the container's / gets the spec's propagation too.
	if l := s.spec.Linux; l != nil && l.RootfsPropagation != "" {
		f := propagationFlags[l.RootfsPropagation]
		fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /: %w", err)
		}
		defer closeFd(fd)
		if err := setPropagation(fd, f.prop, f.rec); err != nil {
			return fmt.Errorf("container's /: %w", err)
		}
	}
	return nil
}

// pivotRoot uses pivot_root(".", "."), as runc does: with the rootfs as working directory
// the old root ends up mounted on top of it, with no put_old directory needed, and is then
// detached.
func (s *setup) pivotRoot() error {
	oldroot, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the old root: %w", err)
	}
	defer closeFd(oldroot)
	if err := unix.Fchdir(s.rootfd); err != nil {
		return fmt.Errorf("chdir to the rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// A slave first, so that unmounting it does not propagate the unmount to the host.
	if err := setPropagation(oldroot, unix.MS_SLAVE, true); err != nil {
		return fmt.Errorf("old root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir to the old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return nil
}

// chrootRoot (NoMountNS) enters the rootfs with chroot only: the mount namespace is the
// host's, and its root must stay everyone else's. It is the weakest way in: the mounts
// made for the container stay in the host's namespace too.
func (s *setup) chrootRoot() error {
	if err := unix.Fchdir(s.rootfd); err != nil {
		return fmt.Errorf("chdir to the rootfs: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot to the rootfs: %w", err)
	}
	return nil
}

// moveRoot (NoPivot) moves the rootfs mount onto / and chroots into it. The old root stays
// in the mount namespace below the new one. Its proc and sysfs mounts are detached first
// (covered with an empty tmpfs where a user namespace may not detach them): the kernel lets
// a user namespace mount a new proc or sysfs only when a fully visible one exists in the
// mount namespace, and hidden host ones would count.
func (s *setup) moveRoot() error {
	if err := s.hideHostProcSys(); err != nil {
		return err
	}
	if err := unix.Fchdir(s.rootfd); err != nil {
		return fmt.Errorf("chdir to the rootfs: %w", err)
	}
	// A shared / would carry the rootfs to the host's / when it is moved there.
	rootfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer closeFd(rootfd)
	if err := setPropagation(rootfd, unix.MS_PRIVATE, false); err != nil {
		return fmt.Errorf("old root: %w", err)
	}
	if err := unix.MoveMount(s.rootfd, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move the rootfs onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot to the rootfs: %w", err)
	}
	return nil
}

// hideHostProcSys detaches (or covers) the proc and sysfs mounts outside the rootfs.
func (s *setup) hideHostProcSys() error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	var paths []string
	for _, m := range mounts {
		if m.FSType != "proc" && m.FSType != "sysfs" {
			continue
		}
		if m.Mountpoint == s.root || strings.HasPrefix(m.Mountpoint, s.root+"/") {
			continue
		}
		paths = append(paths, m.Mountpoint)
	}
	// Deepest first: detaching a parent takes its children along.
	sort.Slice(paths, func(i, j int) bool { return strings.Count(paths[i], "/") > strings.Count(paths[j], "/") })
	for _, p := range paths {
		if err := hideMount(p); err != nil {
			return err
		}
	}
	return nil
}

func hideMount(p string) error {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // went with a parent
	}
	if err != nil {
		return fmt.Errorf("open host mount %s: %w", p, err)
	}
	defer closeFd(fd)
	if err := setPropagation(fd, unix.MS_SLAVE, true); err != nil {
		return fmt.Errorf("host mount %s: %w", p, err)
	}
	err = unix.Unmount(p, unix.MNT_DETACH)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("detach host mount %s: %w", p, err)
	}
	// Locked in a user namespace: cover it.
	mfd, err := newFS("tmpfs", "tmpfs", []string{"ro"}, nil, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return fmt.Errorf("cover host mount %s: %w", p, err)
	}
	defer closeFd(mfd)
	if err := attach(mfd, fd); err != nil {
		return fmt.Errorf("cover host mount %s: %w", p, err)
	}
	return nil
}
