package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Privileges, for every function in this file: root in the container's mount namespace,
// before pivot_root (the host's paths of bind sources are still visible).

// mount makes one spec mount inside the rootfs.
func (s *setup) mount(p *plan) error {
	if p.opts.remount {
		return s.remount(p)
	}
	switch p.kind {
	case kindBind:
		return s.bindMount(p)
	case kindCgroup:
		if err := s.checkCgroups(); err != nil {
			return err
		}
		if s.unified {
			return s.cgroup2Mount(p)
		}
		return s.cgroupV1Mount(p)
	case kindCgroup2:
		return s.cgroup2Mount(p)
	}
	return s.fsMount(p)
}

// fsMount mounts a new instance of p's filesystem type on its destination.
func (s *setup) fsMount(p *plan) error {
	t, err := openTarget(s.rootfd, s.root, p.dest, wantDir, true)
	if err != nil {
		return err
	}
	defer t.close()
	if err := checkProcDest(t.path(), p.kind, p.m.Type); err != nil {
		return fmt.Errorf("destination resolves to %s: %w", t.path(), err)
	}
	sbFlags, data, attrs := p.opts.sbFlags, p.opts.data, p.opts.attrs.set
	if p.m.Type == "tmpfs" && !t.created && !hasData(data, "mode") {
		// A tmpfs over an existing directory keeps its permissions (/tmp stays 1777), as
		// with runc, unless the spec says otherwise.
		data = append(slices.Clone(data), fmt.Sprintf("mode=%o", t.st.Mode&0o7777))
	}
	// The same test as setupDev's, which fills this /dev.
	deferRO := p.dest == "/dev" && attrs&unix.MOUNT_ATTR_RDONLY != 0
	if deferRO {
		// /dev is filled after the mounts (devices, symlinks, the console, hooks); it
		// becomes read-only once the container's root is entered.
		attrs &^= unix.MOUNT_ATTR_RDONLY
		sbFlags = slices.DeleteFunc(slices.Clone(sbFlags), func(f string) bool { return f == "ro" })
	}
	mfd, err := newFS(p.m.Type, p.m.Source, sbFlags, data, attrs)
	if err != nil && s.c.InUserNS && errors.Is(err, unix.EPERM) {
		// A user namespace that does not own the network (sysfs) or IPC (mqueue)
		// namespace cannot mount a new instance; bind the host's, as runc does.
		switch p.m.Type {
		case "sysfs":
			return s.bindFrom(p, "/sys", true, t)
		case "mqueue":
			return s.bindFrom(p, "/dev/mqueue", false, t)
		}
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", p.m.Type, t.path(), err)
	}
	keep := false
	defer func() {
		if !keep {
			closeFd(mfd)
		}
	}()
	if err := place(mfd, t, p.opts, false); err != nil {
		return fmt.Errorf("mount %s on %s: %w", p.m.Type, t.path(), err)
	}
	if deferRO {
		closeFd(s.devRO)
		s.devRO, keep = mfd, true
	}
	return nil
}

// place gives the detached mount mfd the recursive attributes of opts (and its own ones
// too, when own is set: fsmount has already applied them to a new filesystem), moves it
// onto t and sets its propagation.
func place(mfd int, t *target, opts mountOptions, own bool) error {
	if err := setAttrs(mfd, true, opts.rattrs); err != nil {
		return err
	}
	if own {
		if err := setAttrs(mfd, false, opts.attrs); err != nil {
			return err
		}
	}
	if err := attach(mfd, t.fd); err != nil {
		return err
	}
	return setPropagation(mfd, opts.propagation, opts.propRecursive)
}

func hasData(data []string, key string) bool {
	for _, d := range data {
		if k, _, _ := strings.Cut(d, "="); k == key {
			return true
		}
	}
	return false
}

// bindMount binds p's source, a host path, onto its destination.
func (s *setup) bindMount(p *plan) error {
	src := p.m.Source
	if !filepath.IsAbs(src) {
		if s.c.Bundle == "" {
			return fmt.Errorf("relative source %q and no bundle directory to resolve it against", src)
		}
		src = filepath.Join(s.c.Bundle, src)
	}
	return s.bindFrom(p, src, p.opts.recursive, nil)
}

// bindFrom binds the host path src onto p's destination (t when already opened) with p's
// options.
func (s *setup) bindFrom(p *plan, src string, recursive bool, t *target) error {
	sfd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open bind source %s: %w", src, err)
	}
	defer closeFd(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return fmt.Errorf("stat bind source %s: %w", src, err)
	}
	if t == nil {
		w := wantFile
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			w = wantDir
		}
		if t, err = openTarget(s.rootfd, s.root, p.dest, w, true); err != nil {
			return err
		}
		defer t.close()
	}
	if err := checkProcDest(t.path(), kindBind, ""); err != nil {
		return fmt.Errorf("destination resolves to %s: %w", t.path(), err)
	}
	if t.rel == "proc" {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(sfd, &sfs); err != nil {
			return fmt.Errorf("statfs bind source %s: %w", src, err)
		}
		if sfs.Type != unix.PROC_SUPER_MAGIC {
			return fmt.Errorf("bind source %s of /proc is not a procfs", src)
		}
	}
	if err := bindFd(sfd, t, recursive, p.opts); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, t.path(), err)
	}
	return nil
}

// bindFd clones the mount at the fd sfd (all below it too when recursive), applies opts to
// the copy and moves it onto t.
func bindFd(sfd int, t *target, recursive bool, opts mountOptions) error {
	mfd, err := cloneTree(sfd, "", recursive)
	if err != nil {
		return err
	}
	defer closeFd(mfd)
	return place(mfd, t, opts, true)
}

// remount changes the mount already at p's destination: its per-mount attributes with
// mount_setattr and, for the filesystem options (data, sync, dirsync, mand), the filesystem
// itself through fspick. ro and rw are per-mount only here: reconfiguring a superblock
// read-only would reach every mount of it, the host's too for a shared one such as sysfs.
func (s *setup) remount(p *plan) error {
	t, err := openTarget(s.rootfd, s.root, p.dest, wantAny, false)
	if err != nil {
		return err
	}
	defer t.close()
	if err := setAttrs(t.fd, true, p.opts.rattrs); err != nil {
		return fmt.Errorf("remount %s: %w", t.path(), notMountHint(err))
	}
	if err := setAttrs(t.fd, false, p.opts.attrs); err != nil {
		return fmt.Errorf("remount %s: %w", t.path(), notMountHint(err))
	}
	var fsOpts []string
	for _, f := range p.opts.sbFlags {
		if f != "ro" && f != "rw" {
			fsOpts = append(fsOpts, f)
		}
	}
	fsOpts = append(fsOpts, p.opts.data...)
	if len(fsOpts) > 0 && p.kind != kindBind {
		if err := reconfigure(t.fd, fsOpts); err != nil {
			return fmt.Errorf("remount %s: %w", t.path(), notMountHint(err))
		}
	}
	if err := setPropagation(t.fd, p.opts.propagation, p.opts.propRecursive); err != nil {
		return fmt.Errorf("remount %s: %w", t.path(), notMountHint(err))
	}
	return nil
}

func notMountHint(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (is it a mount point?)", err)
	}
	return err
}
