package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

// UmountOptions are the flags of `kerr oci umount`.
type UmountOptions struct {
	// Force unmounts what is busy lazily (MNT_DETACH), and cleans up a bundle that a killed
	// mount left half made.
	Force bool
	// KeepOverlay leaves overlay/upper, the container's writes, in place.
	KeepOverlay bool
	// StateRoot is the OCI state directory to look for containers of this bundle in;
	// "" looks nowhere.
	StateRoot string
}

// maxStacked bounds how many mounts stacked on one mount point umount takes off.
const maxStacked = 16

// Umount undoes Mount: it unmounts rootfs and then overlay/lower, removes config.json,
// rootfs and overlay (all but overlay/upper with KeepOverlay), the marker last, and then
// the bundle directory if mount created it, or else gives it back its owner and mode. dir
// must be absolute and clean.
//
// Without opts.Force it changes nothing unless the whole bundle can go: a busy mount, a
// foreign mount below the bundle or a half-made bundle is an error naming it. With Force,
// busy mounts are detached lazily (the kernel frees them, and autoclear the loop device,
// when their last user goes) and whatever a killed mount left is cleaned up.
//
// Privileges: root (effective uid 0 with CAP_SYS_ADMIN), in the host's mount namespace;
// otherwise it fails with errdefs.ErrDenied before doing anything.
func Umount(dir string, opts UmountOptions) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("kerr oci umount needs root (effective uid is %d): %w", os.Geteuid(), errdefs.ErrDenied)
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("path %q is not absolute and clean: %w", dir, errdefs.ErrUsage)
	}
	if !opts.Force {
		users, err := containersUsing(opts.StateRoot, dir)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("bundle %s is in use by container %s: delete it first (kerr oci delete), or umount --force: %w",
				dir, strings.Join(users, ", "), errdefs.ErrExists)
		}
	}
	fd, err := openDir(dir)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("bundle %s does not exist: %w", dir, errdefs.ErrNotFound)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a kerr bundle (not a directory): %w", dir, errdefs.ErrUsage)
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("bundle path %s is a symbolic link; give the directory it points to: %w", dir, errdefs.ErrUsage)
	case err != nil:
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	u := &unmounter{dir: dir, fd: fd, opts: opts}
	defer func() { _ = unix.Close(fd) }()
	return u.run()
}

// maxStateFile bounds a state.json read from the state directory.
const maxStateFile = 1 << 20

// containersUsing names the containers whose state (stateRoot/ID/state.json, the OCI state
// the oci engine keeps: {"id":…,"bundle":…}) says they were created from the bundle dir,
// which umount must not pull the rootfs from under. A missing state root means none;
// entries that are not a valid id, not a directory, or hold no readable state are skipped.
// Privileges: root, reading the root-only state directory.
func containersUsing(stateRoot, dir string) ([]string, error) {
	if stateRoot == "" {
		return nil, nil
	}
	des, err := os.ReadDir(stateRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read container state in %s: %w", stateRoot, err)
	}
	var ids []string
	for _, de := range des {
		if !de.IsDir() || envelope.ValidateID(de.Name()) != nil {
			continue
		}
		b, err := readSmallFile(filepath.Join(stateRoot, de.Name(), "state.json"), maxStateFile)
		if err != nil {
			continue
		}
		var st struct {
			ID     string `json:"id"`
			Bundle string `json:"bundle"`
		}
		if json.Unmarshal(b, &st) != nil || filepath.Clean(st.Bundle) != dir {
			continue
		}
		ids = append(ids, de.Name())
	}
	sort.Strings(ids)
	return ids, nil
}

// readSmallFile reads a regular file without following a symlink, up to max bytes.
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s: not a small regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// unmounter is one `kerr oci umount` of an opened bundle directory.
// Privileges: its methods run as root, like Umount.
type unmounter struct {
	dir  string // as given
	fd   int    // the bundle directory
	opts UmountOptions
	real string // dir as the mount table names it
	dev  uint64 // the bundle directory's device: removal never leaves it
	mk   *marker
}

func (u *unmounter) run() error {
	lfd, err := lockBundle(u.fd, u.dir)
	if err != nil {
		return err
	}
	defer lfd.Close()
	st, err := fstat(u.fd)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	u.dev = st.Dev
	if u.real, err = realPath(u.fd); err != nil {
		return err
	}
	u.mk, err = readMarker(u.fd)
	switch {
	case errors.Is(err, errNoMarker):
		u.mk = nil
	case err != nil && !u.opts.Force:
		return fmt.Errorf("%s: %w (kerr oci umount --force unmounts and removes the bundle anyway, leaving the directory itself)", u.dir, err)
	case err != nil:
		u.mk = nil // --force: clean what is recognisable, without the marker's facts
	}
	ms, err := mountinfo.Read()
	if err != nil {
		return err
	}
	below := u.mountsBelow(ms)
	if testHookMountinfo != nil {
		testHookMountinfo(u.dir)
	}
	if u.mk == nil {
		if len(below) == 0 && u.opts.Force {
			if done, err := u.cleanInterrupted(); done || err != nil {
				return err
			}
		}
		// Without the marker, only kerr's own mount points make it a bundle: --force must
		// not empty a directory that merely has something mounted in it.
		if len(below) == 0 || !u.kerrMountsOnly(below) {
			return fmt.Errorf("%s is not a kerr bundle: %w", u.dir, errdefs.ErrUsage)
		}
	}
	if !u.opts.Force {
		if err := u.checkComplete(below); err != nil {
			return err
		}
		if err := u.checkNotBusy(below); err != nil {
			return err
		}
	}
	if err := u.unmountAll(below); err != nil {
		return err
	}
	return u.remove()
}

// mountsBelow lists the mounts strictly below the bundle directory (the directory itself
// may be a mount point of its own, which umount leaves alone) in the order they come off:
// whatever is mounted inside rootfs, deepest first, then rootfs, then the rest (the image
// at overlay/lower), deepest first.
func (u *unmounter) mountsBelow(ms []mountinfo.Mount) []mountinfo.Mount {
	var out []mountinfo.Mount
	for _, m := range mountinfo.Under(ms, u.real) {
		if m.Mountpoint != u.real {
			out = append(out, m)
		}
	}
	rootfs := u.real + "/" + rootfsName
	inRootfs := func(m mountinfo.Mount) bool {
		return m.Mountpoint == rootfs || strings.HasPrefix(m.Mountpoint, rootfs+"/")
	}
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := inRootfs(out[i]), inRootfs(out[j]); a != b {
			return a
		}
		return len(out[i].Mountpoint) > len(out[j].Mountpoint)
	})
	return out
}

// kerrMountsOnly reports whether every mount below the bundle is at one of kerr's mount
// points (rootfs, overlay/lower) or inside rootfs.
func (u *unmounter) kerrMountsOnly(below []mountinfo.Mount) bool {
	for _, m := range below {
		r := u.rel(m)
		if r != rootfsName && r != lowerPath && !strings.HasPrefix(r, rootfsName+"/") {
			return false
		}
	}
	return true
}

// rel is the mount point of m relative to the bundle directory.
func (u *unmounter) rel(m mountinfo.Mount) string {
	return strings.TrimPrefix(m.Mountpoint, u.real+"/")
}

// checkComplete refuses, without --force, a bundle other than mount leaves it: no marker,
// a missing mount or config.json (a mount was interrupted), or mounts of something else.
func (u *unmounter) checkComplete(below []mountinfo.Mount) error {
	if u.mk == nil {
		return fmt.Errorf("%s has mounts below it but no kerr bundle marker; kerr oci umount --force unmounts and removes them", u.dir)
	}
	want := map[string]string{rootfsName: "overlay", lowerPath: "squashfs"}
	if u.mk.ReadOnly {
		want = map[string]string{rootfsName: "squashfs"}
	}
	var foreign []string
	for _, m := range below {
		r := u.rel(m)
		if fstype, ok := want[r]; ok && m.FSType == fstype {
			delete(want, r)
			continue
		}
		foreign = append(foreign, fmt.Sprintf("%s (%s)", m.Mountpoint, m.FSType))
	}
	if len(foreign) > 0 {
		return fmt.Errorf("%s has mounts that are not kerr's: %s; unmount them, or use kerr oci umount --force", u.dir, strings.Join(foreign, ", "))
	}
	var missing []string
	for r := range want {
		missing = append(missing, r+" not mounted")
	}
	if ok, err := existsAt(u.fd, configName); err != nil {
		return fmt.Errorf("bundle %s: %w", u.dir, err)
	} else if !ok {
		missing = append(missing, "no "+configName)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%s was left half made by an interrupted kerr oci mount (%s); kerr oci umount --force cleans it up", u.dir, strings.Join(missing, ", "))
	}
	return nil
}

// testHookMountinfo, when set by a test, runs just after umount has read the mount table.
var testHookMountinfo func(dir string)

// errMountPointChanged says a mount point's path no longer leads, beneath the bundle and
// without a symlink, to a mount of the bundle that the mount table listed.
var errMountPointChanged = errors.New("its path changed since the mount table was read")

// openMountPoint resolves the mount point of m for an unmount that nothing inside the
// bundle can redirect: the rootfs is the container's, and it can replace any directory on
// the way with a symlink (to "/") at any time. The parent of the mount point is opened
// beneath the bundle directory with no symlink allowed (openat2 RESOLVE_BENEATH|
// RESOLVE_NO_SYMLINKS), and the top mount at the last component, looked up from that fd
// and not followed, must be one of ids, the mounts the mount table listed there. It returns
// the parent's fd (the caller closes it) and the last component: umount2 of that name, not
// followed, from a thread whose working directory is the parent fd, acts on that mount.
// (umount2 of /proc/self/fd/N would hold the mount open through N and fail as busy.)
// A mount point that is gone or not a mount of ids any more is errMountPointChanged.
func (u *unmounter) openMountPoint(m mountinfo.Mount, ids map[uint64]bool) (int, string, error) {
	r := u.rel(m)
	parent, base := "", r
	if i := strings.LastIndexByte(r, '/'); i >= 0 {
		parent, base = r[:i], r[i+1:]
	}
	pfd, err := openBeneath(u.fd, parent)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		return -1, "", fmt.Errorf("%s: %w (%w)", m.Mountpoint, errMountPointChanged, err)
	}
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w", m.Mountpoint, err)
	}
	id, err := mountIDAt(pfd, base)
	if err == nil && !ids[id] {
		err = errMountPointChanged
	}
	if errors.Is(err, unix.ENOENT) {
		err = fmt.Errorf("%w (%w)", errMountPointChanged, err)
	}
	if err != nil {
		_ = unix.Close(pfd)
		return -1, "", fmt.Errorf("%s: %w", m.Mountpoint, err)
	}
	return pfd, base, nil
}

// idsAt is the set of ids of the mounts in below at m's mount point (a stack of them).
func idsAt(below []mountinfo.Mount, m mountinfo.Mount) map[uint64]bool {
	ids := map[uint64]bool{}
	for _, b := range below {
		if b.Mountpoint == m.Mountpoint {
			ids[uint64(b.ID)] = true
		}
	}
	return ids
}

// checkNotBusy asks the kernel, without unmounting, whether each mount is in use:
// umount2(MNT_EXPIRE) fails with EBUSY for a busy mount and with EAGAIN for an idle one,
// marking it expired, so that a second MNT_EXPIRE would really unmount it. The mark is
// cleared by any later lookup through the mount (the kernel's mntput), so each check is
// followed by one: two refused umounts in a row never unmount anything.
func (u *unmounter) checkNotBusy(below []mountinfo.Mount) error {
	for _, m := range below {
		pfd, base, err := u.openMountPoint(m, map[uint64]bool{uint64(m.ID): true})
		if err != nil {
			return fmt.Errorf("%s: %w; nothing was unmounted (kerr oci umount --force unmounts what is still the bundle's)", u.dir, err)
		}
		err = inDir(pfd, func() error { return unix.Unmount(base, unix.MNT_EXPIRE|unix.UMOUNT_NOFOLLOW) })
		clearExpiry(pfd, base)
		_ = unix.Close(pfd)
		if errors.Is(err, unix.EBUSY) {
			return u.busyError(m.Mountpoint)
		}
	}
	return nil
}

// clearExpiry looks up name in dirfd, crossing into what is mounted there, which clears
// an expiry mark that MNT_EXPIRE left on that mount.
func clearExpiry(dirfd int, name string) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		_ = unix.Close(fd)
	}
}

// busyError names a busy mount and the processes that use it.
func (u *unmounter) busyError(mountpoint string) error {
	msg := fmt.Sprintf("%s is busy", mountpoint)
	if users := processesUsing(mountpoint); len(users) > 0 {
		msg += " (used by " + strings.Join(users, ", ") + ")"
	}
	return fmt.Errorf("%s; nothing was unmounted: stop what uses it, or kerr oci umount --force detaches it lazily", msg)
}

// unmountAll takes every mount below the bundle off, deepest first; each mount point may
// hold a stack of mounts. Without --force a mount that turned busy since checkNotBusy stops
// it; with --force busy mounts are detached.
func (u *unmounter) unmountAll(below []mountinfo.Mount) error {
	flags := unix.UMOUNT_NOFOLLOW
	if u.opts.Force {
		flags |= unix.MNT_DETACH
	}
	seen := map[string]bool{}
	for _, m := range below {
		if seen[m.Mountpoint] {
			continue
		}
		seen[m.Mountpoint] = true
		ids := idsAt(below, m)
		for range maxStacked {
			pfd, base, err := u.openMountPoint(m, ids)
			if errors.Is(err, errMountPointChanged) {
				// Gone (a detached parent took it along), or its path now leads elsewhere:
				// left alone. Detaching rootfs takes what is still mounted inside it; the
				// check below names whatever stays.
				break
			}
			if err != nil {
				return fmt.Errorf("unmount %w", err)
			}
			err = inDir(pfd, func() error { return unix.Unmount(base, flags) })
			_ = unix.Close(pfd)
			if errors.Is(err, unix.EINVAL) {
				break // no mount left there (or a detached parent took it along)
			}
			if errors.Is(err, unix.EBUSY) {
				return u.busyError(m.Mountpoint)
			}
			if errors.Is(err, unix.ENOENT) {
				break
			}
			if err != nil {
				return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
			}
		}
	}
	ms, err := mountinfo.Read()
	if err != nil {
		return err
	}
	if left := u.mountsBelow(ms); len(left) > 0 {
		var names []string
		for _, m := range left {
			names = append(names, m.Mountpoint)
		}
		return fmt.Errorf("%s: still mounted after unmounting: %s; nothing was removed", u.dir, strings.Join(names, ", "))
	}
	return nil
}

// remove deletes the bundle's files, the marker last, and then the directory mount created
// or gives an existing one back its owner and mode. Each removal tolerates what is already
// gone, so a umount killed midway can run again.
func (u *unmounter) remove() error {
	for _, name := range []string{configName, rootfsName} {
		if err := removeAllAt(u.fd, name, u.dev); err != nil {
			return fmt.Errorf("bundle %s: %w", u.dir, err)
		}
	}
	if err := u.removeTemps(u.fd); err != nil {
		return err
	}
	ov, err := openDirAt(u.fd, overlayName)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	if err == nil {
		err = u.removeLayers(ov)
		_ = unix.Close(ov)
		if err != nil {
			return err
		}
	}
	// Before the marker goes, the directory gets the state a kill from here on should leave:
	// its own, or the mode that says kerr created it.
	switch {
	case u.mk == nil:
	case !u.mk.CreatedDir:
		if err := restoreDir(u.fd, u.dir, u.mk.UID, u.mk.GID, u.mk.Mode); err != nil {
			return err
		}
	case !u.opts.KeepOverlay:
		if err := unix.Fchmod(u.fd, creatingMode); err != nil {
			return fmt.Errorf("chmod bundle directory %s: %w", u.dir, err)
		}
	}
	if err := u.removeMarker(); err != nil {
		return err
	}
	if u.mk != nil && u.mk.CreatedDir && !u.opts.KeepOverlay {
		return rmdirIfSame(u.dir, u.fd)
	}
	return nil
}

// removeLayers removes overlay/lower, overlay/work and, unless kept, overlay/upper, and any
// temp file a killed write left.
func (u *unmounter) removeLayers(ov int) error {
	names := []string{lowerName, workName}
	if !u.opts.KeepOverlay {
		names = append(names, upperName)
	}
	for _, name := range names {
		if err := removeAllAt(ov, name, u.dev); err != nil {
			return fmt.Errorf("bundle %s: %s/%w", u.dir, overlayName, err)
		}
	}
	return u.removeTemps(ov)
}

// removeTemps removes files a killed writeFileAt left in the directory fd.
func (u *unmounter) removeTemps(fd int) error {
	names, err := listDir(fd)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			if err := removeAllAt(fd, n, u.dev); err != nil {
				return fmt.Errorf("bundle %s: %w", u.dir, err)
			}
		}
	}
	return nil
}

// removeMarker removes the marker and then overlay/ unless it keeps the upper directory.
func (u *unmounter) removeMarker() error {
	ov, err := openDirAt(u.fd, overlayName)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	err = unix.Unlinkat(ov, markerName, 0)
	_ = unix.Close(ov)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("bundle %s: remove %s/%s: %w", u.dir, overlayName, markerName, err)
	}
	if u.opts.KeepOverlay {
		return nil
	}
	if err := unix.Unlinkat(u.fd, overlayName, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("bundle %s: remove %s: %w", u.dir, overlayName, err)
	}
	return nil
}

// cleanInterrupted (--force, no marker, nothing mounted) removes what a mount killed
// before its marker was in place, or a umount killed after removing it, can have left:
// overlay/ holding nothing or only a temp file of the marker, and a directory kerr created
// (empty, root's, creatingMode). It reports whether the bundle directory looked like that.
func (u *unmounter) cleanInterrupted() (bool, error) {
	names, err := listDir(u.fd)
	if err != nil {
		return false, fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	hasOverlay := len(names) == 1 && names[0] == overlayName
	if len(names) > 0 && !hasOverlay {
		return false, nil
	}
	if hasOverlay {
		ov, err := openDirAt(u.fd, overlayName)
		if err != nil {
			return false, nil
		}
		inner, err := listDir(ov)
		_ = unix.Close(ov)
		if err != nil {
			return false, fmt.Errorf("bundle %s: %w", u.dir, err)
		}
		for _, n := range inner {
			if !strings.HasPrefix(n, tmpPrefix+markerName) {
				return false, nil
			}
		}
	}
	st, err := fstat(u.fd)
	if err != nil {
		return false, fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	created := st.Mode == unix.S_IFDIR|creatingMode && st.Uid == 0
	if !hasOverlay && !created {
		return false, nil
	}
	if err := removeAllAt(u.fd, overlayName, u.dev); err != nil {
		return true, fmt.Errorf("bundle %s: %w", u.dir, err)
	}
	if created {
		return true, rmdirIfSame(u.dir, u.fd)
	}
	return true, nil
}

// maxUsers bounds how many processes a busy error names.
const maxUsers = 5

// processesUsing names processes whose working directory, root, executable or an open file
// is at or below path, as "pid 42 (bash)", at most maxUsers of them. It is for the error
// message only: what it cannot read it skips. Privileges: root sees every process; anyone
// else, only their own.
func processesUsing(path string) []string {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	under := func(p string) bool { return p == path || strings.HasPrefix(p, path+"/") }
	var out []string
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		base := "/proc/" + e.Name()
		if usesPath(base, under) {
			comm, _ := os.ReadFile(base + "/comm")
			out = append(out, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
			if len(out) == maxUsers {
				break
			}
		}
	}
	return out
}

// usesPath reports whether the process at /proc/PID base has a link that under accepts.
func usesPath(base string, under func(string) bool) bool {
	for _, l := range []string{"cwd", "root", "exe"} {
		if t, err := os.Readlink(base + "/" + l); err == nil && under(t) {
			return true
		}
	}
	fds, err := os.ReadDir(base + "/fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if t, err := os.Readlink(base + "/fd/" + fd.Name()); err == nil && under(t) {
			return true
		}
	}
	return false
}
