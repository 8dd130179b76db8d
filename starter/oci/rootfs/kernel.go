package rootfs

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Privileges, for every function in this file: root in the container's mount namespace
// (CAP_SYS_ADMIN over it, in its user namespace); none changes ids or capabilities.
//
// Thin wrappers of the new mount API (Linux 5.2: open_tree, move_mount, fsopen, fsconfig,
// fsmount, fspick; 5.12: mount_setattr). Everything is done on fds: a mount is built
// detached, given its attributes, then moved onto an fd of its mount point. No path is
// resolved twice and nothing needs /proc, so the same code works before and after
// pivot_root.

// cloneTree makes a detached copy of the mount at fd (the fd's own mount when path is ""),
// with everything mounted below it when recursive (rbind).
func cloneTree(dirfd int, path string, recursive bool) (int, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if path == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(dirfd, path, flags)
	if err != nil {
		return -1, fmt.Errorf("open_tree: %w", err)
	}
	return fd, nil
}

// attach moves the detached (or attached) mount mfd onto the mount point fd to.
func attach(mfd, to int) error {
	if err := unix.MoveMount(mfd, "", to, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// setAttrs changes the attributes of the mount at fd (it must be a mount's root), of every
// mount below it too when recursive.
func setAttrs(fd int, recursive bool, a attrChange) error {
	if a.empty() {
		return nil
	}
	if err := unix.MountSetattr(fd, "", atFlags(recursive), a.setattr()); err != nil {
		return fmt.Errorf("mount_setattr %s: %w", describeAttrs(a), lockedHint(err))
	}
	return nil
}

// setPropagation sets the propagation type (MS_SHARED, …) of the mount at fd.
func setPropagation(fd int, prop uint64, recursive bool) error {
	if prop == 0 {
		return nil
	}
	if err := unix.MountSetattr(fd, "", atFlags(recursive), &unix.MountAttr{Propagation: prop}); err != nil {
		return fmt.Errorf("set propagation %s: %w", propName(prop, recursive), err)
	}
	return nil
}

func atFlags(recursive bool) uint {
	f := uint(unix.AT_EMPTY_PATH)
	if recursive {
		f |= unix.AT_RECURSIVE
	}
	return f
}

// lockedHint explains the EPERM of clearing a flag that a more privileged mount namespace
// locked (a user namespace cannot make a nosuid or read-only host mount less strict).
func lockedHint(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (a flag of the source mount is locked: a user namespace cannot clear it)", err)
	}
	return err
}

func describeAttrs(a attrChange) string {
	names := []struct {
		bit  uint64
		name string
	}{
		{unix.MOUNT_ATTR_RDONLY, "ro"}, {unix.MOUNT_ATTR_NOSUID, "nosuid"},
		{unix.MOUNT_ATTR_NODEV, "nodev"}, {unix.MOUNT_ATTR_NOEXEC, "noexec"},
		{unix.MOUNT_ATTR_NODIRATIME, "nodiratime"}, {unix.MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow"},
	}
	var l []string
	for _, n := range names {
		switch {
		case a.set&n.bit != 0:
			l = append(l, "+"+n.name)
		case a.clr&n.bit != 0:
			l = append(l, "-"+n.name)
		}
	}
	if a.clr&unix.MOUNT_ATTR__ATIME != 0 {
		switch a.set & unix.MOUNT_ATTR__ATIME {
		case unix.MOUNT_ATTR_NOATIME:
			l = append(l, "noatime")
		case unix.MOUNT_ATTR_STRICTATIME:
			l = append(l, "strictatime")
		default:
			l = append(l, "relatime")
		}
	}
	return strings.Join(l, ",")
}

func propName(prop uint64, recursive bool) string {
	n := map[uint64]string{unix.MS_SHARED: "shared", unix.MS_SLAVE: "slave",
		unix.MS_PRIVATE: "private", unix.MS_UNBINDABLE: "unbindable"}[prop]
	if recursive {
		return "r" + n
	}
	return n
}

// newFS makes a new, detached mount of a filesystem of type fstype: source (when not
// empty), the superblock flags (ro, sync, …) and the data options are given to fsconfig(2)
// one by one, then the mount gets the per-mount attributes attrs. The kernel's own message
// about a refused option is added to the error.
func newFS(fstype, source string, sbFlags, data []string, attrs uint64) (int, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENODEV) {
			return -1, fmt.Errorf("fsopen %s: unknown filesystem type: %w", fstype, err)
		}
		return -1, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	defer closeFd(fsfd)
	if source != "" {
		if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
			return -1, fsError(fsfd, "fsconfig source="+source, err)
		}
	}
	if err := configure(fsfd, append(append([]string(nil), sbFlags...), data...)); err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fsError(fsfd, "create "+fstype+" filesystem", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs))
	if err != nil {
		return -1, fsError(fsfd, "fsmount", lockedHint(err))
	}
	return mfd, nil
}

// configure passes options to an fs context: key=value as a string, a bare key as a flag.
func configure(fsfd int, opts []string) error {
	for _, o := range opts {
		var err error
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fsfd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fsfd, o)
		}
		if err != nil {
			return fsError(fsfd, fmt.Sprintf("option %q", o), err)
		}
	}
	return nil
}

// reconfigure changes the filesystem of the mount at fd (remount): options as configure
// takes them.
func reconfigure(fd int, opts []string) error {
	fsfd, err := unix.Fspick(fd, "", unix.FSPICK_EMPTY_PATH|unix.FSPICK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fspick: %w", err)
	}
	defer closeFd(fsfd)
	if err := configure(fsfd, opts); err != nil {
		return err
	}
	if err := unix.FsconfigReconfigure(fsfd); err != nil {
		return fsError(fsfd, "reconfigure", err)
	}
	return nil
}

// fsError wraps err with the messages the kernel logged on the fs context, if any.
func fsError(fsfd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 512)
	for range 8 {
		n, rerr := unix.Read(fsfd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		m := strings.TrimSpace(string(buf[:n]))
		if len(m) > 2 && m[1] == ' ' {
			m = m[2:] // drop the "e "/"w "/"i " level prefix
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s: %w (kernel: %s)", what, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s: %w", what, err)
}
