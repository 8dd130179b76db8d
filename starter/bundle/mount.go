package bundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/starter/bundle/runtimespec"
	"github.com/kerr-hpc/kerr/starter/loopdev"
)

// Modes of what mount creates. The bundle directory is root's and 0700 while mounted: it
// holds the container's writable layer, and nobody else may swap its entries under the
// relative names mount and umount use.
const (
	bundleMode  = 0o700
	overlayMode = 0o700
	mountMode   = 0o755 // rootfs, overlay/lower
	workMode    = 0o700
	configMode  = 0o644 // as runc's `spec` writes it; the directory above is 0700
)

// creatingMode ("d--------T", which no one picks by hand) is the mode mount creates the
// bundle directory with, kept until the marker is in place; umount gives a directory mount
// created this mode again before it removes the marker. So an empty root-owned directory
// with exactly this mode is one that a kerr mount or umount was killed with, and umount
// --force removes it: no kill leaves a directory kerr created that kerr cannot recognise.
// mkdir's umask does not touch it.
const creatingMode = unix.S_ISVTX

// squashfsFlags mount the image read-only; nodev because device nodes in an image are the
// image author's, not the host's. Both rootfs mounts carry nodev too: a container runtime
// mounts its own /dev (a tmpfs, where nodes work).
// The image mounted at overlay/lower is nosuid as well: nothing runs from it there, and a
// setuid file in it is reached only through the overlay at rootfs, whose own flags count.
const (
	squashfsFlags = unix.MS_RDONLY | unix.MS_NODEV
	lowerFlags    = squashfsFlags | unix.MS_NOSUID
	overlayFlags  = unix.MS_NODEV
)

// overlayOptions name the layers relative to the bundle directory, which is the working
// directory of the thread that mounts (inDir). No byte of a user-given path ever goes into
// the option string, so a bundle path with a comma, colon, '=' or backslash cannot be
// mis-parsed, and needs no refusal either.
const overlayOptions = "lowerdir=" + lowerPath + ",upperdir=" + upperPath + ",workdir=" + workPath

// seccompProfile is the profile copied into config.json. Privileges: none.
func seccompProfile() string { return buildcfg.SysconfDir + "/kerr/seccomp.json" }

// Mount makes dir an OCI bundle of the SIF image: config.json, rootfs (an overlay of the
// image's squashfs root filesystem and a writable upper directory, or with readOnly the
// squashfs itself, read-only), and overlay/ holding the layers and the marker. image and
// dir must be absolute and clean. dir must not exist, or be an empty directory; its parent
// must exist. On any error everything done so far is undone, in reverse.
//
// The squashfs partition is read by the kernel: like Singularity, this trusts the kernel's
// squashfs driver with an image root chose to mount, and only with one that no one but
// root can change. The loop device reads the file's page cache, so a SIF that someone else
// can still write would have the kernel parse data they control, at any time while it is
// mounted: Mount refuses (errdefs.ErrDenied) an image whose open file, the one bound to the
// loop device, is not owned by uid 0 or is group- or other-writable.
//
// The bundle directory, when it exists, may be a user's until step 4 (takeOver) makes it
// root's and 0700; until then the user can rename what mount creates in it. So mount
// creates only overlay/ (root's, 0700) and the marker before taking it over, and then
// checks through its fds that the directory holds exactly that overlay/, with the marker
// alone in it, before it creates, mounts or names anything else in it. From there on no
// one but root can change its entries, and the relative names mount uses cannot be
// redirected. A directory mount creates is made in the parent's fd and must open as
// root's with the creating mode, or someone swapped it and mount stops.
//
// Privileges: root (effective uid 0 with CAP_SYS_ADMIN), in the host's mount namespace;
// otherwise it fails with errdefs.ErrDenied before doing anything.
func Mount(image, dir string, readOnly bool) error {
	m := newMounter(image, dir, readOnly)
	return m.mount()
}

// mounter is one `kerr oci mount`, split into steps so that tests can stop after any of
// them the way kill -9 would (run some steps, then release without undoing).
// Privileges: its methods run as root, like Mount; prepare and checkDir only read, every
// step changes the system and pushes its undo first or right after.
type mounter struct {
	image, dir string
	readOnly   bool
	// attach binds the loop device; tests swap it to simulate exhaustion.
	attach func(*os.File, loopdev.Span) (*loopdev.Device, error)
	// seccomp is the profile path given to runtimespec ("" for none; tests).
	seccomp string

	img    *sifimage.Image
	span   loopdev.Span
	imgID  [2]uint64 // device, inode
	ociCfg []byte

	loop     *loopdev.Device
	parentFD int         // the bundle directory's parent, when mount creates the directory; else -1
	dirFD    int         // the bundle directory; -1 until open
	lock     *bundleLock // the bundle's lock; nil until taken
	ovFD     int         // overlay/; -1 until made
	ovSt     unix.Stat_t
	created  bool
	orig     unix.Stat_t // the bundle directory before mount took it over

	// undo holds what reverses each done step, run last to first on failure.
	undo []func() error
}

func newMounter(image, dir string, readOnly bool) *mounter {
	return &mounter{image: image, dir: dir, readOnly: readOnly, attach: loopdev.Attach,
		seccomp: seccompProfile(), parentFD: -1, dirFD: -1, ovFD: -1}
}

// mount runs every step; on failure it undoes what was done. Privileges: root.
func (m *mounter) mount() error {
	defer m.release()
	if err := m.prepare(); err != nil {
		return err
	}
	for _, step := range m.steps() {
		if err := step(); err != nil {
			return m.rollback(err)
		}
	}
	return nil
}

// steps are mount's changes to the system, in order. A kill -9 after any of them leaves
// either nothing umount --force cannot recognise (before the marker: the loop fd closes
// and autoclear unbinds the device; a directory mount created has creatingMode) or a
// marker that umount --force follows.
func (m *mounter) steps() []func() error {
	return []func() error{
		m.attachLoop,  // 1: loop device bound (held by our fd only)
		m.createDir,   // 2: bundle directory created if absent, opened, locked
		m.writeMarker, // 3: overlay/ and the marker
		m.takeOver,    // 4: bundle directory root's, 0700
		m.makeDirs,    // 5: rootfs, overlay/lower, overlay/upper, overlay/work
		m.mountLower,  // 6: squashfs at overlay/lower (read-only: at rootfs)
		m.mountRootfs, // 7: overlay at rootfs
		m.writeConfig, // 8: config.json
	}
}

// prepare checks everything that can be checked without changing anything: the caller,
// the paths, the image, and an existing bundle directory (opened and locked here).
func (m *mounter) prepare() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("kerr oci mount needs root (effective uid is %d): %w", os.Geteuid(), errdefs.ErrDenied)
	}
	for _, p := range []string{m.image, m.dir} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("path %q is not absolute and clean: %w", p, errdefs.ErrUsage)
		}
	}
	img, err := sifimage.Open(m.image)
	if err != nil {
		return err
	}
	m.img = img
	d, err := img.RootFS()
	if err != nil {
		return err
	}
	m.span = loopdev.Span{Offset: d.Offset(), Size: d.Size()}
	if m.span.Size <= 0 {
		return fmt.Errorf("%s: the root filesystem partition is empty: %w", m.image, errdefs.ErrInvalidImage)
	}
	st, err := img.File().Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", m.image, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("stat %s: no device and inode", m.image)
	}
	m.imgID = [2]uint64{uint64(sys.Dev), sys.Ino}
	if err := onlyRootWrites(m.image, sys); err != nil {
		return err
	}
	if m.ociCfg, err = img.OCIConfig(); err != nil {
		return fmt.Errorf("%s: %w: %w", m.image, err, errdefs.ErrInvalidImage)
	}
	return m.checkDir()
}

// checkDir refuses a bundle path that is not absent or an empty directory, and opens and
// locks one that exists.
func (m *mounter) checkDir() error {
	var st unix.Stat_t
	err := unix.Lstat(m.dir, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		parent := filepath.Dir(m.dir)
		if err := unix.Stat(parent, &st); err != nil {
			return fmt.Errorf("bundle directory's parent %s: %w: %w", parent, err, errdefs.ErrNotFound)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("bundle directory's parent %s is not a directory: %w", parent, errdefs.ErrUsage)
		}
		return nil
	case err != nil:
		return fmt.Errorf("bundle directory %s: %w", m.dir, err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("bundle path %s is a symbolic link; give the directory it points to: %w", m.dir, errdefs.ErrUsage)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("bundle path %s exists and is not a directory: %w", m.dir, errdefs.ErrExists)
	}
	fd, err := openDir(m.dir)
	if err != nil {
		return fmt.Errorf("bundle directory: %w", err)
	}
	if m.orig, err = fstat(fd); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("bundle directory %s: %w", m.dir, err)
	}
	return m.adoptDir(fd, false)
}

// onlyRootWrites refuses an image that someone other than root can write (see Mount): st is
// the stat of the open file that the loop device is bound to.
func onlyRootWrites(image string, st *syscall.Stat_t) error {
	who := ""
	switch {
	case st.Uid != 0:
		who = fmt.Sprintf("uid %d", st.Uid)
	case st.Mode&0o022 != 0:
		who = "group/others"
	default:
		return nil
	}
	return fmt.Errorf("%s is writable by %s: kerr oci mount only mounts images that only root can change; copy it or chown root and chmod go-w: %w",
		image, who, errdefs.ErrDenied)
}

// adoptDir takes the open bundle directory fd (whose stat is m.orig), locks it and checks
// that it is empty.
func (m *mounter) adoptDir(fd int, created bool) error {
	m.dirFD = fd
	lfd, err := lockBundle(fd, m.dir)
	if err != nil {
		return err
	}
	m.lock = lfd
	names, err := listDir(fd)
	if err != nil {
		return fmt.Errorf("bundle directory %s: %w", m.dir, err)
	}
	if len(names) == 0 {
		return nil
	}
	if created {
		return fmt.Errorf("bundle directory %s: filled by someone else as it was created: %w", m.dir, errdefs.ErrExists)
	}
	if mk, err := readMarker(fd); err == nil {
		return fmt.Errorf("%s is already a kerr bundle (of %s); kerr oci umount it first: %w", m.dir, mk.Image, errdefs.ErrExists)
	} else if !errors.Is(err, errNoMarker) {
		return fmt.Errorf("%s looks like a kerr bundle, but: %w: %w", m.dir, err, errdefs.ErrExists)
	}
	return fmt.Errorf("bundle directory %s is not empty: %w", m.dir, errdefs.ErrExists)
}

// attachLoop binds the root filesystem partition to a loop device, or finds one already
// bound to it. Until something mounts it, only our fd holds it: a kill unbinds it.
func (m *mounter) attachLoop() error {
	d, err := m.attach(m.img.File(), m.span)
	if err != nil {
		if errors.Is(err, loopdev.ErrNoFreeDevice) {
			return fmt.Errorf("cannot mount %s: %w", m.image, err)
		}
		return fmt.Errorf("loop device for %s: %w", m.image, err)
	}
	m.loop = d
	return nil
}

// createDir creates the bundle directory if it was absent.
func (m *mounter) createDir() error {
	if m.dirFD >= 0 {
		return nil
	}
	parent, base := filepath.Dir(m.dir), filepath.Base(m.dir)
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bundle directory's parent %s: %w", parent, err)
	}
	m.parentFD = pfd
	if err := unix.Mkdirat(pfd, base, creatingMode); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bundle directory %s appeared while kerr was checking it: %w", m.dir, errdefs.ErrExists)
		}
		return fmt.Errorf("create bundle directory %s: %w", m.dir, err)
	}
	if testHookCreated != nil {
		testHookCreated(m.dir)
	}
	fd, err := openDirAt(pfd, base)
	if err != nil {
		return fmt.Errorf("bundle directory %s: %w", m.dir, err)
	}
	st, err := fstat(fd)
	if err == nil && (st.Uid != 0 || st.Mode != unix.S_IFDIR|creatingMode) {
		// Someone who can write the parent renamed ours away and put theirs there; ours is
		// left where they put it, empty and with the mode umount --force recognises.
		err = fmt.Errorf("it was replaced as it was created (now uid %d, mode %#o): %w", st.Uid, st.Mode&0o7777, errdefs.ErrExists)
	}
	if err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("bundle directory %s: %w", m.dir, err)
	}
	m.orig = st
	m.created = true
	m.undo = append(m.undo, m.removeCreatedDir)
	return m.adoptDir(fd, true)
}

// testHookCreated, when set by a test, runs between the mkdir and the open of a bundle
// directory mount creates.
var testHookCreated func(dir string)

// removeCreatedDir removes the bundle directory mount created, if its name in the parent
// still holds it.
func (m *mounter) removeCreatedDir() error {
	base := filepath.Base(m.dir)
	st, err := fstat(m.dirFD)
	if err != nil {
		return fmt.Errorf("remove %s: %w", m.dir, err)
	}
	if !sameAt(m.parentFD, base, st) {
		return fmt.Errorf("remove %s: the path now names something else; left alone", m.dir)
	}
	if err := unix.Unlinkat(m.parentFD, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", m.dir, err)
	}
	return nil
}

// rmdirIfSame removes the empty directory at path if it is still the directory open as fd.
// Privileges: write access to the parent (root here).
func rmdirIfSame(path string, fd int) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if fd >= 0 {
		own, err := fstat(fd)
		if err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		if own.Dev != st.Dev || own.Ino != st.Ino {
			return fmt.Errorf("remove %s: the path now names another directory; left alone", path)
		}
	}
	if err := unix.Rmdir(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// writeMarker creates overlay/ and writes the marker in it: from here on umount --force
// knows what to undo.
func (m *mounter) writeMarker() error {
	fd, err := mkdirAt(m.dirFD, overlayName, overlayMode)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, err)
	}
	m.ovFD = fd
	if m.ovSt, err = fstat(fd); err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, err)
	}
	m.undo = append(m.undo, m.removeOverlay)
	mk := &marker{
		Version: markerVersion, Image: m.image, ImageDev: m.imgID[0], ImageIno: m.imgID[1],
		LoopDevice: m.loop.Path, Offset: m.span.Offset, Size: m.span.Size,
		CreatedDir: m.created, Mode: uint32(m.orig.Mode) & 0o7777, UID: m.orig.Uid, GID: m.orig.Gid,
		ReadOnly: m.readOnly, Time: time.Now().UTC(),
	}
	if err := writeMarker(fd, mk); err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, errdefs.ClassifyIO(err))
	}
	return nil
}

// removeOverlay undoes writeMarker: it empties overlay/ through its fd and removes it if its
// name still holds it. (Before takeOver, and again once the owner is given back, the
// directory's owner can rename it.)
func (m *mounter) removeOverlay() error {
	names, err := listDir(m.ovFD)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, err)
	}
	for _, n := range names {
		if err := removeAllAt(m.ovFD, n, m.orig.Dev); err != nil {
			return fmt.Errorf("bundle %s: %s/%w", m.dir, overlayName, err)
		}
	}
	if !sameAt(m.dirFD, overlayName, m.ovSt) {
		return fmt.Errorf("bundle %s: the %s directory kerr made was moved away; it is empty, and left where it is", m.dir, overlayName)
	}
	if err := unix.Unlinkat(m.dirFD, overlayName, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("bundle %s: remove %s: %w", m.dir, overlayName, err)
	}
	return nil
}

// takeOver makes the bundle directory root's and 0700 while it is a bundle, and then checks
// that nobody changed it before: it holds exactly the overlay/ mount made (same inode,
// root's, 0700) with only the marker in it. Only after that may anything act on names in it.
func (m *mounter) takeOver() error {
	m.undo = append(m.undo, func() error { return restoreDir(m.dirFD, m.dir, m.orig.Uid, m.orig.Gid, uint32(m.orig.Mode)&0o7777) })
	if err := unix.Fchown(m.dirFD, 0, 0); err != nil {
		return fmt.Errorf("chown bundle directory %s: %w", m.dir, err)
	}
	if err := unix.Fchmod(m.dirFD, bundleMode); err != nil {
		return fmt.Errorf("chmod bundle directory %s: %w", m.dir, err)
	}
	if err := m.checkTaken(); err != nil {
		return fmt.Errorf("bundle directory %s was changed while kerr was making it a bundle (%w); nothing was mounted: %w", m.dir, err, errdefs.ErrExists)
	}
	return nil
}

// checkTaken is takeOver's check, through the fds.
func (m *mounter) checkTaken() error {
	st, err := fstat(m.dirFD)
	if err != nil {
		return err
	}
	if st.Uid != 0 || st.Mode != unix.S_IFDIR|bundleMode {
		return fmt.Errorf("it is uid %d, mode %#o", st.Uid, st.Mode&0o7777)
	}
	names, err := listDir(m.dirFD)
	if err != nil {
		return err
	}
	if len(names) != 1 || names[0] != overlayName {
		return fmt.Errorf("it holds %q, not just %s", names, overlayName)
	}
	if !sameAt(m.dirFD, overlayName, m.ovSt) {
		return fmt.Errorf("%s is not the directory kerr made", overlayName)
	}
	ov, err := fstat(m.ovFD)
	if err != nil {
		return err
	}
	if ov.Uid != 0 || ov.Mode != unix.S_IFDIR|overlayMode {
		return fmt.Errorf("%s is uid %d, mode %#o", overlayName, ov.Uid, ov.Mode&0o7777)
	}
	inner, err := listDir(m.ovFD)
	if err != nil {
		return err
	}
	if len(inner) != 1 || inner[0] != markerName {
		return fmt.Errorf("%s holds %q, not just %s", overlayName, inner, markerName)
	}
	return nil
}

// restoreDir gives the bundle directory back its owner and mode (chown first: it may clear
// the setgid bit that chmod then restores). Privileges: root (CAP_CHOWN).
func restoreDir(fd int, path string, uid, gid, mode uint32) error {
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return fmt.Errorf("restore the owner of %s: %w", path, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("restore the mode of %s: %w", path, err)
	}
	return nil
}

// makeDirs creates the mount points and the overlay's upper and work directories.
func (m *mounter) makeDirs() error {
	type dir struct {
		parent int
		name   string
		mode   uint32
	}
	dirs := []dir{{m.dirFD, rootfsName, mountMode}}
	if !m.readOnly {
		dirs = append(dirs, dir{m.ovFD, lowerName, mountMode}, dir{m.ovFD, upperName, mountMode}, dir{m.ovFD, workName, workMode})
	}
	for _, d := range dirs {
		fd, err := mkdirAt(d.parent, d.name, d.mode)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", m.dir, err)
		}
		_ = unix.Close(fd)
		m.undo = append(m.undo, func() error {
			if err := removeAllAt(d.parent, d.name, m.orig.Dev); err != nil {
				return fmt.Errorf("bundle %s: %w", m.dir, err)
			}
			return nil
		})
	}
	return nil
}

// mountLower mounts the loop device's squashfs read-only at overlay/lower, or at rootfs
// for a read-only bundle.
func (m *mounter) mountLower() error {
	target, flags := lowerPath, uintptr(lowerFlags)
	if m.readOnly {
		target, flags = rootfsName, squashfsFlags
	}
	err := inDir(m.dirFD, func() error {
		return unix.Mount(m.loop.Path, target, "squashfs", flags, "")
	})
	switch {
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("mount the root filesystem of %s: the kernel has no squashfs support: %w", m.image, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("mount the root filesystem of %s: not a squashfs the kernel can read: %w: %w", m.image, err, errdefs.ErrInvalidImage)
	case err != nil:
		return fmt.Errorf("mount the root filesystem of %s on %s/%s: %w", m.image, m.dir, target, err)
	}
	m.undo = append(m.undo, func() error { return m.unmount(target) })
	return nil
}

// mountRootfs mounts the overlay at rootfs. The upper directory first takes the owner and
// mode of the image's root directory, since the overlay's root shows the upper's.
func (m *mounter) mountRootfs() error {
	if m.readOnly {
		return nil
	}
	if err := copyRootAttrs(m.ovFD); err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, err)
	}
	err := inDir(m.dirFD, func() error {
		return unix.Mount("overlay", rootfsName, "overlay", overlayFlags, overlayOptions)
	})
	switch {
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("mount the overlay at %s/%s: the kernel has no overlayfs support: %w", m.dir, rootfsName, err)
	case err != nil:
		return fmt.Errorf("filesystem of %s (%s) cannot hold the overlay's upper directory: mount overlay: %w", m.dir, fsName(m.dirFD), err)
	}
	m.undo = append(m.undo, func() error { return m.unmount(rootfsName) })
	return nil
}

// copyRootAttrs gives overlay/upper the owner and mode of overlay/lower's root.
// Privileges: root (CAP_CHOWN).
func copyRootAttrs(ovFD int) error {
	var lower unix.Stat_t
	if err := unix.Fstatat(ovFD, lowerName, &lower, 0); err != nil {
		return fmt.Errorf("stat the image's root: %w", err)
	}
	fd, err := openDirAt(ovFD, upperName)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	if err := unix.Fchown(fd, int(lower.Uid), int(lower.Gid)); err != nil {
		return fmt.Errorf("chown %s/%s: %w", overlayName, upperName, err)
	}
	if err := unix.Fchmod(fd, lower.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s/%s: %w", overlayName, upperName, err)
	}
	return nil
}

// unmount unmounts what mount put at name (relative to the bundle directory), lazily if it
// is busy: during a rollback nothing else should hold it, and nothing may stay behind.
func (m *mounter) unmount(name string) error {
	err := inDir(m.dirFD, func() error {
		err := unix.Unmount(name, unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(name, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("unmount %s/%s: %w", m.dir, name, err)
	}
	return nil
}

// writeConfig writes config.json, made from the image's OCI config (or its runscript) and
// the users and groups of the mounted root filesystem.
func (m *mounter) writeConfig() error {
	root, err := openDirAt(m.dirFD, rootfsName)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, err)
	}
	rootf := os.NewFile(uintptr(root), filepath.Join(m.dir, rootfsName))
	accounts, err := runtimespec.ReadAccountsAt(rootf)
	if cerr := rootf.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: users and groups of the image: %w: %w", m.image, err, errdefs.ErrInvalidImage)
	}
	spec, err := runtimespec.Generate(runtimespec.Options{
		ImageConfig:    m.ociCfg,
		RootfsPath:     rootfsName,
		ReadOnly:       m.readOnly,
		SeccompProfile: m.seccomp,
		Runscript:      m.ociCfg == nil,
		Accounts:       accounts,
	})
	if errors.Is(err, runtimespec.ErrUnknownUser) || errors.Is(err, runtimespec.ErrUnknownGroup) {
		return fmt.Errorf("config.json for %s: %w: %w", m.image, err, errdefs.ErrInvalidImage)
	}
	if err != nil {
		return fmt.Errorf("config.json for %s: %w", m.image, err)
	}
	m.undo = append(m.undo, func() error {
		if err := unix.Unlinkat(m.dirFD, configName, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", m.dir, configName, err)
		}
		return nil
	})
	if err := writeFileAt(m.dirFD, configName, spec, configMode); err != nil {
		return fmt.Errorf("bundle %s: %w", m.dir, errdefs.ClassifyIO(err))
	}
	return nil
}

// rollback undoes the done steps in reverse and returns err, with what could not be undone.
func (m *mounter) rollback(err error) error {
	var failed []error
	for i := len(m.undo) - 1; i >= 0; i-- {
		if uerr := m.undo[i](); uerr != nil {
			failed = append(failed, uerr)
		}
	}
	m.undo = nil
	if len(failed) > 0 {
		msgs := make([]string, len(failed))
		for i, f := range failed {
			msgs[i] = f.Error()
		}
		return fmt.Errorf("%w (undoing it failed too: %s; kerr oci umount --force %s cleans up)", err, strings.Join(msgs, "; "), m.dir)
	}
	return err
}

// release closes what mount held: the overlay and bundle directory fds (dropping the lock),
// the loop device (autoclear now unbinds it unless a mount uses it) and the image.
func (m *mounter) release() {
	if m.ovFD >= 0 {
		_ = unix.Close(m.ovFD)
		m.ovFD = -1
	}
	m.lock.Close()
	m.lock = nil
	for _, fd := range []*int{&m.dirFD, &m.parentFD} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
	if m.loop != nil {
		_ = m.loop.Close()
		m.loop = nil
	}
	if m.img != nil {
		_ = m.img.Close()
		m.img = nil
	}
}

// fsName names the filesystem of fd for messages: a name for common ones, else its magic.
// Privileges: none.
func fsName(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "unknown filesystem"
	}
	names := map[int64]string{
		unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", unix.NFS_SUPER_MAGIC: "nfs", unix.TMPFS_MAGIC: "tmpfs",
		unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.FUSE_SUPER_MAGIC: "fuse", unix.SQUASHFS_MAGIC: "squashfs",
		unix.MSDOS_SUPER_MAGIC: "vfat", unix.CIFS_SUPER_MAGIC: "cifs", unix.SMB2_SUPER_MAGIC: "smb",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("filesystem magic %#x", st.Type)
}
