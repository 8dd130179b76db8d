package sifimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"

	"github.com/kerr-hpc/kerr/errdefs"
)

// maxMetadataFile bounds what ReadRootFile returns: runscripts and env scripts are small, and
// an image is not trusted to be reasonable.
const maxMetadataFile = 4 << 20

// ReadRootFile reads one file from the root filesystem partition without mounting it (so it
// needs no privilege), following symlinks inside the image. It returns fs.ErrNotExist
// (wrapped) when the image has no such file.
func (i *Image) ReadRootFile(name string) ([]byte, error) {
	d, err := i.RootFS()
	if err != nil {
		return nil, err
	}
	sq, err := squashfs.Read(file.New(i.f, true), d.Size(), d.Offset(), 0)
	if err != nil {
		return nil, fmt.Errorf("read root filesystem of %s: %v: %w", i.f.Name(), err, errdefs.ErrInvalidImage)
	}
	p, err := resolve(sq, name)
	if err != nil {
		return nil, err
	}
	f, err := sq.OpenFile(p, 0)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", p, fs.ErrNotExist)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataFile+1))
	if err != nil {
		return nil, fmt.Errorf("read /%s from the image: %v: %w", p, err, errdefs.ErrInvalidImage)
	}
	if len(b) > maxMetadataFile {
		return nil, fmt.Errorf("/%s in the image is larger than %d bytes", p, maxMetadataFile)
	}
	return b, nil
}

// maxSymlinks is how many symlinks a lookup follows before giving up, as the kernel's ELOOP.
const maxSymlinks = 40

// resolve turns name into a path inside the image with no symlink in any component,
// following links the way the kernel would inside a chroot: absolute targets start again at
// the image's root and ".." never climbs above it. The image is hostile input: a cycle is an
// error, never a loop.
func resolve(sq *squashfs.FileSystem, name string) (string, error) {
	todo := splitPath(name)
	var done []string
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := path.Join(append(done, c)...)
		target, isLink, err := readlink(sq, cur)
		if err != nil {
			return "", err
		}
		if !isLink {
			done = append(done, c)
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", fmt.Errorf("/%s: too many levels of symbolic links: %w", cur, errdefs.ErrInvalidImage)
		}
		if path.IsAbs(target) {
			done = done[:0]
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// splitPath returns the non-empty, non-"." components of p.
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// readlink reports whether p (a clean relative path) is a symlink in the image and where it
// points.
func readlink(sq *squashfs.FileSystem, p string) (string, bool, error) {
	entries, err := sq.ReadDir(path.Dir(p))
	if err != nil {
		return "", false, fmt.Errorf("/%s: %w", p, fs.ErrNotExist)
	}
	base := path.Base(p)
	for _, e := range entries {
		if e.Name() != base {
			continue
		}
		if e.Type()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		info, err := e.Info()
		if err != nil {
			return "", false, fmt.Errorf("/%s: %w", p, err)
		}
		if st, ok := info.Sys().(*squashfs.StatT); ok && st.LinkTarget != "" {
			return st.LinkTarget, true, nil
		}
		return "", false, fmt.Errorf("/%s: unreadable symlink: %w", p, errdefs.ErrInvalidImage)
	}
	return "", false, fmt.Errorf("/%s: %w", p, fs.ErrNotExist)
}

// IsNotExist reports whether err says a file is missing from the image.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
