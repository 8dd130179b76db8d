// Package sandbox writes a flattened image tar stream into a directory, for
// `kerr build --sandbox DIR`, so that no entry can touch anything outside that directory.
//
// Every path is resolved inside the directory by the kernel, never by joining strings: the
// parent of each entry is opened with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS) relative to a descriptor of the directory, and the last component
// is created with *at calls that do not follow symlinks (mkdirat, openat with
// O_CREAT|O_EXCL|O_NOFOLLOW, symlinkat, linkat without AT_SYMLINK_FOLLOW, mknodat).
//
// Rules:
//   - An entry whose parent path goes through a symlink is refused with a warning, whether
//     the symlink points inside the image or out of it: "a -> /etc" followed by "a/passwd"
//     writes nothing. This matches the flatten stream and squashfs, where nothing lives
//     below a non-directory, so a sandbox and a SIF built from one image hold the same tree.
//   - Missing parents are created (mode 0755 unless an entry for them comes later).
//   - An entry replaces whatever is at its path (removed first, never followed); an
//     existing directory stays when the entry is a directory too.
//   - Hard links are made only to a target inside the directory that already exists; a
//     target name is resolved like any other, so "/etc/passwd" means DIR/etc/passwd. A link
//     to a symlink links the symlink itself.
//   - Metadata: modes as in the stream, setuid and setgid bits included even when
//     unprivileged, since a file owned by the caller grants nothing through them; mtimes
//     (symlinks included, never followed); owners, device nodes and xattrs only with
//     Options.Privileged, otherwise dropped with a warning. Directories are created 0700
//     and get their mode, owner and mtime in a last pass, deepest first, so that read-only
//     directories can still be filled and creating children does not undo their mtime.
package sandbox

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/flatten"
)

// Options tunes Extract.
type Options struct {
	// Warn is called once for each entry dropped or only partly applied. May be nil.
	Warn func(format string, args ...any)
	// Privileged lets Extract set owners and xattrs and create device nodes: set it when
	// the caller is root (or holds CAP_CHOWN, CAP_MKNOD and CAP_SYS_ADMIN for trusted.*).
	Privileged bool
}

// resolveInRoot confines every lookup to the sandbox and refuses symlinks on the way.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

const copyBufSize = 256 << 10

// Extract unpacks the tar stream r into dir, which must exist and be empty (errdefs.ErrExists
// otherwise). Entries that cannot be placed safely are dropped with a warning; read errors,
// write errors and ctx cancellation stop it and leave a partly filled dir for the caller to
// remove. It runs with the caller's privileges; see Options.Privileged.
func Extract(ctx context.Context, r io.Reader, dir string, opts Options) error {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening sandbox directory %s: %w", dir, err)
	}
	defer unix.Close(root)
	if err := checkEmpty(root, dir); err != nil {
		return err
	}
	// Fail early and clearly where openat2 is missing (Linux < 5.6, or filtered by
	// seccomp): without it paths cannot be confined to the directory.
	fd, err := openat2(root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("extracting into %s: openat2 unavailable (Linux 5.6 or newer needed to confine paths): %w", dir, err)
	}
	unix.Close(fd)

	x := &extractor{
		done:    ctx.Done(),
		ctx:     ctx,
		root:    root,
		opts:    opts,
		dirs:    make(map[string]dirMeta),
		buf:     make([]byte, copyBufSize),
		cacheFd: -1,
	}
	defer x.dropCache()
	if err := x.run(tar.NewReader(r)); err != nil {
		return fmt.Errorf("extracting into %s: %w", dir, err)
	}
	if err := x.finishDirs(); err != nil {
		return fmt.Errorf("extracting into %s: %w", dir, err)
	}
	return nil
}

func checkEmpty(root int, dir string) error {
	fd, err := unix.Openat(root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reading sandbox directory %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("reading sandbox directory %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("sandbox directory %s is not empty: %w", dir, errdefs.ErrExists)
	}
	return nil
}

// dirMeta is a directory's metadata, applied after everything below it exists.
type dirMeta struct {
	mode     uint32
	uid, gid int
	mtime    time.Time
	xattrs   map[string]string
	implicit bool // created as a missing parent: only the mode is known
}

type extractor struct {
	done <-chan struct{}
	ctx  context.Context
	root int
	opts Options
	dirs map[string]dirMeta
	buf  []byte

	// The parent directory of the last entry, kept open: entries come grouped by directory.
	cacheName string
	cacheFd   int
}

func (x *extractor) warn(format string, args ...any) {
	if x.opts.Warn != nil {
		x.opts.Warn(format, args...)
	}
}

func (x *extractor) cancelled() error {
	select {
	case <-x.done:
		return x.ctx.Err()
	default:
		return nil
	}
}

func (x *extractor) run(tr *tar.Reader) error {
	for {
		if err := x.cancelled(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("reading tar stream: %w: %w", errdefs.ErrInvalidImage, err)
			}
			return fmt.Errorf("reading tar stream: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
}

// errSkip marks an entry that was dropped with a warning already given.
var errSkip = errors.New("entry skipped")

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	name, ok := flatten.CleanName(hdr.Name)
	if !ok {
		x.warn("dropped entry with invalid name %q", hdr.Name)
		return nil
	}
	typ := hdr.Typeflag
	if name == "." {
		if typ != tar.TypeDir {
			x.warn("dropped root entry %q: not a directory", hdr.Name)
			return nil
		}
		x.dirs["."] = x.meta(hdr)
		return nil
	}
	switch typ {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !x.opts.Privileged {
			x.warn("dropped device node %q: needs privileges", name)
			return nil
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		x.warn("dropped %q of unsupported type %q", name, typ)
		return nil
	}

	parent, base := splitName(name)
	pfd, err := x.parentFd(parent, name)
	if err != nil {
		if errors.Is(err, errSkip) {
			return nil
		}
		return err
	}
	switch typ {
	case tar.TypeDir:
		err = x.mkdir(pfd, name, base, hdr)
	case tar.TypeReg:
		err = x.file(pfd, name, base, hdr, body)
	case tar.TypeSymlink:
		err = x.symlink(pfd, name, base, hdr)
	case tar.TypeLink:
		err = x.hardlink(pfd, name, base, hdr)
	default:
		err = x.node(pfd, name, base, typ, hdr)
	}
	if errors.Is(err, errSkip) {
		return nil
	}
	return err
}

func splitName(name string) (parent, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func (x *extractor) meta(hdr *tar.Header) dirMeta {
	return dirMeta{mode: uint32(hdr.Mode & 0o7777), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime, xattrs: xattrs(hdr)}
}

// xattrs returns the entry's SCHILY.xattr.* PAX records by attribute name.
func xattrs(hdr *tar.Header) map[string]string {
	var m map[string]string
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if m == nil {
				m = make(map[string]string)
			}
			m[name] = v
		}
	}
	return m
}

func openat2(dirfd int, path string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: resolveInRoot}
	for range 16 {
		fd, err := unix.Openat2(dirfd, path, &how)
		// EAGAIN: a concurrent rename somewhere made the kernel unsure; ask again.
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// parentFd returns a descriptor of the directory parent (relative to the sandbox), creating
// it when missing. It is owned by the cache: callers do not close it. errSkip means the
// entry cannot be placed and was warned about.
func (x *extractor) parentFd(parent, name string) (int, error) {
	if parent == "" {
		return x.root, nil
	}
	if x.cacheFd >= 0 && x.cacheName == parent {
		return x.cacheFd, nil
	}
	fd, err := x.openDir(parent, true)
	switch {
	case err == nil:
	case errors.Is(err, unix.ELOOP):
		x.warn("dropped %q: a parent is a symlink", name)
		return -1, errSkip
	case errors.Is(err, unix.ENOTDIR):
		x.warn("dropped %q: a parent is not a directory", name)
		return -1, errSkip
	default:
		return -1, fmt.Errorf("opening parent of %s: %w", name, err)
	}
	x.dropCache()
	x.cacheName, x.cacheFd = parent, fd
	return fd, nil
}

func (x *extractor) dropCache() {
	if x.cacheFd >= 0 {
		unix.Close(x.cacheFd)
	}
	x.cacheName, x.cacheFd = "", -1
}

// openDir opens the directory rel inside the sandbox as O_PATH; with create, missing
// directories on the way are made. The caller closes the result.
func (x *extractor) openDir(rel string, create bool) (int, error) {
	fd, err := openat2(x.root, rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != unix.ENOENT || !create {
		return fd, err
	}
	parent, base := splitName(rel)
	pfd := x.root
	if parent != "" {
		if pfd, err = x.openDir(parent, true); err != nil {
			return -1, err
		}
		defer unix.Close(pfd)
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
		return -1, fsErr("creating directory", rel, err)
	}
	if _, ok := x.dirs[rel]; !ok {
		x.dirs[rel] = dirMeta{mode: 0o755, implicit: true}
	}
	return openat2(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
}

// fsErr wraps a failed file system call, marking a full disk as errdefs.ErrNoSpace.
func fsErr(op, name string, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%s %s: %w: %w", op, name, errdefs.ErrNoSpace, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

func (x *extractor) mkdir(pfd int, name, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = x.remove(pfd, name, base); err == nil {
				err = unix.Mkdirat(pfd, base, 0o700)
			}
		}
	}
	if err != nil {
		return fsErr("creating directory", name, err)
	}
	x.dirs[name] = x.meta(hdr)
	return nil
}

// create runs mk to make the last component; when something is in the way, it is removed
// (never followed) and mk tried once more.
func (x *extractor) create(pfd int, name, base string, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if err = x.remove(pfd, name, base); err == nil {
			err = mk()
		}
	}
	if err != nil {
		return fsErr("creating", name, err)
	}
	return nil
}

func (x *extractor) file(pfd int, name, base string, hdr *tar.Header, body io.Reader) error {
	fd := -1
	err := x.create(pfd, name, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := x.copyData(f, body, hdr.Size, name); err != nil {
		return err
	}
	// Owner before mode: chown clears the setuid and setgid bits.
	if x.opts.Privileged {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			x.warn("owner of %q not set: %v", name, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fsErr("setting mode of", name, err)
	}
	x.setXattrs(name, xattrs(hdr), func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	if err := futimes(fd, hdr.ModTime); err != nil {
		return fsErr("setting mtime of", name, err)
	}
	if err := f.Close(); err != nil {
		return fsErr("writing", name, err)
	}
	return nil
}

func (x *extractor) copyData(f *os.File, body io.Reader, size int64, name string) error {
	for size > 0 {
		if err := x.cancelled(); err != nil {
			return err
		}
		b := x.buf
		if int64(len(b)) > size {
			b = b[:size]
		}
		n, rerr := body.Read(b)
		if n > 0 {
			if _, err := f.Write(b[:n]); err != nil {
				return fsErr("writing", name, err)
			}
			size -= int64(n)
		}
		if rerr == io.EOF && size > 0 {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && size > 0 {
			return fmt.Errorf("reading data of %s: %w: %w", name, errdefs.ErrInvalidImage, rerr)
		}
	}
	return nil
}

func (x *extractor) symlink(pfd int, name, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		x.warn("dropped symlink %q with an empty target", name)
		return errSkip
	}
	if err := x.create(pfd, name, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return err
	}
	return x.finishNode(pfd, name, base, hdr, false)
}

func (x *extractor) hardlink(pfd int, name, base string, hdr *tar.Header) error {
	target, ok := flatten.CleanName(hdr.Linkname)
	if !ok || target == "." || target == name {
		x.warn("dropped hard link %q to %q: invalid target", name, hdr.Linkname)
		return errSkip
	}
	tparent, tbase := splitName(target)
	tfd := x.root
	if tparent != "" {
		var err error
		if tfd, err = x.openDir(tparent, false); err != nil {
			x.warn("dropped hard link %q to %q: %v", name, hdr.Linkname, err)
			return errSkip
		}
		defer unix.Close(tfd)
	}
	// Flags 0: a symlink target is linked itself, never followed.
	err := x.create(pfd, name, base, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) })
	if err != nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EXDEV)) {
		x.warn("dropped hard link %q to %q: %v", name, hdr.Linkname, err)
		return errSkip
	}
	return err
}

// node makes a FIFO or (privileged) device node.
func (x *extractor) node(pfd int, name, base string, typ byte, hdr *tar.Header) error {
	mode, dev := uint32(unix.S_IFIFO), 0
	switch typ {
	case tar.TypeChar:
		mode, dev = unix.S_IFCHR, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	case tar.TypeBlock:
		mode, dev = unix.S_IFBLK, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	}
	err := x.create(pfd, name, base, func() error { return unix.Mknodat(pfd, base, mode|0o600, dev) })
	if err != nil {
		if typ != tar.TypeFifo && errors.Is(err, unix.EPERM) {
			x.warn("dropped device node %q: %v", name, err)
			return errSkip
		}
		return err
	}
	return x.finishNode(pfd, name, base, hdr, true)
}

// finishNode sets owner, mode (when chmod), xattrs and mtime of a symlink, FIFO or device,
// none of which may be opened for writing; no call follows a symlink at base.
func (x *extractor) finishNode(pfd int, name, base string, hdr *tar.Header, chmod bool) error {
	if x.opts.Privileged {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			x.warn("owner of %q not set: %v", name, err)
		}
	}
	if chmod {
		if err := chmodNoFollow(pfd, base, uint32(hdr.Mode&0o7777)); err != nil {
			return fsErr("setting mode of", name, err)
		}
	}
	if xa := xattrs(hdr); xa != nil {
		// No *at form of lsetxattr before Linux 6.13: go through the parent's descriptor,
		// which was resolved inside the sandbox; lsetxattr does not follow base.
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		x.setXattrs(name, xa, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) })
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fsErr("setting mtime of", name, err)
	}
	return nil
}

// chmodNoFollow changes the mode of the FIFO or device at base. Before fchmodat2 (Linux 6.6)
// there is no chmod that refuses symlinks, so the node is pinned with an O_PATH descriptor,
// checked, and changed through that descriptor's /proc link, which names the inode itself.
func chmodNoFollow(pfd int, base string, mode uint32) error {
	err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// futimes sets the mtime (and atime) of the file open as fd.
func futimes(fd int, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
	if err == unix.EINVAL || err == unix.ENOENT { // kernels without AT_EMPTY_PATH here
		err = unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0)
	}
	return err
}

func (x *extractor) setXattrs(name string, xa map[string]string, set func(string, []byte) error) {
	if len(xa) == 0 {
		return
	}
	if !x.opts.Privileged {
		x.warn("xattrs of %q not set: needs privileges", name)
		return
	}
	for k, v := range xa {
		if err := set(k, []byte(v)); err != nil {
			x.warn("xattr %s of %q not set: %v", k, name, err)
		}
	}
}

// remove deletes base (and, for a directory, everything below it) without following
// symlinks. Directories below were created 0700 by this extraction, so they can be emptied.
func (x *extractor) remove(pfd int, name, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if err != unix.EISDIR {
		return err
	}
	// A directory goes: forget it, and the cached descriptor if it points into it (pfd,
	// which the caller still uses, is its parent and stays open).
	if x.cacheName == name || strings.HasPrefix(x.cacheName, name+"/") {
		x.dropCache()
	}
	for d := range x.dirs {
		if d == name || strings.HasPrefix(d, name+"/") {
			delete(x.dirs, d)
		}
	}
	return removeDir(pfd, base)
}

func removeDir(pfd int, base string) error {
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		err := unix.Unlinkat(fd, n, 0)
		if err == unix.EISDIR {
			err = removeDir(fd, n)
		}
		if err != nil {
			return err
		}
	}
	return unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
}

// finishDirs applies directory metadata, deepest first, the sandbox root last: a parent
// made read-only or unsearchable must not block its children, and nothing created below a
// directory after its mtime is set would change it again.
func (x *extractor) finishDirs() error {
	x.dropCache()
	names := make([]string, 0, len(x.dirs))
	for n := range x.dirs {
		names = append(names, n)
	}
	depth := func(n string) int {
		if n == "." {
			return -1
		}
		return strings.Count(n, "/")
	}
	sort.Slice(names, func(i, j int) bool {
		if di, dj := depth(names[i]), depth(names[j]); di != dj {
			return di > dj
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		if err := x.cancelled(); err != nil {
			return err
		}
		if err := x.finishDir(n, x.dirs[n]); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) finishDir(name string, m dirMeta) error {
	fd, err := openat2(x.root, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil // replaced by a later entry
		}
		return fsErr("opening directory", name, err)
	}
	defer unix.Close(fd)
	if x.opts.Privileged && !m.implicit {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			x.warn("owner of %q not set: %v", name, err)
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fsErr("setting mode of", name, err)
	}
	x.setXattrs(name, m.xattrs, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	if m.implicit {
		return nil
	}
	if err := futimes(fd, m.mtime); err != nil {
		return fsErr("setting mtime of", name, err)
	}
	return nil
}
