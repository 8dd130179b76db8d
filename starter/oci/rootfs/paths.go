package rootfs

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// These run after pivot_root, on paths of the container: they are resolved from the new /
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), so a symlink cannot lead out of the
// container nor through a /proc magic link, and the mount goes onto the opened fd. A path
// that does not exist is skipped, as the runtime spec intends (a masked /proc/acpi on a
// host without ACPI).

// openInContainer opens p inside the current root as an O_PATH fd; ok is false when p does
// not exist.
func openInContainer(p string) (fd int, ok bool, err error) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("open /: %w", err)
	}
	defer closeFd(root)
	for {
		fd, err = unix.Openat2(root, p, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOENT) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, true, nil
}

// readonlyPath makes p read-only: a recursive bind of p onto itself, read-only all the way
// down (mount_setattr keeps every other flag, locked or not, as it was).
//
// Privileges: root in the container's mount namespace, after pivot_root.
func readonlyPath(p string) error {
	fd, ok, err := openInContainer(p)
	if err != nil || !ok {
		return err
	}
	t := &target{fd: fd, rel: strings.TrimPrefix(p, "/")}
	defer t.close()
	var opts mountOptions
	opts.rattrs.add(unix.MOUNT_ATTR_RDONLY, 0)
	if err := bindFd(fd, t, true, opts); err != nil {
		return fmt.Errorf("bind %s read-only: %w", p, err)
	}
	return nil
}

// maskPath hides p: a directory under an empty read-only tmpfs, anything else under
// nullMount, a detached bind of the host's null device made and checked before pivot_root
// (never the container's /dev/null, which the image may have made a symlink:
// CVE-2025-31133).
//
// Privileges: root in the container's mount namespace, after pivot_root.
func maskPath(p string, nullMount int) error {
	fd, ok, err := openInContainer(p)
	if err != nil || !ok {
		return err
	}
	t := &target{fd: fd, rel: strings.TrimPrefix(p, "/")}
	defer t.close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := attach(nullMount, fd); err != nil {
			return fmt.Errorf("mask %s with /dev/null: %w", p, err)
		}
		return nil
	}
	mfd, err := newFS("tmpfs", "tmpfs", []string{"ro"}, nil,
		unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	defer closeFd(mfd)
	if err := attach(mfd, fd); err != nil {
		return fmt.Errorf("mask %s with a tmpfs: %w", p, err)
	}
	return nil
}

// rootReadonly makes the container's / read-only (that mount only: the spec's mounts keep
// their own flags, as with runc).
//
// Privileges: root in the container's mount namespace, after pivot_root.
func rootReadonly() error {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer closeFd(fd)
	return setAttrs(fd, false, attrChange{set: unix.MOUNT_ATTR_RDONLY})
}
