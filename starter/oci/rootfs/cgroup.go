package rootfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

// A "cgroup" mount follows the host's layout, as runc does. On a unified host (cgroup2 at
// /sys/fs/cgroup) it is a cgroup2 mount. On a v1 or hybrid host it is a tmpfs holding one
// directory per v1 hierarchy listed in the container's /proc/self/cgroup and mounted on the
// host: the container's own cgroup of that hierarchy bind-mounted from the host, or, when
// the spec gives the container a cgroup namespace, a new mount of the hierarchy (the
// namespace roots it at the container's cgroup). Co-mounted controllers ("cpu,cpuacct") get
// a symlink per controller. The hybrid host's unified hierarchy is left out, as with runc.
// A hierarchy the host has not mounted has nothing to bind and is left out too.
//
// Privileges, for every function in this file: root in the container's mount namespace,
// before pivot_root (the host's /proc and cgroup mounts are still visible).

// checkCgroups learns, once, whether the host has the unified layout.
func (s *setup) checkCgroups() error {
	if s.cgroupChecked {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	s.unified = st.Type == unix.CGROUP2_SUPER_MAGIC
	s.cgroupChecked = true
	return nil
}

// cgroup2Mount mounts cgroup2 on p's destination.
func (s *setup) cgroup2Mount(p *plan) error {
	t, err := openTarget(s.rootfd, s.root, p.dest, wantDir, true)
	if err != nil {
		return err
	}
	defer t.close()
	src := p.m.Source
	if src == "" {
		src = "cgroup2"
	}
	mfd, err := newFS("cgroup2", src, p.opts.sbFlags, p.opts.data, p.opts.attrs.set)
	if err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) {
		// A user namespace without a cgroup namespace of its own may not mount cgroup2:
		// bind the container's cgroup from the host's hierarchy instead, as runc does.
		dir, ferr := ownCgroup2Dir()
		if ferr != nil {
			return fmt.Errorf("mount cgroup2 on %s: %w; no bind to fall back on: %v", t.path(), err, ferr)
		}
		return s.bindFrom(p, dir, true, t)
	}
	if err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", t.path(), err)
	}
	defer closeFd(mfd)
	if err := place(mfd, t, p.opts, false); err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", t.path(), err)
	}
	return nil
}

// cgroupV1Mount lays out the v1 hierarchies under p's destination.
func (s *setup) cgroupV1Mount(p *plan) error {
	if len(p.opts.data) > 0 {
		return fmt.Errorf("option %q: a cgroup mount on a cgroup v1 host takes no filesystem options", p.opts.data[0])
	}
	hier, err := v1Hierarchies()
	if err != nil {
		return err
	}
	t, err := openTarget(s.rootfd, s.root, p.dest, wantDir, true)
	if err != nil {
		return err
	}
	defer t.close()
	tfs, err := newFS("tmpfs", "tmpfs", nil, []string{"mode=755"},
		unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", t.path(), err)
	}
	defer closeFd(tfs)
	if err := attach(tfs, t.fd); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", t.path(), err)
	}
	// The hierarchies get the spec's flags; propagation is set once, on the whole tree.
	sub := p.opts
	sub.propagation, sub.propRecursive = 0, false
	for _, h := range hier {
		if err := s.mountHierarchy(tfs, t, h, sub); err != nil {
			return err
		}
	}
	if p.opts.attrs.set&unix.MOUNT_ATTR_RDONLY != 0 {
		if err := setAttrs(tfs, false, attrChange{set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("remount %s read-only: %w", t.path(), err)
		}
	}
	if err := setPropagation(tfs, p.opts.propagation, p.opts.propRecursive); err != nil {
		return fmt.Errorf("%s: %w", t.path(), err)
	}
	return nil
}

// mountHierarchy mounts one v1 hierarchy in the tmpfs tfs mounted at parent.
func (s *setup) mountHierarchy(tfs int, parent *target, h hierarchy, opts mountOptions) error {
	name := filepath.Base(h.mountpoint)
	dst := parent.path() + "/" + name
	if err := unix.Mkdirat(tfs, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir %s: %w", dst, err)
	}
	fd, err := openBeneath(tfs, name, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s: %w", dst, err)
	}
	t := &target{fd: fd, rel: parent.rel + "/" + name}
	defer t.close()
	if s.cgroupNS() {
		mfd, err := newFS("cgroup", "cgroup", opts.sbFlags, h.controllers, opts.attrs.set)
		if err != nil {
			return fmt.Errorf("mount cgroup %s on %s: %w", strings.Join(h.controllers, ","), dst, err)
		}
		defer closeFd(mfd)
		if err := place(mfd, t, opts, false); err != nil {
			return fmt.Errorf("mount cgroup %s on %s: %w", strings.Join(h.controllers, ","), dst, err)
		}
	} else {
		src, err := h.ownDir()
		if err != nil {
			return err
		}
		sfd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", src, err)
		}
		defer closeFd(sfd)
		opts.sbFlags = nil
		if err := bindFd(sfd, t, true, opts); err != nil {
			return fmt.Errorf("bind %s on %s: %w", src, dst, err)
		}
	}
	if strings.Contains(name, ",") {
		for _, c := range strings.Split(name, ",") {
			if err := unix.Symlinkat(name, tfs, c); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("symlink %s/%s: %w", parent.path(), c, err)
			}
		}
	}
	return nil
}

func (s *setup) cgroupNS() bool {
	if s.spec.Linux == nil {
		return false
	}
	for _, ns := range s.spec.Linux.Namespaces {
		if ns.Type == specs.CgroupNamespace {
			return true
		}
	}
	return false
}

// hierarchy is a v1 cgroup hierarchy that the container's process belongs to and the host
// has mounted.
type hierarchy struct {
	controllers []string // as /proc/self/cgroup names them: "cpu", "name=systemd"
	cgroup      string   // the process's cgroup in it
	mountpoint  string   // where the host mounted it
	mountRoot   string   // the cgroup at the root of that mount
}

// ownDir is the host path of the process's cgroup in h.
func (h hierarchy) ownDir() (string, error) {
	rel, ok := below(h.mountRoot, h.cgroup)
	if !ok {
		return "", fmt.Errorf("cgroup %s of %s is outside the host's mount of it (%s at %s)",
			h.cgroup, strings.Join(h.controllers, ","), h.mountRoot, h.mountpoint)
	}
	return filepath.Join(h.mountpoint, rel), nil
}

// below returns p relative to root when p is root or below it.
func below(root, p string) (string, bool) {
	if root == "/" {
		return p, true
	}
	if p == root {
		return "/", true
	}
	if strings.HasPrefix(p, root+"/") {
		return p[len(root):], true
	}
	return "", false
}

// readMounts reads the mounts this thread sees in its mount namespace (the caller may have
// entered it on this thread only, so not /proc/self): hidden ones left out, such as the
// cgroup mounts that systemd covers with its own when it runs as a container's init.
func readMounts() ([]mountinfo.Mount, error) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	ms, err := mountinfo.Parse(b)
	if err != nil {
		return nil, err
	}
	return mountinfo.Visible(ms), nil
}

// cgroupLine is one line of /proc/self/cgroup.
type cgroupLine struct {
	controllers []string // nil for the unified hierarchy
	path        string
}

func readOwnCgroups() ([]cgroupLine, error) {
	b, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	var out []cgroupLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("read own cgroups: malformed line %q", sc.Text())
		}
		l := cgroupLine{path: f[2]}
		if f[1] != "" {
			l.controllers = strings.Split(f[1], ",")
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// v1Hierarchies lists the v1 hierarchies of this process that the host has mounted.
func v1Hierarchies() ([]hierarchy, error) {
	lines, err := readOwnCgroups()
	if err != nil {
		return nil, err
	}
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	var out []hierarchy
	seen := map[string]bool{}
	for _, l := range lines {
		if l.controllers == nil {
			continue
		}
		for _, m := range mounts {
			if m.FSType != "cgroup" || seen[m.Mountpoint] || !hasAll(strings.Split(m.SuperOptions, ","), l.controllers) {
				continue
			}
			seen[m.Mountpoint] = true
			out = append(out, hierarchy{controllers: l.controllers, cgroup: l.path,
				mountpoint: m.Mountpoint, mountRoot: m.Root})
			break
		}
	}
	return out, nil
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// ownCgroup2Dir is the host path of this process's cgroup in the unified hierarchy.
func ownCgroup2Dir() (string, error) {
	lines, err := readOwnCgroups()
	if err != nil {
		return "", err
	}
	mounts, err := readMounts()
	if err != nil {
		return "", err
	}
	for _, l := range lines {
		if l.controllers != nil {
			continue
		}
		for _, m := range mounts {
			if m.FSType != "cgroup2" {
				continue
			}
			h := hierarchy{controllers: []string{"unified"}, cgroup: l.path, mountpoint: m.Mountpoint, mountRoot: m.Root}
			return h.ownDir()
		}
		return "", errors.New("the host has no cgroup2 mount")
	}
	return "", errors.New("the process is in no cgroup2 cgroup")
}
