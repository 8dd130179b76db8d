package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/ref"
)

// refNameAnnotation is where an OCI layout's index names its images' tags.
const refNameAnnotation = "org.opencontainers.image.ref.name"

func openFile(path string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open layer: %w", err)
		}
		return f, nil
	}
}

func notFound(what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: no such file or directory: %w", what, errdefs.ErrNotFound)
	}
	return err
}

// resolveLayout opens image tag (or the only image) in the OCI layout at dir. cleanup, if
// not nil, is run when the image is closed.
func resolveLayout(dir, tag string, opts Options, cleanup func()) (*Image, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, notFound(fmt.Sprintf("%s is not an OCI image layout (no index.json)", dir), err)
	}
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %v: %w", dir, err, errdefs.ErrInvalidImage)
	}
	desc, err := pickByTag(ii, dir, tag)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		child, err := ii.ImageIndex(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("read OCI layout %s: %v: %w", dir, err, errdefs.ErrInvalidImage)
		}
		if desc, err = pickPlatform(child, dir, opts.arch()); err != nil {
			return nil, err
		}
		ii = child
	}
	if img, err = ii.Image(desc.Digest); err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %v: %w", dir, err, errdefs.ErrInvalidImage)
	}
	out, err := fromLocalImage(img, dir, opts, true)
	if err != nil {
		return nil, err
	}
	out.Bootstrap = "oci"
	out.Digest = desc.Digest
	out.cleanup = cleanup
	return out, nil
}

func pickByTag(ii v1.ImageIndex, dir, tag string) (v1.Descriptor, error) {
	im, err := ii.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read OCI layout %s: %v: %w", dir, err, errdefs.ErrInvalidImage)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		name := d.Annotations[refNameAnnotation]
		if tag == "" || name == tag || strings.HasSuffix(name, ":"+tag) {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0 && tag != "":
		return v1.Descriptor{}, fmt.Errorf("OCI layout %s has no image tagged %q: %w", dir, tag, errdefs.ErrNotFound)
	case len(found) == 0:
		return v1.Descriptor{}, fmt.Errorf("OCI layout %s holds no image: %w", dir, errdefs.ErrNotFound)
	}
	return v1.Descriptor{}, fmt.Errorf("OCI layout %s holds %d images: name one with :TAG: %w", dir, len(found), errdefs.ErrUsage)
}

func pickPlatform(ii v1.ImageIndex, what, arch string) (v1.Descriptor, error) {
	im, err := ii.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read index of %s: %v: %w", what, err, errdefs.ErrInvalidImage)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch && !d.MediaType.IsIndex() {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s has no image for linux/%s: %w", what, arch, errdefs.ErrNotFound)
}

// fromLocalImage reads config and layers of an image whose blobs are local files. With
// verify, each layer's digest is checked while it is read.
func fromLocalImage(img v1.Image, what string, opts Options, verify bool) (*Image, error) {
	out := &Image{}
	var err error
	if out.RawConfig, err = img.RawConfigFile(); err != nil {
		return nil, notFound(fmt.Sprintf("%s: read image config", what), fmt.Errorf("%v: %w", err, errdefs.ErrInvalidImage))
	}
	if out.Config, err = v1.ParseConfigFile(strings.NewReader(string(out.RawConfig))); err != nil {
		return nil, fmt.Errorf("%s: image config: %v: %w", what, err, errdefs.ErrInvalidImage)
	}
	out.Arch = archOf(out.Config, opts.arch())
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: read layers: %v: %w", what, err, errdefs.ErrInvalidImage)
	}
	for _, l := range layers {
		lay := layer{size: -1}
		if verify {
			if lay.digest, err = l.Digest(); err != nil {
				return nil, fmt.Errorf("%s: layer digest: %v: %w", what, err, errdefs.ErrInvalidImage)
			}
			if lay.size, err = l.Size(); err != nil {
				return nil, notFound(fmt.Sprintf("%s: layer %s", what, lay.digest), err)
			}
			out.CompressedSize += lay.size
			lay.open = l.Compressed
		} else {
			// Docker archives store layers as plain tars; asking for the compressed form
			// would gzip them only for us to gunzip them again.
			lay.open = l.Uncompressed
		}
		out.layers = append(out.layers, lay)
	}
	return out, nil
}

// resolveOCIArchive unpacks the archive's layout (blobs are copied, not unpacked: layers stay
// compressed tar files) into a temporary directory and reads it as a layout.
func resolveOCIArchive(src ref.Source, opts Options) (*Image, error) {
	tmpRoot := os.TempDir()
	if opts.Cache != nil {
		tmpRoot = opts.Cache.TempDir()
	}
	dir, err := os.MkdirTemp(tmpRoot, "oci-archive-*")
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", src.Path, err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := unpackLayoutArchive(src.Path, dir); err != nil {
		cleanup()
		return nil, err
	}
	img, err := resolveLayout(dir, src.Tag, opts, cleanup)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	img.Bootstrap = "oci-archive"
	return img, nil
}

// unpackLayoutArchive extracts the regular files and directories of an OCI layout tar into
// dir. Only clean relative names under the layout's own files are accepted, and files are
// created with O_EXCL|O_NOFOLLOW, so a hostile archive cannot write outside dir.
func unpackLayoutArchive(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return notFound(fmt.Sprintf("open %s", archive), err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s is not a valid OCI archive: %v: %w", archive, err, errdefs.ErrInvalidImage)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%s: entry %q leaves the archive: %w", archive, h.Name, errdefs.ErrInvalidImage)
		}
		if name != "oci-layout" && name != "index.json" && name != "blobs" && !strings.HasPrefix(name, "blobs/") {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return fmt.Errorf("unpack %s: %w", archive, err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return fmt.Errorf("unpack %s: %w", archive, err)
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return fmt.Errorf("unpack %s: %w", archive, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack %s: %w", archive, err)
			}
		}
	}
}

func resolveDockerArchive(src ref.Source, opts Options) (*Image, error) {
	if _, err := os.Stat(src.Path); err != nil {
		return nil, notFound(fmt.Sprintf("open %s", src.Path), err)
	}
	img, err := tarball.ImageFromPath(src.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid docker archive: %v: %w", src.Path, err, errdefs.ErrInvalidImage)
	}
	out, err := fromLocalImage(img, src.Path, opts, false)
	if err != nil {
		return nil, err
	}
	out.Bootstrap = "docker-archive"
	return out, nil
}

// resolveDirectory reads a local root filesystem directory as a single layer, streamed as a
// tar without copying it.
func resolveDirectory(ctx context.Context, src ref.Source) (*Image, error) {
	dir, err := filepath.Abs(src.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, notFound(fmt.Sprintf("open %s", src.Path), err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory or an image source: %w", src.Path, errdefs.ErrUsage)
	}
	return &Image{
		Bootstrap: "localimage",
		// A directory says nothing of its architecture: it is taken to be the host's.
		Arch: runtime.GOARCH,
		layers: []layer{{size: -1, open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeDirTar(ctx, dir, pw)) }()
			return pr, nil
		}}},
	}, nil
}

// writeDirTar writes the tree under dir as a tar stream, without following symlinks and
// keeping hard links as links.
func writeDirTar(ctx context.Context, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Format = tar.FormatPAX
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir, err)
	}
	return tw.Close()
}
