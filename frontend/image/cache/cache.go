// Package cache is kerr's content-addressed store of image blobs and built SIFs.
//
// Layout under the root (KERR_CACHEDIR, default ~/.cache/kerr, mode 0700):
//
//	blobs/sha256/<hex>   a compressed layer or config, its name its digest
//	sif/<key>.sif        a SIF built from a manifest digest (key: see SIFKey)
//	tmp/                 downloads in progress
//
// Every entry is written to tmp/, checked, and renamed into place, so readers never see a
// partial file and two pulls at once at worst download the same blob twice: the second
// rename replaces an identical file. Nothing is ever modified in place.
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/errdefs"
)

// Cache is a cache root on disk.
type Cache struct {
	root string
}

// DefaultDir is $KERR_CACHEDIR, or ~/.cache/kerr.
func DefaultDir() (string, error) {
	if d := os.Getenv("KERR_CACHEDIR"); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set KERR_CACHEDIR)", err)
	}
	return filepath.Join(home, ".cache", "kerr"), nil
}

// Open creates the cache layout under dir if needed (0700) and returns it.
func Open(dir string) (*Cache, error) {
	for _, d := range []string{dir, filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "sif"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create cache directory %s: %w", d, err)
		}
	}
	// MkdirAll leaves an existing root as it is; the cache holds credentials-derived data
	// (private images), so it must not be readable by others.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod cache directory %s: %w", dir, err)
	}
	return &Cache{root: dir}, nil
}

// Root is the cache's directory.
func (c *Cache) Root() string { return c.root }

func (c *Cache) blobPath(d v1.Hash) string {
	return filepath.Join(c.root, "blobs", d.Algorithm, d.Hex)
}

// BlobPath returns the path of a cached blob and whether it is there.
func (c *Cache) BlobPath(d v1.Hash) (string, bool) {
	p := c.blobPath(d)
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

// PutBlob copies r into the cache under digest d, verifying the digest (and size, when
// size >= 0) before the blob becomes visible. It returns the blob's path.
func (c *Cache) PutBlob(d v1.Hash, size int64, r io.Reader) (string, error) {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return "", fmt.Errorf("blob digest %s: only sha256 is supported: %w", d, errdefs.ErrInvalidImage)
	}
	tmp, err := os.CreateTemp(filepath.Join(c.root, "tmp"), "blob-*")
	if err != nil {
		return "", fmt.Errorf("cache blob %s: %w", d, errdefs.ClassifyIO(err))
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("download blob %s: %w", d, errdefs.ClassifyIO(err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return "", fmt.Errorf("blob %s is corrupt: its content hashes to sha256:%s: %w", d, got, errdefs.ErrInvalidImage)
	}
	if size >= 0 && n != size {
		return "", fmt.Errorf("blob %s is %d bytes, the manifest says %d: %w", d, n, size, errdefs.ErrInvalidImage)
	}
	p := c.blobPath(d)
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("cache blob %s: %w", d, err)
	}
	return p, nil
}

// SIFKey names a SIF built from the image with manifest digest d for an architecture by a
// given layout version of kerr's builder; changing any of them builds anew.
func SIFKey(manifest v1.Hash, arch, builderVersion string) string {
	sum := sha256.Sum256([]byte(manifest.String() + "\x00" + arch + "\x00" + builderVersion))
	return hex.EncodeToString(sum[:])
}

// SIFPath returns the path of a cached SIF and whether it is there.
func (c *Cache) SIFPath(key string) (string, bool) {
	p := filepath.Join(c.root, "sif", key+".sif")
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

// PutSIF copies the finished SIF at src into the cache under key.
func (c *Cache) PutSIF(key, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("cache sif: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Join(c.root, "tmp"), "sif-*")
	if err != nil {
		return fmt.Errorf("cache sif: %w", errdefs.ClassifyIO(err))
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache sif: %w", errdefs.ClassifyIO(err))
	}
	if err := os.Rename(tmp.Name(), filepath.Join(c.root, "sif", key+".sif")); err != nil {
		return fmt.Errorf("cache sif: %w", err)
	}
	return nil
}

// TempDir returns the cache's directory for work in progress.
func (c *Cache) TempDir() string { return filepath.Join(c.root, "tmp") }

// Entry is one cached object, for `kerr cache list`.
type Entry struct {
	Kind string // "blob" or "sif"
	Name string // digest or key
	Size int64
}

// List returns every cached blob and SIF, blobs first, each sorted by name.
func (c *Cache) List() ([]Entry, error) {
	var out []Entry
	for _, k := range []struct{ kind, dir, prefix, suffix string }{
		{"blob", filepath.Join(c.root, "blobs", "sha256"), "sha256:", ""},
		{"sif", filepath.Join(c.root, "sif"), "", ".sif"},
	} {
		des, err := os.ReadDir(k.dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("list cache: %w", err)
		}
		var part []Entry
		for _, de := range des {
			fi, err := de.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			part = append(part, Entry{Kind: k.kind, Name: k.prefix + strings.TrimSuffix(de.Name(), k.suffix), Size: fi.Size()})
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Name < part[j].Name })
		out = append(out, part...)
	}
	return out, nil
}

// Clean removes every blob, SIF and leftover temporary file, and returns how many bytes it
// freed. The layout stays, so a pull running at the same time keeps working.
func (c *Cache) Clean() (int64, error) {
	var freed int64
	for _, d := range []string{filepath.Join(c.root, "blobs", "sha256"), filepath.Join(c.root, "sif"), filepath.Join(c.root, "tmp")} {
		des, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return freed, fmt.Errorf("clean cache: %w", err)
		}
		for _, de := range des {
			p := filepath.Join(d, de.Name())
			if fi, err := de.Info(); err == nil {
				freed += fi.Size()
			}
			if err := os.RemoveAll(p); err != nil {
				return freed, fmt.Errorf("clean cache: %w", err)
			}
		}
	}
	return freed, nil
}
