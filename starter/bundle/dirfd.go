package bundle

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// The helpers in this file work on directory fds, never on joined path strings: once the
// bundle directory is open, a rename or symlink swap of it or of its parents cannot
// redirect what is created, mounted or removed. Privileges, for each of them: those of the
// caller (root in this engine), and none changes ids or capabilities.

// openDir opens path as a directory; the last component must not be a symlink.
func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// openDirAt opens name in dirfd as a directory, not following a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// mkdirAt creates the directory name in dirfd with exactly mode (the umask does not
// apply): created, opened without following symlinks, checked to be root's (a directory
// someone else swapped in between the mkdir and the open is refused), then chmod'ed
// through the new fd. On failure it removes what it created, when that is still what the
// name holds: the caller has no undo for it yet. The caller closes the returned fd.
func mkdirAt(dirfd int, name string, mode uint32) (int, error) {
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		return -1, &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	fd, err := openDirAt(dirfd, name)
	if err != nil {
		// Whatever the name holds now, only an empty directory goes; a swapped-in file or
		// symlink stays.
		_ = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		return -1, err
	}
	st, err := fstat(fd)
	if err == nil && st.Uid != 0 {
		// Not the directory root just made: someone replaced it. Leave theirs alone.
		_ = unix.Close(fd)
		return -1, fmt.Errorf("mkdir %s: it was replaced by a directory of uid %d as it was created", name, st.Uid)
	}
	if err == nil {
		err = fchmod(fd, mode)
	}
	if err != nil {
		_ = unix.Close(fd)
		if sameAt(dirfd, name, st) {
			_ = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		}
		return -1, &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return fd, nil
}

// fchmod is unix.Fchmod; tests make it fail.
var fchmod = unix.Fchmod

// sameAt reports whether name in dirfd (not followed) is the file that st describes.
func sameAt(dirfd int, name string, st unix.Stat_t) bool {
	var cur unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &cur, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false
	}
	return cur.Dev == st.Dev && cur.Ino == st.Ino
}

// openBeneath opens rel below dirfd as an O_PATH fd, refusing any symlink on the way and any
// path that leaves dirfd (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a path inside a
// container's writable rootfs cannot be redirected to the host. rel "" is dirfd itself
// (dup'ed). Needs Linux 5.6.
func openBeneath(dirfd int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return fd, nil
}

// mountIDAt is the id of the mount that name in dirfd (not followed) is on: the top mount
// when name is a mount point, as mountinfo's first field numbers it.
func mountIDAt(dirfd int, name string) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, &os.PathError{Op: "statx", Path: name, Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: the kernel gave no mount id (Linux 5.8 or later is needed)", name)
	}
	return stx.Mnt_id, nil
}

// tmpPrefix starts the names of files being written; a leftover one is removed by umount.
const tmpPrefix = ".kerr-tmp-"

// writeFileAt writes data to name in dirfd atomically: a new temp file in the same
// directory, written, chmod'ed to mode, synced, then renamed over name, and the directory
// synced. A reader, or a crash, sees the old state or the whole new file.
func writeFileAt(dirfd int, name string, data []byte, mode uint32) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := tmpPrefix + name + "." + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, &os.PathError{Op: "create", Path: tmp, Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(os.FileMode(mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err == nil {
		err = unix.Fsync(dirfd)
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// readFileAt reads the regular file name in dirfd, at most max bytes; a larger file is an
// error. It does not follow a symlink.
func readFileAt(dirfd int, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return b, nil
}

// existsAt reports whether name exists in dirfd (as anything, a symlink included).
func existsAt(dirfd int, name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return true, nil
}

// listDir returns the names in the directory fd (without "." and ".."). fd stays open.
func listDir(fd int) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup directory fd: %w", err)
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer func() { _ = f.Close() }()
	// A dup shares the file offset: start from the top, whoever read it before.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind directory: %w", err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	return names, nil
}

// removeAllAt removes name in dirfd and, if it is a directory, everything below it,
// without following symlinks. It refuses to descend into anything on a device other than
// dev: a filesystem still mounted below the bundle is left alone, never emptied. A missing
// name is not an error.
func removeAllAt(dirfd int, name string, dev uint64) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Dev != dev {
		return fmt.Errorf("remove %s: it is on another filesystem (something is still mounted there)", name)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: name, Err: err}
		}
		return nil
	}
	fd, err := openDirAt(dirfd, name)
	if err != nil {
		return err
	}
	names, err := listDir(fd)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n, dev); err != nil {
				err = fmt.Errorf("%s/%w", name, err)
				break
			}
		}
	}
	_ = unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// fstat returns the stat of an fd.
func fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, fmt.Errorf("fstat: %w", err)
	}
	return st, nil
}

// realPath is the path of the open directory fd as this process's mount table names it.
func realPath(fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("resolve the bundle directory: %w", err)
	}
	return p, nil
}

// lockRoot is the root-only directory that holds the bundles' lock files. Tests move it.
var lockRoot = "/run/kerr/bundles"

// bundleLock is a held lockBundle lock.
type bundleLock struct {
	dir  int    // lockRoot
	fd   int    // the lock file, flocked
	name string // its name in lockRoot
}

// lockBundle takes an exclusive flock, without waiting, that keeps two kerr processes from
// working on the bundle directory fd at once. The lock is not on the bundle directory
// itself, which its owner could open before mount takes it over and flock forever, but on
// lockRoot/DEV-INO.lock, keyed by the directory's identity, in a directory only root can
// enter (created 0700). Close removes the lock file while still holding it; so that this is
// safe, a lock counts only if, once flocked, the file is still the one lockRoot names: a
// process that opened the file before it was removed finds it unlinked and reports the
// bundle in use, as it would have a moment earlier.
// Privileges: root (creates and checks lockRoot).
func lockBundle(fd int, path string) (*bundleLock, error) {
	st, err := fstat(fd)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	dir, err := openLockRoot()
	if err != nil {
		return nil, err
	}
	l := &bundleLock{dir: dir, fd: -1, name: fmt.Sprintf("%d-%d.lock", st.Dev, st.Ino)}
	l.fd, err = unix.Openat(dir, l.name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		_ = unix.Close(dir)
		return nil, fmt.Errorf("lock %s: %w", path, &os.PathError{Op: "open", Path: lockRoot + "/" + l.name, Err: err})
	}
	for {
		err = unix.Flock(l.fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err == nil && !l.linked() {
		err = unix.EWOULDBLOCK // removed by the holder we raced with: it was in use
	}
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		err = fmt.Errorf("%s is in use by another kerr oci mount or umount", path)
	default:
		err = fmt.Errorf("lock %s: %w", path, err)
	}
	_ = unix.Close(l.fd)
	_ = unix.Close(dir)
	return nil, err
}

// linked reports whether the flocked file is still the one lockRoot holds under l.name.
func (l *bundleLock) linked() bool {
	var held, named unix.Stat_t
	if unix.Fstat(l.fd, &held) != nil || unix.Fstatat(l.dir, l.name, &named, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return held.Dev == named.Dev && held.Ino == named.Ino
}

// Close removes the lock file and releases the lock. Privileges: root.
func (l *bundleLock) Close() {
	if l == nil || l.fd < 0 {
		return
	}
	_ = unix.Unlinkat(l.dir, l.name, 0)
	_ = unix.Close(l.fd)
	_ = unix.Close(l.dir)
	l.fd = -1
}

// openLockRoot creates lockRoot (and its parent) 0700 if absent and opens it, refusing one
// that is not a root-owned directory closed to group and others.
func openLockRoot() (int, error) {
	for _, d := range []string{filepath.Dir(lockRoot), lockRoot} {
		if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create the lock directory: %w", &os.PathError{Op: "mkdir", Path: d, Err: err})
		}
	}
	fd, err := openDir(lockRoot)
	if err != nil {
		return -1, fmt.Errorf("lock directory: %w", err)
	}
	st, err := fstat(fd)
	if err == nil && (st.Uid != 0 || st.Mode&0o022 != 0) {
		err = fmt.Errorf("it is owned by uid %d with mode %#o; it must be root's and not group/other-writable", st.Uid, st.Mode&0o7777)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("lock directory %s: %w", lockRoot, err)
	}
	return fd, nil
}

// inDir runs fn on an OS thread whose working directory is the directory fd and private
// to that thread (unshare CLONE_FS), so that fn can name mount points and overlay layers by
// fixed relative names ("overlay/lower") instead of absolute paths that could hold commas,
// colons or a symlink swapped in later. The process's own working directory is untouched.
// The thread is never unlocked, so Go ends it when fn returns and its private state goes
// with it. Privileges: the caller's; unshare(CLONE_FS) needs none.
func inDir(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Fchdir(fd); err != nil {
			errc <- fmt.Errorf("enter the bundle directory: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
