package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config is what Setup needs besides the spec.
type Config struct {
	// Spec is the parsed bundle config; Spec.Root.Path is absolute (the caller resolved it
	// against the bundle).
	Spec *specs.Spec
	// Bundle is the absolute bundle directory: relative bind mount sources are relative to
	// it, as the runtime spec says. "" refuses relative sources.
	Bundle string
	// NoPivot moves the rootfs onto / and chroots into it instead of pivot_root (runc
	// --no-pivot, for a root that pivot_root refuses such as an initramfs). It is weaker:
	// the old root stays in the mount namespace, under the new one.
	NoPivot bool
	// NoMountNS says that the container shares the runtime's mount namespace (the config has
	// no mount namespace): the rootfs is entered with chroot alone, as runc does, since
	// pivot_root or a move onto / would change the root of every process of the host.
	NoMountNS bool
	// InUserNS says that the container has its own user namespace: device nodes cannot be
	// made there, so the host's are bind-mounted instead, and a refused sysfs or mqueue mount
	// falls back to a bind of the host's.
	InUserNS bool
	// ConsolePath is the pty slave (the host's /dev/pts/N) to bind at /dev/console when
	// Spec.Process.Terminal is set; "" otherwise.
	ConsolePath string
	// BeforePivot runs when every mount and /dev are ready, before pivot_root, with the old
	// root still visible (the engine runs the createContainer hooks there). May be nil.
	BeforePivot func() error
}

// setup is the state of one Setup call. All its fds are closed when it ends.
type setup struct {
	c     Config
	spec  *specs.Spec
	plans []plan
	// root is the rootfs path and rootfd an O_PATH fd of the rootfs bind mount on it.
	root   string
	rootfd int
	// nullMounts are detached bind mounts of the host's /dev/null, made and checked before
	// pivot_root, one per masked path: each masks one file. (A mount of the old root can no
	// longer be cloned once pivot_root has detached it, so they are made in advance.)
	nullMounts []int
	// devRO is the /dev mount that the spec wants read-only; it stays writable until the
	// container's root is entered so that devices, symlinks and hooks can fill it.
	devRO int
	// cgroup state, learned at the first cgroup mount.
	cgroupChecked, unified bool
}

// Setup prepares the container's filesystem from c.Spec and enters it, as runc's
// libcontainer does: the propagation of / (linux.rootfsPropagation, by default rslave, so
// nothing mounted here reaches the host), a bind of the rootfs onto itself, every entry of
// mounts in order, /dev (default devices, linux.devices, symlinks, /dev/ptmx, the console),
// BeforePivot, pivot_root (or, with NoPivot, a move onto / and chroot), then
// linux.readonlyPaths, linux.maskedPaths and root.readonly. On success the process's root is
// the container's rootfs and its working directory is "/".
//
// It must run in the container's init process, in the container's new mount namespace, on
// a locked OS thread (the caller may have entered that namespace on this thread only; Setup
// reads /proc/thread-self, never /proc/self), before the payload is exec'd. On failure the
// mount namespace is left half set up and the caller must not exec the payload.
//
// Privileges: root in the container's mount namespace (CAP_SYS_ADMIN over it, CAP_MKNOD
// unless InUserNS); it changes no ids or capabilities. Needs Linux 5.12 (openat2, the new
// mount API, mount_setattr).
func Setup(c Config) error {
	plans, err := validate(c.Spec)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(c.Spec.Root.Path) {
		return fmt.Errorf("root.path %q is not absolute", c.Spec.Root.Path)
	}
	if c.Bundle != "" && !filepath.IsAbs(c.Bundle) {
		return fmt.Errorf("bundle %q is not absolute", c.Bundle)
	}
	if c.ConsolePath != "" && !filepath.IsAbs(c.ConsolePath) {
		return fmt.Errorf("console %q is not absolute", c.ConsolePath)
	}
	s := &setup{
		c: c, spec: c.Spec, plans: plans,
		root: filepath.Clean(c.Spec.Root.Path), rootfd: -1, devRO: -1,
	}
	defer s.close()
	return s.run()
}

func (s *setup) close() {
	closeFd(s.rootfd)
	for _, fd := range s.nullMounts {
		closeFd(fd)
	}
	closeFd(s.devRO)
}

func (s *setup) run() error {
	if err := s.prepareRoot(); err != nil {
		return err
	}
	for i := range s.plans {
		p := &s.plans[i]
		if err := s.mount(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := s.setupDev(); err != nil {
		return err
	}
	if s.c.ConsolePath != "" {
		if err := s.bindConsole(); err != nil {
			return err
		}
	}
	if err := s.cloneDevNull(); err != nil {
		return err
	}
	if s.c.BeforePivot != nil {
		if err := s.c.BeforePivot(); err != nil {
			return fmt.Errorf("before pivot_root: %w", err)
		}
	}
	if err := s.enterRoot(); err != nil {
		return err
	}
	return s.finish()
}

// finish applies what must wait until the container's root is entered.
func (s *setup) finish() error {
	if l := s.spec.Linux; l != nil {
		for _, p := range l.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return fmt.Errorf("linux.readonlyPaths: %w", err)
			}
		}
		for i, p := range l.MaskedPaths {
			if err := maskPath(p, s.nullMounts[i]); err != nil {
				return fmt.Errorf("linux.maskedPaths: %w", err)
			}
		}
	}
	if s.devRO >= 0 {
		if err := setAttrs(s.devRO, false, attrChange{set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("remount /dev read-only: %w", err)
		}
	}
	if s.spec.Root.Readonly {
		if err := rootReadonly(); err != nil {
			return fmt.Errorf("root.readonly: %w", err)
		}
	}
	return nil
}

// cloneDevNull makes the binds of the host's /dev/null that mask files, before pivot_root,
// checked to be the null device (CVE-2025-31133: the container's /dev/null may be a symlink
// or a file planted by the image, and binding it would mask with, or expose, what it points
// at).
func (s *setup) cloneDevNull() error {
	if s.spec.Linux == nil || len(s.spec.Linux.MaskedPaths) == 0 {
		return nil
	}
	fd, err := unix.Open("/dev/null", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the host's /dev/null for masking: %w", err)
	}
	defer closeFd(fd)
	if err := checkNull(fd); err != nil {
		return err
	}
	for range s.spec.Linux.MaskedPaths {
		mfd, err := cloneTree(fd, "", false)
		if err != nil {
			return fmt.Errorf("bind the host's /dev/null for masking: %w", err)
		}
		s.nullMounts = append(s.nullMounts, mfd)
		if err := checkNull(mfd); err != nil {
			return err
		}
	}
	return nil
}

func checkNull(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the host's /dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		return errors.New("the host's /dev/null is not the null device (char 1:3); refusing to mask with it")
	}
	return nil
}
