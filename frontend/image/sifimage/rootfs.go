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
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	for hops := 0; hops < 40; hops++ {
		target, isLink, err := readlink(sq, p)
		if err != nil {
			return nil, err
		}
		if !isLink {
			break
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = strings.TrimPrefix(path.Clean("/"+target), "/")
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

// readlink reports whether p is a symlink in the image and where it points.
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
		return "", false, fmt.Errorf("/%s: cannot read symlink", p)
	}
	return "", false, fmt.Errorf("/%s: %w", p, fs.ErrNotExist)
}

// IsNotExist reports whether err says a file is missing from the image.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
