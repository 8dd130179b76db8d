package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// userUID is the owner of the directories a test user controls.
const userUID = 65534

// victimWithFile makes a directory outside every bundle, standing for a host directory
// like /etc, with a file in it.
func victimWithFile(t *testing.T, e *env) string {
	t.Helper()
	victim := filepath.Join(e.dir, "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "passwd"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return victim
}

// checkVictimUntouched checks that nothing is mounted on victim and its file is the host's.
func checkVictimUntouched(t *testing.T, victim string) {
	t.Helper()
	if ms := mountsBelow(t, victim); len(ms) > 0 {
		t.Errorf("mounted on the host directory %s: %+v", victim, ms)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "passwd")); err != nil || string(b) != "host\n" {
		t.Errorf("host file %s/passwd reads %q, %v", victim, b, err)
	}
}

// TestOverlaySwappedBeforeTakeOverMountsNothingOutside: the owner of an existing bundle
// directory renames root's overlay/ away after the marker is written (step 3) and before
// takeOver, and puts their own overlay/ there with lower -> a host directory. Mount must
// fail, mount nothing anywhere, and leave the user's directory theirs.
func TestOverlaySwappedBeforeTakeOverMountsNothingOutside(t *testing.T) {
	e := newEnv(t)
	victim := victimWithFile(t, e)
	for _, readOnly := range []bool{false, true} {
		bundle := filepath.Join(e.dir, "user-bundle-ro"+map[bool]string{false: "0", true: "1"}[readOnly])
		if err := os.Mkdir(bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(bundle, userUID, userUID); err != nil {
			t.Fatal(err)
		}
		m := newMounter(e.sif, bundle, readOnly)
		m.seccomp = ""
		if err := m.prepare(); err != nil {
			t.Fatal(err)
		}
		steps := m.steps()
		for _, step := range steps[:3] {
			if err := step(); err != nil {
				m.release()
				t.Fatal(err)
			}
		}
		// The user's swap: allowed, the directory is still theirs.
		mustDo(t, os.Rename(filepath.Join(bundle, overlayName), filepath.Join(bundle, "x")))
		mustDo(t, os.Mkdir(filepath.Join(bundle, overlayName), 0o755))
		mustDo(t, os.Lchown(filepath.Join(bundle, overlayName), userUID, userUID))
		mustDo(t, os.Symlink(victim, filepath.Join(bundle, overlayName, lowerName)))
		mustDo(t, os.Symlink(victim, filepath.Join(bundle, rootfsName)))
		var err error
		for _, step := range steps[3:] {
			if err = step(); err != nil {
				err = m.rollback(err)
				break
			}
		}
		m.release()
		if err == nil || !errors.Is(err, errdefs.ErrExists) || !strings.Contains(err.Error(), "was changed") {
			t.Errorf("readOnly=%v: mount after the swap: %v, want it refused as changed", readOnly, err)
		}
		checkVictimUntouched(t, victim)
		if ms := mountsBelow(t, e.dir); len(ms) > 0 {
			t.Errorf("readOnly=%v: mounted: %+v", readOnly, ms)
		}
		e.waitNoLoop()
		if st := statOf(t, bundle); st.Uid != userUID || st.Mode&0o7777 != 0o755 {
			t.Errorf("readOnly=%v: bundle directory left uid %d mode %#o, want the user's again", readOnly, st.Uid, st.Mode&0o7777)
		}
		if got := entries(t, filepath.Join(bundle, "x")); len(got) != 0 {
			t.Errorf("readOnly=%v: root's overlay/ (moved to x) still holds %q", readOnly, got)
		}
	}
}

// TestCreatedDirSwappedBeforeOpenIsRefused: someone who can write the parent renames the
// directory mount just created away and puts their own empty one there before mount opens
// it. Mount must not adopt theirs, nor remove it.
func TestCreatedDirSwappedBeforeOpenIsRefused(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "created")
	testHookCreated = func(dir string) {
		mustDo(t, os.Rename(dir, dir+".root"))
		mustDo(t, os.Mkdir(dir, 0o755))
		mustDo(t, os.Chown(dir, userUID, userUID))
	}
	defer func() { testHookCreated = nil }()
	err := e.mount(bundle, false)
	if !errors.Is(err, errdefs.ErrExists) || !strings.Contains(err.Error(), "replaced as it was created") {
		t.Fatalf("mount: %v, want it refused as replaced", err)
	}
	if ms := mountsBelow(t, e.dir); len(ms) > 0 {
		t.Errorf("mounted: %+v", ms)
	}
	e.waitNoLoop()
	if st := statOf(t, bundle); st.Uid != userUID || len(entries(t, bundle)) != 0 {
		t.Errorf("the user's directory was changed: uid %d, entries %q", st.Uid, entries(t, bundle))
	}
	// What mount created, moved away, is recognised and removed by umount --force.
	if err := Umount(bundle+".root", UmountOptions{Force: true}); err != nil {
		t.Errorf("umount --force of root's moved directory: %v", err)
	}
	if _, err := os.Lstat(bundle + ".root"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("root's moved directory left: %v", err)
	}
}

// TestMkdirAtRemovesWhatItCreatedOnFailure: a mkdirAt that fails after its mkdir leaves
// nothing behind.
func TestMkdirAtRemovesWhatItCreatedOnFailure(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	fd, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(fd) }()
	fchmod = func(int, uint32) error { return unix.EIO }
	defer func() { fchmod = unix.Fchmod }()
	if nfd, err := mkdirAt(fd, "d", 0o755); err == nil {
		_ = unix.Close(nfd)
		t.Fatal("mkdirAt succeeded with a failing chmod")
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}

// TestImageWritableByOthersThanRootIsRefused: a SIF owned by a user, or root's but
// writable by group/others, is not mounted, and nothing is left.
func TestImageWritableByOthersThanRootIsRefused(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		uid  int
		mode os.FileMode
		who  string
	}{{userUID, 0o644, "uid 65534"}, {0, 0o666, "group/others"}, {0, 0o620, "group/others"}} {
		mustDo(t, os.Chown(e.sif, c.uid, 0))
		mustDo(t, os.Chmod(e.sif, c.mode))
		bundle := filepath.Join(e.dir, "b")
		err := e.mount(bundle, false)
		if !errors.Is(err, errdefs.ErrDenied) || !strings.Contains(err.Error(), "is writable by "+c.who) {
			t.Errorf("uid %d mode %v: mount: %v, want refused as writable by %s", c.uid, c.mode, err, c.who)
		}
		e.checkLeftAsFound(bundle, dirState{})
	}
	mustDo(t, os.Chown(e.sif, 0, 0))
	mustDo(t, os.Chmod(e.sif, 0o644))
	bundle := filepath.Join(e.dir, "ok")
	e.mustMount(bundle, false)
	for _, m := range mountsBelow(t, filepath.Join(bundle, lowerPath)) {
		if !strings.Contains(","+m.Options+",", ",nosuid,") {
			t.Errorf("overlay/lower mounted %q, want nosuid", m.Options)
		}
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestForceUmountDoesNotFollowSymlinkPlantedInRootfs: after umount read the mount table,
// the container replaces a directory on the path of a mount inside rootfs with a symlink
// to a host directory with a mount at the same name below it. umount --force must not
// unmount the host's mount.
func TestForceUmountDoesNotFollowSymlinkPlantedInRootfs(t *testing.T) {
	e := newEnv(t)
	victim := victimWithFile(t, e)
	mustDo(t, os.Mkdir(filepath.Join(victim, "b"), 0o755))
	mustDo(t, unix.Mount("tmpfs", filepath.Join(victim, "b"), "tmpfs", 0, "size=1m"))
	defer func() { _ = unix.Unmount(filepath.Join(victim, "b"), unix.MNT_DETACH) }()
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	nested := filepath.Join(bundle, rootfsName, "a", "b")
	mustDo(t, os.MkdirAll(nested, 0o755))
	mustDo(t, unix.Mount("tmpfs", nested, "tmpfs", 0, "size=1m"))
	testHookMountinfo = func(string) {
		a := filepath.Join(bundle, rootfsName, "a")
		mustDo(t, os.Rename(a, a+".orig"))
		mustDo(t, os.Symlink(victim, a))
	}
	defer func() { testHookMountinfo = nil }()
	if err := Umount(bundle, UmountOptions{Force: true}); err != nil {
		t.Errorf("umount --force: %v", err)
	}
	if ms := mountsBelow(t, filepath.Join(victim, "b")); len(ms) != 1 {
		t.Errorf("the host's mount at %s/b was taken off: %+v", victim, ms)
	}
	if ms := mountsBelow(t, bundle); len(ms) > 0 {
		t.Errorf("still mounted below the bundle: %+v", ms)
	}
	e.waitNoLoop()
}

// TestTwoRefusedUmountsLeaveRootfsMounted: umount's busy check (MNT_EXPIRE) marks an idle
// mount expired; two refused umounts in a row (rootfs idle, overlay/lower busy) must not
// unmount rootfs.
func TestTwoRefusedUmountsLeaveRootfsMounted(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	f, err := os.Open(filepath.Join(bundle, lowerPath, "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := Umount(bundle, UmountOptions{}); err == nil || !strings.Contains(err.Error(), "busy") {
			t.Errorf("umount %d with overlay/lower busy: %v, want busy", i+1, err)
		}
		if ms := mountsBelow(t, filepath.Join(bundle, rootfsName)); len(ms) != 1 {
			t.Fatalf("after refused umount %d rootfs mounts are %+v, want the overlay", i+1, ms)
		}
	}
	mustDo(t, f.Close())
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// TestFlockOnBundleDirDoesNotBlockUmount: a user who opened the bundle directory before
// mount took it over keeps the fd and flocks it; umount does not lock the directory itself,
// so it goes ahead. Two kerr processes still exclude each other.
func TestFlockOnBundleDirDoesNotBlockUmount(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	fd, err := openDir(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(fd) }()
	mustDo(t, unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB))
	lfd, err := lockBundle(fd, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := Umount(bundle, UmountOptions{}); err == nil || !strings.Contains(err.Error(), "in use by another kerr") {
		t.Errorf("umount while another kerr holds the bundle: %v, want in use", err)
	}
	lfd.Close()
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Errorf("umount with the directory flocked by its former owner: %v", err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBundleLockLeavesNoFileAndRefusesAStaleOne: the lock file goes with the lock, and a
// process holding the file from before it was removed does not count as holding the lock.
func TestBundleLockLeavesNoFileAndRefusesAStaleOne(t *testing.T) {
	needRoot(t)
	old := lockRoot
	lockRoot = filepath.Join(t.TempDir(), "locks")
	defer func() { lockRoot = old }()
	dir := t.TempDir()
	fd, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(fd) }()

	a, err := lockBundle(fd, dir)
	if err != nil {
		t.Fatal(err)
	}
	// B opened the lock file while A held it, and flocks once A is gone.
	stale, err := os.Open(filepath.Join(lockRoot, a.name))
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	a.Close()
	if left, _ := os.ReadDir(lockRoot); len(left) != 0 {
		t.Errorf("lock files left: %v", left)
	}
	stl := &bundleLock{dir: -1, fd: int(stale.Fd()), name: a.name}
	if d, err := openLockRoot(); err == nil {
		stl.dir = d
		defer func() { _ = unix.Close(d) }()
	}
	mustDo(t, unix.Flock(stl.fd, unix.LOCK_EX|unix.LOCK_NB))
	if stl.linked() {
		t.Error("a lock on the removed file counts as the bundle's lock")
	}
	// A new locker gets a fresh file and the lock, although the stale flock is held.
	c, err := lockBundle(fd, dir)
	if err != nil {
		t.Fatalf("lock after the holder left: %v", err)
	}
	c.Close()
}
