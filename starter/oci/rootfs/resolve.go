package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Privileges, for every function in this file: those of the caller (root in the
// container's mount namespace during Setup); none changes ids or capabilities.
//
// The helpers here find paths of the container inside the rootfs. A path comes from the
// spec or the image, and the image is not trusted: it may hold symlinks meant to point a
// mount or a device node at the host. So a path is first resolved as the container will
// see it (symlinks followed with the rootfs as "/", dangling ones included, so that a
// mount point is created where the container looks for it), and the symlink-free result is
// then opened one component at a time with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS) from an fd of the rootfs: a symlink swapped in between makes the
// open fail instead of leaving the rootfs. Mounts then go onto the opened fd, never onto a
// path that the kernel would resolve again.

// resolveNoLinks keeps a lookup beneath its dirfd and refuses every symlink on the way.
const resolveNoLinks = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// inRoot resolves unsafe, an absolute path as the container sees it, inside the rootfs at
// root and returns it relative to root, symlinks resolved; "" is the root itself.
func inRoot(root, unsafe string) (string, error) {
	joined, err := securejoin.SecureJoin(root, unsafe)
	if err != nil {
		return "", fmt.Errorf("resolve %s in the rootfs: %w", unsafe, err)
	}
	rel, err := filepath.Rel(root, joined)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("resolve %s in the rootfs: it left the rootfs (%s)", unsafe, joined)
	}
	if rel == "." {
		rel = ""
	}
	return rel, nil
}

// openBeneath opens name (one component or a symlink-free relative path) below dirfd,
// refusing symlinks, as an O_PATH fd.
func openBeneath(dirfd int, name string, flags uint64) (int, error) {
	if name == "" {
		name = "."
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   flags | unix.O_CLOEXEC,
			Resolve: resolveNoLinks,
		})
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			// openat2 asks for a retry when a rename raced with the lookup.
			continue
		}
		return fd, err
	}
}

// openDirs opens the directory rel below dirfd one component at a time, creating missing
// ones (mode 0755) when create is set. rel must be symlink-free (see inRoot); a symlink met
// on the way is an error. The caller closes the returned O_PATH fd.
func openDirs(dirfd int, rel string, create bool) (int, error) {
	cur, err := openBeneath(dirfd, "", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	for _, comp := range strings.Split(rel, "/") {
		if comp == "" || comp == "." {
			continue
		}
		next, err := openBeneath(cur, comp, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(cur, comp, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openBeneath(cur, comp, unix.O_PATH|unix.O_DIRECTORY)
			}
		}
		closeFd(cur)
		if err != nil {
			return -1, fmt.Errorf("%s: %w", comp, err)
		}
		cur = next
	}
	return cur, nil
}

// What a mount point must be.
type want int

const (
	wantDir  want = iota
	wantFile      // anything but a directory; created as an empty regular file
	wantAny       // an existing mount point of either kind (remount)
)

// target is a mount point opened inside the rootfs.
type target struct {
	fd      int    // O_PATH
	rel     string // its path relative to the rootfs root, symlinks resolved
	created bool   // Setup made it
	st      unix.Stat_t
}

// path is the target as the container sees it.
func (t *target) path() string { return "/" + t.rel }

func (t *target) close() { closeFd(t.fd) }

// openTarget resolves dest inside the rootfs (rootfd is the rootfs mount at root) and opens
// it, creating it and its parents when create is set. The root itself is refused: nothing
// is mounted over it.
func openTarget(rootfd int, root, dest string, w want, create bool) (*target, error) {
	rel, err := inRoot(root, dest)
	if err != nil {
		return nil, err
	}
	if rel == "" {
		return nil, fmt.Errorf("%s resolves to the container's root", dest)
	}
	dir, base := filepath.Split(rel)
	pfd, err := openDirs(rootfd, dir, create)
	if err != nil {
		return nil, fmt.Errorf("open %s in the rootfs: %w", dest, err)
	}
	defer closeFd(pfd)
	t := &target{fd: -1, rel: rel}
	fd, err := openBeneath(pfd, base, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) && create && w != wantAny {
		if w == wantDir {
			err = unix.Mkdirat(pfd, base, 0o755)
		} else {
			var f int
			f, err = unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			closeFd(f)
		}
		if err == nil || errors.Is(err, unix.EEXIST) {
			t.created = err == nil
			fd, err = openBeneath(pfd, base, unix.O_PATH)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in the rootfs: %w", dest, err)
	}
	t.fd = fd
	if err := unix.Fstat(fd, &t.st); err != nil {
		t.close()
		return nil, fmt.Errorf("stat %s in the rootfs: %w", dest, err)
	}
	isDir := t.st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case w == wantDir && !isDir:
		t.close()
		return nil, fmt.Errorf("mount point %s is not a directory", t.path())
	case w == wantFile && isDir:
		t.close()
		return nil, fmt.Errorf("mount point %s is a directory but the source is not", t.path())
	}
	return t, nil
}

func closeFd(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}
