package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Privileges, for every function in this file: root in the container's mount namespace,
// before pivot_root; CAP_MKNOD unless Config.InUserNS (then the host's nodes are bound).

// defaultDevices are the nodes every container gets in a /dev that the spec mounts, as the
// runtime spec lists them (root-owned, 0666). A linux.devices entry with the same path wins.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// setupDev fills /dev. Who owns /dev decides what happens, as with runc:
//   - the spec bind-mounts something (the host's /dev) there: nothing is created, the
//     source's nodes are used as they are (linux.devices included), since creating nodes
//     would write into the source;
//   - the spec mounts a filesystem there (a tmpfs usually): the default devices, the
//     linux.devices entries, the symlinks fd, stdin, stdout, stderr (and core when the
//     host has /proc/kcore), and ptmx -> pts/ptmx when the spec mounts a devpts on /dev/pts;
//   - nothing is mounted there: only the linux.devices entries, in the image's /dev.
func (s *setup) setupDev() error {
	var devMount, devBind, devpts bool
	for _, p := range s.plans {
		if p.opts.remount {
			continue
		}
		switch {
		case p.dest == "/dev" && p.kind == kindBind:
			devBind = true
		case p.dest == "/dev":
			devMount = true
		case p.dest == "/dev/pts" && p.kind == kindFS && p.m.Type == "devpts":
			devpts = true
		}
	}
	if devBind {
		return nil
	}
	var spec []specs.LinuxDevice
	if s.spec.Linux != nil {
		spec = s.spec.Linux.Devices
	}
	devices := spec
	if devMount {
		devices = nil
	next:
		for _, d := range defaultDevices {
			for _, sd := range spec {
				if filepath.Clean(sd.Path) == d.Path {
					continue next
				}
			}
			devices = append(devices, d)
		}
		devices = append(devices, spec...)
	}
	// Device modes are exactly the spec's, so the umask must not apply to mknod.
	old := unix.Umask(0)
	defer unix.Umask(old)
	for i := range devices {
		if err := s.createDevice(devices[i]); err != nil {
			return fmt.Errorf("device %s: %w", devices[i].Path, err)
		}
	}
	if !devMount {
		return nil
	}
	return s.devLinks(devpts && !hasDevice(spec, "/dev/ptmx"))
}

func hasDevice(l []specs.LinuxDevice, p string) bool {
	for _, d := range l {
		if filepath.Clean(d.Path) == p {
			return true
		}
	}
	return false
}

// createDevice makes one device node inside the rootfs: mknod, or, in a user namespace
// (where mknod of devices is refused), a bind mount of the host's node onto an empty file.
func (s *setup) createDevice(d specs.LinuxDevice) error {
	typ, err := deviceTypeBits(d.Type)
	if err != nil {
		return err
	}
	perm, err := devicePerm(d)
	if err != nil {
		return err
	}
	// The directory is resolved inside the rootfs; the last component is not followed: the
	// node goes at the path itself.
	clean := filepath.Clean(d.Path)
	dirPath, base := filepath.Split(clean)
	dir, err := inRoot(s.root, dirPath)
	if err != nil {
		return err
	}
	pfd, err := openDirs(s.rootfd, dir, true)
	if err != nil {
		return fmt.Errorf("open %s in the rootfs: %w", dirPath, err)
	}
	defer closeFd(pfd)
	// Whatever the image has at the path goes: the node must be the one the spec
	// describes, and a symlink or file planted there must not stand in for it.
	if err := removeEntry(pfd, base); err != nil {
		return err
	}
	if d.Type == "p" || !s.c.InUserNS {
		dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
		if d.Type == "p" {
			dev = 0
		}
		err := unix.Mknodat(pfd, base, typ|perm, int(dev))
		if err == nil {
			return chownDevice(pfd, base, d)
		}
		if !errors.Is(err, unix.EPERM) || d.Type == "p" {
			return fmt.Errorf("mknod: %w", err)
		}
		// No CAP_MKNOD (a user namespace the caller did not announce): bind as runc does.
	}
	return bindDevice(pfd, base, d, typ)
}

// removeEntry removes name in dirfd unless it is missing; a directory is an error.
func removeEntry(dirfd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errors.New("the rootfs has a directory there")
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return fmt.Errorf("remove what the rootfs has there: %w", err)
	}
	return nil
}

func chownDevice(dirfd int, name string, d specs.LinuxDevice) error {
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
	}
	return nil
}

// bindDevice binds the host's node at d.Path, checked to be the device d describes, onto a
// new empty file name in dirfd.
func bindDevice(dirfd int, name string, d specs.LinuxDevice, typ uint32) error {
	hfd, err := unix.Open(d.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the host's %s to bind it: %w", d.Path, err)
	}
	defer closeFd(hfd)
	var st unix.Stat_t
	if err := unix.Fstat(hfd, &st); err != nil {
		return fmt.Errorf("stat the host's %s: %w", d.Path, err)
	}
	if st.Mode&unix.S_IFMT != typ || unix.Major(st.Rdev) != uint32(d.Major) || unix.Minor(st.Rdev) != uint32(d.Minor) {
		return fmt.Errorf("the host's %s is not the device %s %d:%d", d.Path, d.Type, d.Major, d.Minor)
	}
	f, err := unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create the mount point: %w", err)
	}
	closeFd(f)
	fd, err := openBeneath(dirfd, name, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("open the mount point: %w", err)
	}
	t := &target{fd: fd, rel: strings.TrimPrefix(d.Path, "/")}
	defer t.close()
	if err := bindFd(hfd, t, false, mountOptions{}); err != nil {
		return fmt.Errorf("bind the host's node: %w", err)
	}
	return nil
}

// devLinks makes the standard symlinks in the container's /dev and, when ptmx is set,
// /dev/ptmx -> pts/ptmx (the devpts instance of the container, not the host's).
func (s *setup) devLinks(ptmx bool) error {
	devfd, err := s.openDev()
	if err != nil {
		return err
	}
	defer closeFd(devfd)
	links := [][2]string{
		{"fd", "/proc/self/fd"},
		{"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"},
		{"stderr", "/proc/self/fd/2"},
	}
	// /proc/kcore exists only with CONFIG_PROC_KCORE; the host's /proc tells.
	if _, err := os.Lstat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"core", "/proc/kcore"})
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[1], devfd, l[0]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s -> %s: %w", l[0], l[1], err)
		}
	}
	if ptmx {
		if err := removeEntry(devfd, "ptmx"); err != nil {
			return fmt.Errorf("/dev/ptmx: %w", err)
		}
		if err := unix.Symlinkat("pts/ptmx", devfd, "ptmx"); err != nil {
			return fmt.Errorf("symlink /dev/ptmx -> pts/ptmx: %w", err)
		}
	}
	return nil
}

// openDev opens the container's /dev (resolved inside the rootfs, created if missing).
func (s *setup) openDev() (int, error) {
	rel, err := inRoot(s.root, "/dev")
	if err != nil {
		return -1, err
	}
	fd, err := openDirs(s.rootfd, rel, true)
	if err != nil {
		return -1, fmt.Errorf("open /dev in the rootfs: %w", err)
	}
	return fd, nil
}

// bindConsole binds the pty slave ConsolePath at /dev/console. CVE-2025-52565: the image
// (or anything racing with Setup) may have put a symlink at /dev/console to make the bind
// land elsewhere, on a /proc file for instance; so /dev/console must be missing (it is then
// made as an empty 0600 file) or a regular file, it is opened without following links, and
// the bind goes onto that fd from an fd of the slave checked to be a devpts char device.
func (s *setup) bindConsole() error {
	pty, err := unix.Open(s.c.ConsolePath, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open console %s: %w", s.c.ConsolePath, err)
	}
	defer closeFd(pty)
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if err := unix.Fstat(pty, &st); err != nil {
		return fmt.Errorf("stat console %s: %w", s.c.ConsolePath, err)
	}
	if err := unix.Fstatfs(pty, &sfs); err != nil {
		return fmt.Errorf("statfs console %s: %w", s.c.ConsolePath, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || sfs.Type != unix.DEVPTS_SUPER_MAGIC {
		return fmt.Errorf("console %s is not a pty (a char device on a devpts)", s.c.ConsolePath)
	}
	devfd, err := s.openDev()
	if err != nil {
		return err
	}
	defer closeFd(devfd)
	var cst unix.Stat_t
	err = unix.Fstatat(devfd, "console", &cst, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		f, err := unix.Openat(devfd, "console", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create /dev/console: %w", err)
		}
		closeFd(f)
	case err != nil:
		return fmt.Errorf("stat /dev/console: %w", err)
	case cst.Mode&unix.S_IFMT == unix.S_IFLNK:
		return errors.New("refusing /dev/console: the rootfs has a symlink there")
	case cst.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("refusing /dev/console: the rootfs has a %s there, not a regular file", fileType(cst.Mode))
	}
	fd, err := openBeneath(devfd, "console", unix.O_PATH)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	t := &target{fd: fd, rel: "dev/console"}
	defer t.close()
	if err := unix.Fstat(fd, &cst); err != nil {
		return fmt.Errorf("stat /dev/console: %w", err)
	}
	if cst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("refusing /dev/console: it became a %s", fileType(cst.Mode))
	}
	if err := bindFd(pty, t, false, mountOptions{}); err != nil {
		return fmt.Errorf("bind %s on /dev/console: %w", s.c.ConsolePath, err)
	}
	return nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "regular file"
}
