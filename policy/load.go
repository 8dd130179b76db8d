package policy

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
)

// MaxFileSize bounds a policy file; a bigger one is refused before it is read.
const MaxFileSize = 1 << 20

// Load opens the policy file at path and parses it, refusing it unless it is a regular file
// (never a symlink: it is opened with O_NOFOLLOW), owned by root, not writable by group or
// others, and at most MaxFileSize bytes. The checks are made on the open fd, so the file
// checked is the file read. A refusal names the file and why, and wraps errdefs.ErrDenied;
// a missing file wraps errdefs.ErrNotFound; a bad policy is an *Error.
//
// Privileges: any. The starter's stage 1 calls it after dropping privileges for good: the
// policy file is world-readable, and the checks, not the caller's rights, make it trusted.
func Load(path string) (*Policy, error) {
	p, _, err := load(path, true)
	return p, err
}

// LoadDraft reads a policy file an admin is editing, for `kerr policy check FILE`: it
// follows symlinks and does not refuse a file for its owner or mode, but returns what Load
// would refuse as warnings. A file that is not a regular file or is too big is still an
// error. Privileges: any; never use its result to decide anything.
func LoadDraft(path string) (*Policy, []string, error) {
	return load(path, false)
}

func load(path string, strict bool) (*Policy, []string, error) {
	var warnings []string
	if !strict {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			warnings = append(warnings, fmt.Sprintf("%s: is a symbolic link; the starter refuses it", path))
		}
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if strict {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, nil, fmt.Errorf("policy file %s: does not exist: %w", path, errdefs.ErrNotFound)
		case errors.Is(err, unix.ELOOP):
			return nil, nil, fmt.Errorf("policy file %s: is a symbolic link: %w", path, errdefs.ErrDenied)
		}
		return nil, nil, fmt.Errorf("policy file %s: open: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()

	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, fmt.Errorf("policy file %s: stat: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, fmt.Errorf("policy file %s: is not a regular file (%s): %w", path, fileType(st.Mode), errdefs.ErrDenied)
	}
	if st.Size > MaxFileSize {
		return nil, nil, fmt.Errorf("policy file %s: is %d bytes, more than %d: %w", path, st.Size, MaxFileSize, errdefs.ErrDenied)
	}
	var problems []string
	if st.Uid != 0 {
		problems = append(problems, fmt.Sprintf("is owned by uid %d, not root", st.Uid))
	}
	if st.Mode&0o022 != 0 {
		problems = append(problems, fmt.Sprintf("is writable by group or others (mode %04o)", st.Mode&0o7777))
	}
	for _, pr := range problems {
		if strict {
			return nil, nil, fmt.Errorf("policy file %s: %s: %w", path, pr, errdefs.ErrDenied)
		}
		warnings = append(warnings, fmt.Sprintf("%s: %s; the starter refuses it", path, pr))
	}
	// The file may grow after fstat; read one byte more than allowed to notice.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("policy file %s: read: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("policy file %s: is more than %d bytes: %w", path, MaxFileSize, errdefs.ErrDenied)
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, nil, err
	}
	return p, warnings, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "unknown type"
}
