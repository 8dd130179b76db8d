package native

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// squashfuseDirs are where the squashfuse program is looked for: system directories only,
// as root starts it (with the caller's ids).
var squashfuseDirs = []string{"/usr/bin", "/usr/local/bin", "/bin"}

// findSquashfuse returns a squashfuse that only root can have put there.
func findSquashfuse(userns bool) (string, error) {
	return findTool("squashfuse", "images.kernel_squashfs sends this image through squashfuse", userns)
}

// findTool returns the system's program name, which root will start with the caller's ids.
func findTool(name, why string, userns bool) (string, error) {
	for _, d := range squashfuseDirs {
		p := d + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		// In a user namespace root is not mapped: its files show the overflow uid.
		if (st.Uid != 0 && !(userns && st.Uid == overflowUID())) || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return "", fmt.Errorf("%s is not root-owned and write-protected: not run", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("%s, and no %s is installed (Debian: apt-get install %s): %w", why, name, name, errdefs.ErrUnavailable)
}

// squashfuse mounts the image's squashfs at lower through FUSE: root mounts a fuse
// filesystem on a /dev/fuse fd, and squashfuse, started with the caller's ids and no
// privileges, serves it from the image fd stage 1 opened. The image's bytes thus never
// reach the kernel's squashfs code. Privileges: root (mount); the server runs as the caller.
func (c *container) squashfuse(image *os.File, lower string) error {
	return c.fuseServe(func() (string, error) { return findSquashfuse(c.plan.UserNS) }, lower, "fuse.squashfuse", unix.MS_RDONLY,
		[]string{"squashfuse", "-f", "-o", "offset=" + strconv.FormatInt(c.plan.Image.Offset, 10), "/dev/fd/3", "/dev/fd/4"}, image)
}

// fuseOverlay mounts the container's root at target as fuse-overlayfs, run with the
// caller's ids: lower (the image with its mount points) under the caller's --overlay
// directory's upper/. Privileges: root
// (mount); the server runs as the caller, so everything it writes is the caller's doing.
func (c *container) fuseOverlay(lower, target string) error {
	find := func() (string, error) {
		return findTool("fuse-overlayfs", "--overlay is served by fuse-overlayfs", c.plan.UserNS)
	}
	// xattr_permissions=2: the owners and modes fuse-overlayfs cannot give files as the
	// caller (copies of root's directories) are kept in user.* xattrs instead.
	opts := "lowerdir=" + lower + ",upperdir=" + filepath.Join(c.plan.Overlay, "upper") + ",workdir=" + filepath.Join(c.plan.Overlay, "work") + ",xattr_permissions=2"
	return c.fuseServe(find, target, "fuse.fuse-overlayfs", 0, []string{"fuse-overlayfs", "-f", "-o", opts, "/dev/fd/3"}, nil)
}

// fuseServe mounts a fuse filesystem at target on a /dev/fuse fd and starts its server
// (argv; the fuse fd is its last /dev/fd, after extra) with the caller's ids.
func (c *container) fuseServe(find func() (string, error), target, fstype string, flags uintptr, argv []string, extra *os.File) error {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if c.plan.UserNS && errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("without setuid a SIF needs FUSE, and this host's /dev/fuse is not open to users (%v): ask the admin, or run a sandbox made with 'kerr build --sandbox': %w", err, errdefs.ErrDenied)
		}
		return fmt.Errorf("open /dev/fuse: %w", err)
	}
	defer dev.Close()
	bin, err := find()
	if err != nil {
		return err
	}
	u := c.plan.Caller
	// allow_other: overlayfs reads the lower layer with the mounter's (root's) credentials;
	// the mount exists only in this container's mount namespace.
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,allow_other,default_permissions", dev.Fd(), u.UID, u.GID)
	if err := unix.Mount(argv[0], target, fstype, flags|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount %s: %w", fstype, err)
	}
	files := []*os.File{dev}
	if extra != nil {
		files = []*os.File{extra, dev}
	}
	groups := make([]uint32, len(u.Groups))
	copy(groups, u.Groups)
	cmd := &exec.Cmd{
		Path: bin,
		// libfuse takes /dev/fd/N as a mount point to be an open, mounted /dev/fuse.
		Args:       argv,
		Env:        []string{"PATH=/usr/bin:/bin"},
		ExtraFiles: files,
		Stderr:     os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: groups},
			Setsid:     true,
		},
	}
	if c.plan.UserNS {
		// Already the caller (mapped to themselves), whose groups cannot change here; the
		// exec of an ordinary program drops the namespace's capabilities.
		cmd.SysProcAttr.Credential = nil
	}
	if !hasNS(c.plan, "pid") {
		// Without a pid namespace nothing else ends it: it dies with this thread, which
		// becomes the payload. In a pid namespace (an instance's included) it ends with the
		// namespace's init, as every process there does, and outlives a startscript.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	// Not waited for: it lives as long as the container (the payload will be its parent).
	_ = cmd.Process.Release()
	return nil
}

// overflowUID is the uid that unmapped owners show in a user namespace (65534 unless the
// admin changed it); outside one, no file has it as its real owner by kerr's doing.
func overflowUID() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 65534
	}
	return uint32(n)
}
