package native

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// squashfuseDirs are where the squashfuse program is looked for: system directories only,
// as root starts it (with the caller's ids).
var squashfuseDirs = []string{"/usr/bin", "/usr/local/bin", "/bin"}

// findSquashfuse returns a squashfuse that only root can have put there.
func findSquashfuse() (string, error) {
	for _, d := range squashfuseDirs {
		p := d + "/squashfuse"
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		if st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return "", fmt.Errorf("%s is not root-owned and write-protected: not run", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("images.kernel_squashfs sends this image through squashfuse, and none is installed (Debian: apt-get install squashfuse): %w", errdefs.ErrUnavailable)
}

// squashfuse mounts the image's squashfs at lower through FUSE: root mounts a fuse
// filesystem on a /dev/fuse fd, and squashfuse, started with the caller's ids and no
// privileges, serves it from the image fd stage 1 opened. The image's bytes thus never
// reach the kernel's squashfs code. Privileges: root (mount); the server runs as the caller.
func (c *container) squashfuse(image *os.File, lower string) error {
	bin, err := findSquashfuse()
	if err != nil {
		return err
	}
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/fuse: %w", err)
	}
	defer dev.Close()
	u := c.plan.Caller
	// allow_other: overlayfs reads the lower layer with the mounter's (root's) credentials;
	// the mount exists only in this container's mount namespace.
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,allow_other,default_permissions", dev.Fd(), u.UID, u.GID)
	if err := unix.Mount("squashfuse", lower, "fuse.squashfuse", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount fuse: %w", err)
	}
	groups := make([]uint32, len(u.Groups))
	copy(groups, u.Groups)
	cmd := &exec.Cmd{
		Path: bin,
		// libfuse takes /dev/fd/N as a mount point to be an open, mounted /dev/fuse.
		Args:       []string{"squashfuse", "-f", "-o", "offset=" + strconv.FormatInt(c.plan.Image.Offset, 10), "/dev/fd/3", "/dev/fd/4"},
		Env:        []string{"PATH=/usr/bin:/bin"},
		ExtraFiles: []*os.File{image, dev},
		Stderr:     os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: groups},
			Setsid:     true,
		},
	}
	if !hasNS(c.plan, "pid") {
		// Without a pid namespace nothing else ends it: it dies with this thread, which
		// becomes the payload. In a pid namespace (an instance's included) it ends with the
		// namespace's init, as every process there does, and outlives a startscript.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start squashfuse: %w", err)
	}
	// Not waited for: it lives as long as the container (the payload will be its parent).
	_ = cmd.Process.Release()
	return nil
}
