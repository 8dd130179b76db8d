package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// RootfsPartition returns the offset and size of the SIF's primary system partition.
func RootfsPartition(path string) (offset, size int64, err error) {
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return 0, 0, err
	}
	defer f.UnloadContainer()
	d, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		return 0, 0, err
	}
	fs, _, _, err := d.PartitionMetadata()
	if err != nil {
		return 0, 0, err
	}
	if fs != sif.FsSquash {
		return 0, 0, fmt.Errorf("primary partition is %v, not squashfs", fs)
	}
	return d.Offset(), d.Size(), nil
}

// Entry is one file of a squashfs listing.
type Entry struct {
	Path   string // absolute, inside the image
	Mode   string // as ls -l prints it, e.g. drwxr-xr-x
	Owner  string // uid/gid
	Size   string // bytes, or major,minor for devices
	Target string // symlink target
}

// IsDir reports whether the entry is a directory.
func (e Entry) IsDir() bool { return strings.HasPrefix(e.Mode, "d") }

// IsSymlink reports whether the entry is a symbolic link.
func (e Entry) IsSymlink() bool { return strings.HasPrefix(e.Mode, "l") }

// ListSquashfs lists the squashfs at offset in file (unsquashfs -lln) by path.
func ListSquashfs(file string, offset int64) (map[string]Entry, error) {
	out, err := unsquashfs("-o", strconv.FormatInt(offset, 10), "-lln", "-d", "/ROOT", file)
	if err != nil {
		return nil, err
	}
	entries := map[string]Entry{}
	for line := range strings.SplitSeq(string(out), "\n") {
		i := strings.Index(line, " /ROOT")
		f := strings.Fields(line)
		if i < 0 || len(f) < 6 {
			continue
		}
		p := line[i+len(" /ROOT"):]
		var target string
		if strings.HasPrefix(f[0], "l") {
			p, target, _ = strings.Cut(p, " -> ")
		}
		if p == "" {
			p = "/"
		}
		entries[p] = Entry{Path: p, Mode: f[0], Owner: f[1], Size: f[2], Target: target}
	}
	if len(entries) == 0 {
		return nil, errors.New("empty squashfs listing")
	}
	return entries, nil
}

// CatSquashfs returns the content of one file of the squashfs at offset in file.
func CatSquashfs(file string, offset int64, path string) ([]byte, error) {
	return unsquashfs("-o", strconv.FormatInt(offset, 10), "-cat", file, strings.TrimPrefix(path, "/"))
}

// ExtractSquashfs unpacks the squashfs at offset in file into dest (which must not exist).
func ExtractSquashfs(file string, offset int64, dest string) error {
	_, err := unsquashfs("-o", strconv.FormatInt(offset, 10), "-q", "-n", "-d", dest, file)
	return err
}

func unsquashfs(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("unsquashfs", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("unsquashfs %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}
