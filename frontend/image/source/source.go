// Package source opens the places kerr reads images from (registries, OCI layouts and
// archives, Docker archives, local directories) as one Image: a config and a stack of
// uncompressed layer streams, bottom first.
//
// Network and disk work happens in two steps so that the caller can show it: Resolve reads
// the small things (manifest, config), Fetch downloads the layers that are not cached yet.
package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/cache"
	"github.com/kerr-hpc/kerr/frontend/image/flatten"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
	"github.com/kerr-hpc/kerr/frontend/image/ref"
)

// Options say how to reach and pick an image.
type Options struct {
	Arch     string // GOARCH wanted; default the host's
	Insecure bool   // plain http and unverified TLS for registries
	Username string // registry credentials; empty: ~/.docker/config.json
	Password string
	Cache    *cache.Cache // where registry blobs are kept (required for docker://)
	Progress *progress.Reporter
	// UserAgent is sent to registries.
	UserAgent string
}

func (o Options) arch() string {
	if o.Arch != "" {
		return o.Arch
	}
	return runtime.GOARCH
}

// Image is an image ready to be flattened.
type Image struct {
	// Digest is the manifest's digest, zero for a directory: with it, a built SIF can be
	// cached and reused.
	Digest v1.Hash
	// RawConfig is the OCI image config as the source holds it; nil for a directory.
	RawConfig []byte
	Config    *v1.ConfigFile
	// Arch is the image's GOARCH: its config's, else the one asked for (the host's).
	Arch string
	// Bootstrap names the transport, as Singularity's definition files do.
	Bootstrap string
	// CompressedSize is the sum of the layers' sizes as stored, for progress.
	CompressedSize int64

	layers []layer
	// fetch brings missing layers to local disk (registries); nil when all are local.
	fetch   func(ctx context.Context) error
	cleanup func()
}

// layer is one layer: how to open it as stored (maybe compressed), and its digest when the
// bytes must be checked as they are read.
type layer struct {
	open   func() (io.ReadCloser, error)
	digest v1.Hash // zero: not checked here (verified when cached, or computed by us)
	size   int64
}

// Resolve finds the image src names and reads its manifest and config.
func Resolve(ctx context.Context, src ref.Source, opts Options) (*Image, error) {
	var img *Image
	var err error
	switch src.Transport {
	case ref.Docker:
		img, err = resolveRegistry(ctx, src, opts)
	case ref.OCILayout:
		img, err = resolveLayout(src.Path, src.Tag, opts, nil)
	case ref.OCIArchive:
		img, err = resolveOCIArchive(src, opts)
	case ref.DockerArchive:
		img, err = resolveDockerArchive(src, opts)
	case ref.Directory:
		img, err = resolveDirectory(ctx, src)
	default:
		return nil, fmt.Errorf("transport %q: %w", src.Transport, errdefs.ErrUsage)
	}
	if err != nil {
		return nil, err
	}
	// A single-platform image has no index to choose from: an explicit --arch must still
	// match what it is, or the user gets binaries that cannot run.
	if opts.Arch != "" && img.Config != nil && img.Config.Architecture != "" && img.Config.Architecture != opts.Arch {
		img.Close()
		return nil, fmt.Errorf("%s is an image for linux/%s, not linux/%s: %w", src.Raw, img.Config.Architecture, opts.Arch, errdefs.ErrNotFound)
	}
	return img, nil
}

// Fetch downloads what is not local yet.
func (img *Image) Fetch(ctx context.Context) error {
	if img.fetch == nil {
		return nil
	}
	return img.fetch(ctx)
}

// Close removes temporary files the source made (an unpacked OCI archive).
func (img *Image) Close() {
	if img.cleanup != nil {
		img.cleanup()
	}
}

// Layers returns the uncompressed layer streams, bottom first, for flatten. Each stream
// checks its digest when it is read to the end and fails if the bytes do not match.
func (img *Image) Layers(rep *progress.Reporter) []flatten.Layer {
	out := make([]flatten.Layer, len(img.layers))
	for i, l := range img.layers {
		out[i] = func() (io.ReadCloser, error) {
			rc, err := l.open()
			if err != nil {
				return nil, err
			}
			var r io.Reader = rc
			task := &progress.Task{}
			if rep != nil {
				task = rep.Start(fmt.Sprintf("layer %d/%d", i+1, len(img.layers)), l.size)
				r = task.Reader(r)
			}
			if l.digest.Hex != "" {
				r = &verifier{r: r, want: l.digest, h: sha256.New()}
			}
			ls, err := decompress(r, rc)
			if err != nil {
				task.Done(err)
				return nil, err
			}
			ls.done = task.Done
			return ls, nil
		}
	}
	return out
}

// verifier hashes what is read and fails at EOF when the digest is not the expected one.
type verifier struct {
	r    io.Reader
	want v1.Hash
	h    hash.Hash
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			return n, fmt.Errorf("blob %s is corrupt: its content hashes to sha256:%s: %w", v.want, got, errdefs.ErrInvalidImage)
		}
	}
	return n, err
}

// decompress sniffs gzip and zstd by their magic numbers (media types lie in the wild) and
// returns the tar stream; closing it closes the underlying file.
func decompress(r io.Reader, under io.Closer) (*layerStream, error) {
	var magic [4]byte
	n, err := io.ReadFull(r, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		under.Close()
		return nil, fmt.Errorf("read layer: %w", err)
	}
	full := io.MultiReader(bytes.NewReader(magic[:n]), r)
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(full)
		if err != nil {
			under.Close()
			return nil, fmt.Errorf("layer is not valid gzip: %v: %w", err, errdefs.ErrInvalidImage)
		}
		return &layerStream{Reader: zr, closers: []func() error{zr.Close, under.Close}, drain: full}, nil
	case n == 4 && bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(full, zstd.WithDecoderConcurrency(1))
		if err != nil {
			under.Close()
			return nil, fmt.Errorf("layer is not valid zstd: %v: %w", err, errdefs.ErrInvalidImage)
		}
		return &layerStream{Reader: zr, closers: []func() error{func() error { zr.Close(); return nil }, under.Close}, drain: full}, nil
	}
	return &layerStream{Reader: full, closers: []func() error{under.Close}, drain: full}, nil
}

// layerStream is a decompressed layer. A decompressor failure is a corrupt image. Close reads
// the rest of the stored (compressed) stream, which the tar and gzip readers leave unread
// after the end-of-archive marker or after an error, so that the digest check at its end
// runs: a digest mismatch is the more useful report than the decompressor's complaint.
type layerStream struct {
	io.Reader
	drain   io.Reader
	closers []func() error
	done    func(error)
}

func (l *layerStream) Read(p []byte) (int, error) {
	n, err := l.Reader.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errdefs.ErrInvalidImage) {
		err = fmt.Errorf("layer is corrupt: %v: %w", err, errdefs.ErrInvalidImage)
	}
	return n, err
}

func (l *layerStream) Close() error {
	_, err := io.Copy(io.Discard, l.drain)
	for _, c := range l.closers {
		if cerr := c(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		err = fmt.Errorf("read layer: %w", err)
	}
	if l.done != nil {
		l.done(err)
	}
	return err
}
