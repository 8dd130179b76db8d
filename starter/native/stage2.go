package native

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/policy"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/starter/loopdev"
)

// Privileges, for everything in this file: root (real, effective and saved uid 0), in the
// mount namespace (and others) C made for this container from stage 1's plan; the caller
// can neither signal nor trace this process. Nothing here opens a path the caller named:
// the caller's paths arrive as fds stage 1 opened with the caller's rights; paths inside
// the container are resolved inside its root, so the image's symlinks stay inside.

// stage2 builds the container from the plan and execs the payload.
func (e Engine) stage2(env *envelope.Envelope) error {
	files := make([]*os.File, len(e.PassedFDs))
	for i, fd := range e.PassedFDs {
		files[i] = os.NewFile(uintptr(fd), "passed fd "+strconv.Itoa(i))
	}
	p, err := decodePlan(env, len(files))
	if err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(os.Stderr, "WARNING: %s\n", w)
	}
	c := &container{plan: p, files: files, readyFD: e.ReadyFD, cacheFD: -1, sessionDir: filepath.Join(e.LocalstateDir, "lib", "kerr", "mnt", "session")}
	if (p.Join != nil) != e.Joined {
		return fmt.Errorf("%w: the plan and stage 0 disagree on joining an instance", envelope.ErrInvalid)
	}
	if p.Join == nil {
		c.loadFilterCache()
		c.openFilterCache()
		if err := c.build(); err != nil {
			return err
		}
	}
	return c.exec()
}

// container is the container being built in the session tmpfs.
type container struct {
	plan       *Plan
	files      []*os.File
	sessionDir string
	root       *os.File // the overlay, the container's /
	rootPath   string
	// readyFD: an instance's stage 2 says here that it is about to exec (-1 otherwise).
	readyFD int
	// The compiled seccomp profile's key, what an earlier start kept of it (cached), and
	// the directory to keep this one in (cacheFD, -1 for none): see payload.go.
	cacheKey string
	cached   []byte
	cacheFD  int
}

// ready tells C that the instance is up: its startscript is exec'd next.
func (c *container) ready() {
	if c.readyFD >= 0 {
		_, _ = unix.Write(c.readyFD, []byte{readyByte})
		_ = unix.Close(c.readyFD)
		c.readyFD = -1
	}
}

func (c *container) build() error {
	p := c.plan
	// Nothing mounted here propagates back to the host; the host's later mounts still
	// reach the container (a scratch filesystem mounted during a job).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := c.session(); err != nil {
		return err
	}
	if err := c.image(); err != nil {
		return err
	}
	if err := c.systemMounts(); err != nil {
		return err
	}
	if err := c.identityFiles(); err != nil {
		return err
	}
	for _, t := range p.Tmpfs {
		if err := c.tmpfs(t); err != nil {
			return err
		}
	}
	for _, b := range p.Binds {
		if err := c.bind(b); err != nil {
			return err
		}
	}
	if !p.WritableTmpfs && p.Overlay == "" {
		if err := unix.MountSetattr(int(c.root.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make the root filesystem read-only: %w", err)
		}
	}
	if err := c.namespaces(); err != nil {
		return err
	}
	return c.pivot()
}

// session mounts the tmpfs that holds this container's writable layer and generated
// files; it goes with the mount namespace.
func (c *container) session() error {
	if err := os.MkdirAll(c.sessionDir, 0o755); err != nil {
		return fmt.Errorf("session dir %s (make install creates it): %w", c.sessionDir, err)
	}
	opts := fmt.Sprintf("size=%d,mode=0755", c.plan.SessionSize)
	if err := unix.Mount("tmpfs", c.sessionDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("session tmpfs at %s: %w", c.sessionDir, err)
	}
	for _, d := range []string{"lower", "upper", "work", "root", "files"} {
		if err := os.Mkdir(filepath.Join(c.sessionDir, d), 0o755); err != nil {
			return fmt.Errorf("session: %w", err)
		}
	}
	return nil
}

// image mounts the image read-only at lower (squashfs on a loop device, or the sandbox
// directory) and an overlay on it at root, whose upper layer in the session tmpfs takes the
// mount points (and, with --writable-tmpfs, the payload's writes).
func (c *container) image() error {
	img := c.plan.Image
	lower := filepath.Join(c.sessionDir, "lower")
	f := c.files[img.FD]
	switch {
	case img.Format == policy.FormatSIF && img.FUSE:
		if err := c.squashfuse(f, lower); err != nil {
			return fmt.Errorf("image %s: %w", img.Path, err)
		}
	case img.Format == policy.FormatSIF && c.plan.UserNS:
		// Never reached (the policy sends a SIF in a user namespace through FUSE): a user
		// namespace gets no loop device and no kernel squashfs.
		return fmt.Errorf("image %s: a user namespace mounts a SIF with squashfuse only: %w", img.Path, errdefs.ErrDenied)
	case img.Format == policy.FormatSIF:
		attach := loopdev.AttachOwn
		if img.SharedLoop {
			attach = loopdev.Attach
		}
		dev, err := attach(f, loopdev.Span{Offset: img.Offset, Size: img.Size})
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Path, err)
		}
		defer dev.Close()
		if img.MaxLoop > 0 && dev.Number >= img.MaxLoop {
			return fmt.Errorf("image %s: loop device %s is beyond images.max_loop_devices (%d): %w", img.Path, dev.Path, img.MaxLoop, errdefs.ErrUnavailable)
		}
		if err := unix.Mount(dev.Path, lower, "squashfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return fmt.Errorf("image %s: mount its squashfs (%s): %v: %w", img.Path, dev.Path, err, errdefs.ErrInvalidImage)
		}
	case img.Format == policy.FormatSandbox:
		nf, err := inThisNamespace(f, "image "+img.Path)
		if err != nil {
			return err
		}
		defer nf.Close()
		if err := moveTree(nf, lower, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, "", nil); err != nil {
			return fmt.Errorf("image %s: %w", img.Path, err)
		}
	default:
		return fmt.Errorf("%w: image format %q", envelope.ErrInvalid, img.Format)
	}
	c.rootPath = filepath.Join(c.sessionDir, "root")
	opts := "lowerdir=" + lower + ",upperdir=" + filepath.Join(c.sessionDir, "upper") + ",workdir=" + filepath.Join(c.sessionDir, "work")
	if err := unix.Mount("overlay", c.rootPath, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("overlay on the image: %w", err)
	}
	if err := c.openRoot(); err != nil {
		return err
	}
	if c.plan.Overlay == "" {
		return nil
	}
	// --overlay: the caller's layer goes on top, served by fuse-overlayfs as the caller,
	// which cannot make root's directories; so every mount point is made first, below it.
	if err := c.premake(); err != nil {
		return err
	}
	final := filepath.Join(c.sessionDir, "final")
	if err := os.Mkdir(final, 0o755); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	c.root.Close()
	if err := c.fuseOverlay(c.rootPath, final); err != nil {
		return err
	}
	c.rootPath = final
	return c.openRoot()
}

// premake makes the mount points the plan will need in the container's root.
func (c *container) premake() error {
	p := c.plan
	type point struct {
		dest string
		file bool
	}
	var points []point
	for _, d := range []struct {
		on   bool
		dest string
	}{{p.Proc, "/proc"}, {p.Sys, "/sys"}, {p.Dev != policy.DevNo, "/dev"}} {
		if d.on {
			points = append(points, point{d.dest, false})
		}
	}
	host := append([]string(nil), p.SystemBinds...)
	if p.ResolvConf {
		host = append(host, "/etc/resolv.conf")
	}
	for _, h := range host {
		if st, err := os.Stat(h); err == nil {
			points = append(points, point{h, !st.IsDir()})
		}
	}
	for _, t := range p.Tmpfs {
		points = append(points, point{t.Dest, false})
	}
	for _, b := range p.Binds {
		var st unix.Stat_t
		if err := unix.Fstat(int(c.files[b.FD].Fd()), &st); err != nil {
			return fmt.Errorf("%s %s: %w", b.What, b.Source, err)
		}
		points = append(points, point{b.Dest, st.Mode&unix.S_IFMT != unix.S_IFDIR})
	}
	for _, pt := range points {
		t, err := c.target(pt.dest, pt.file)
		if err != nil {
			return err
		}
		t.Close()
	}
	return nil
}

// openRoot opens the container's root, once mounted.
func (c *container) openRoot() error {
	root, err := os.OpenFile(c.rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's root: %w", err)
	}
	c.root = root
	return nil
}

// inThisNamespace reopens f, which stage 1 opened in the host's mount namespace, in this
// one: a mount can only be cloned from the namespace it is in. The path is the one the
// kernel resolved for stage 1 (symlink-free), reopened without following any symlink, and
// it must be the very same file (device and inode), else the caller moved something in
// between and the run stops. Stage 1's fd stays the proof of the caller's access.
func inThisNamespace(f *os.File, what string) (*os.File, error) {
	var want, got unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &want); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%s: cannot name it in the container's namespace (%q, %v)", what, path, err)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: reopen %s: %w (was it moved?)", what, path, err)
	}
	nf := os.NewFile(uintptr(fd), path)
	if err := unix.Fstat(fd, &got); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
		nf.Close()
		return nil, fmt.Errorf("%s: %s changed while the container was being set up: %w", what, path, errdefs.ErrDenied)
	}
	return nf, nil
}

// moveTree clones the mount tree at src (an fd), sets attrs on all of it, and moves it onto
// dest, a host path (destFD nil) or an fd.
func moveTree(src *os.File, dest string, attrs uint64, what string, destFD *os.File) error {
	tree, err := unix.OpenTree(int(src.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone %s: %w", what, err)
	}
	defer unix.Close(tree)
	if attrs != 0 {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attrs}); err != nil {
			return fmt.Errorf("set attributes of %s: %w", what, err)
		}
	}
	if destFD != nil {
		err = unix.MoveMount(tree, "", int(destFD.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	} else {
		err = unix.MoveMount(tree, "", unix.AT_FDCWD, dest, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", what, err)
	}
	return nil
}

// target opens the mount point dest inside the container, creating it (a directory, or an
// empty file when file is set) in the overlay's upper layer if the image lacks it. Symlinks
// in the image are followed as the container would, never out of it.
func (c *container) target(dest string, file bool) (*os.File, error) {
	h, err := pathrs.OpenatInRoot(c.root, dest)
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("mount point %s: %w", dest, err)
	}
	if !file {
		h, err := pathrs.MkdirAllHandle(c.root, dest, 0o755)
		if err != nil {
			return nil, fmt.Errorf("make mount point %s: %w", dest, err)
		}
		return h, nil
	}
	parent, err := pathrs.MkdirAllHandle(c.root, filepath.Dir(dest), 0o755)
	if err != nil {
		return nil, fmt.Errorf("make mount point %s: %w", dest, err)
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), filepath.Base(dest), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("make mount point %s (a dangling symlink in the image?): %w", dest, err)
	}
	unix.Close(fd)
	return pathrs.OpenatInRoot(c.root, dest)
}

// mountAt mounts a filesystem (classic mount(2)) on the mount point dest, through the fd.
func (c *container) mountAt(dest, source, fstype string, flags uintptr, data string) error {
	t, err := c.target(dest, false)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := unix.Mount(source, "/proc/self/fd/"+strconv.Itoa(int(t.Fd())), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s at %s: %w", fstype, dest, err)
	}
	return nil
}

// bindHost binds a host path (the admin's, or the kernel's: /dev, /sys) at dest.
func (c *container) bindHost(src, dest string, attrs uint64) error {
	f, err := os.OpenFile(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	t, err := c.target(dest, !st.IsDir())
	if err != nil {
		return err
	}
	defer t.Close()
	return moveTree(f, "", attrs, src, t)
}

// systemMounts are /proc, /sys, /dev and the admin's binds, as the policy says.
func (c *container) systemMounts() error {
	p := c.plan
	const noexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if p.Proc {
		err := c.mountAt("/proc", "proc", "proc", noexec, "")
		if err != nil && p.UserNS && !hasNS(p, rpcnative.NamespacePID) {
			// A user namespace may not mount the host pid namespace's proc: bind it.
			err = c.bindHost("/proc", "/proc", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		}
		if err != nil {
			return err
		}
	}
	if p.Sys {
		if hasNS(p, rpcnative.NamespaceNet) {
			if err := c.mountAt("/sys", "sysfs", "sysfs", noexec|unix.MS_RDONLY, ""); err != nil {
				return err
			}
		} else if err := c.bindHost("/sys", "/sys", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return err
		}
	}
	switch p.Dev {
	case policy.DevYes:
		if err := c.bindHost("/dev", "/dev", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return err
		}
	case policy.DevMinimal:
		if err := c.minimalDev(); err != nil {
			return err
		}
	}
	for _, path := range p.SystemBinds {
		if _, err := os.Stat(path); err != nil {
			continue // absent on this host: skipped, as the policy says
		}
		if err := c.bindHost(path, path, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
			return err
		}
	}
	if p.ResolvConf {
		if _, err := os.Stat("/etc/resolv.conf"); err == nil {
			if err := c.bindHost("/etc/resolv.conf", "/etc/resolv.conf", unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
				return err
			}
		}
	}
	return nil
}

// minimalDev is a tmpfs /dev with the harmless devices bound from the host, a devpts of
// the container's own and /dev/shm.
func (c *container) minimalDev() error {
	if err := c.mountAt("/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := c.bindHost("/dev/"+d, "/dev/"+d, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return err
		}
	}
	if c.plan.Devpts {
		if err := c.mountAt("/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return err
		}
	}
	if err := c.mountAt("/dev/shm", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	dev, err := pathrs.OpenatInRoot(c.root, "/dev")
	if err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	defer dev.Close()
	// The tmpfs is ours (just mounted): names in it are not the image's.
	for name, to := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := unix.Symlinkat(to, int(dev.Fd()), name); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("/dev/%s: %w", name, err)
		}
	}
	return nil
}

// tmpfs mounts one of the plan's tmpfs.
func (c *container) tmpfs(t PlanTmpfs) error {
	opts := fmt.Sprintf("size=%d,mode=%o", t.Size, t.Mode)
	if t.Owned {
		opts += fmt.Sprintf(",uid=%d,gid=%d", c.plan.Caller.UID, c.plan.Caller.GID)
	}
	return c.mountAt(t.Dest, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// bind binds one of stage 1's fds at its destination: the caller's own files, so never
// with setuid bits or device nodes that work.
func (c *container) bind(b PlanBind) error {
	f, err := inThisNamespace(c.files[b.FD], b.What+" "+b.Source)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s %s: %w", b.What, b.Source, err)
	}
	t, err := c.target(b.Dest, st.Mode&unix.S_IFMT != unix.S_IFDIR)
	if err != nil {
		return fmt.Errorf("%s %s: %w", b.What, b.Source, err)
	}
	defer t.Close()
	attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if b.ReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := moveTree(f, "", attrs, b.Source, t); err != nil {
		return fmt.Errorf("%s %s at %s: %w", b.What, b.Source, b.Dest, err)
	}
	return nil
}

// maxIdentityFile bounds what is read of the image's /etc/passwd and /etc/group.
const maxIdentityFile = 4 << 20

// identityFiles gives the container an /etc/passwd and /etc/group with the caller's entries
// (the image's, plus the caller's when missing), as files of the session bound read-only.
func (c *container) identityFiles() error {
	p := c.plan
	u := p.Caller
	shell := u.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	entries := []struct {
		on   bool
		name string
		has  func(fields []string) bool
		line string
	}{
		{p.Passwd, "passwd", func(f []string) bool { return f[0] == u.Name || (len(f) > 2 && f[2] == strconv.Itoa(int(u.UID))) },
			fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", u.Name, u.UID, u.GID, strings.ReplaceAll(u.Gecos, ":", " "), p.Home, shell)},
		{p.Group && u.GroupName != "", "group", func(f []string) bool { return len(f) > 2 && f[2] == strconv.Itoa(int(u.GID)) },
			fmt.Sprintf("%s:x:%d:%s", u.GroupName, u.GID, u.Name)},
	}
	for _, e := range entries {
		if !e.on {
			continue
		}
		content, err := c.readInRoot("/etc/" + e.name)
		if err != nil {
			continue // an image without one gets none: nothing would read it
		}
		found := false
		for _, line := range strings.Split(content, "\n") {
			if f := strings.Split(line, ":"); len(f) > 0 && e.has(f) {
				found = true
				break
			}
		}
		if !found {
			if content != "" && !strings.HasSuffix(content, "\n") {
				content += "\n"
			}
			content += e.line + "\n"
		}
		path := filepath.Join(c.sessionDir, "files", e.name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("/etc/%s: %w", e.name, errdefs.ClassifyIO(err))
		}
		if err := c.bindHost(path, "/etc/"+e.name, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
			return err
		}
	}
	return nil
}

// readInRoot reads a regular file of the image, at most maxIdentityFile bytes.
func (c *container) readInRoot(path string) (string, error) {
	h, err := pathrs.OpenatInRoot(c.root, path)
	if err != nil {
		return "", err
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile))
	return string(b), err
}

// namespaces finishes the namespaces C made: the hostname, the loopback interface.
func (c *container) namespaces() error {
	p := c.plan
	if hasNS(p, rpcnative.NamespaceUTS) && p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return fmt.Errorf("hostname %q: %w", p.Hostname, err)
		}
	}
	if hasNS(p, rpcnative.NamespaceNet) {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	return nil
}

func hasNS(p *Plan, ns string) bool {
	for _, n := range p.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// pivot makes the overlay the root: pivot_root with the old root stacked under the new
// one, then detached, so that nothing of the host's tree stays reachable.
func (c *container) pivot() error {
	if err := unix.Fchdir(int(c.root.Fd())); err != nil {
		return fmt.Errorf("enter the container's root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	c.root.Close()
	return nil
}
