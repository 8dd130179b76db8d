package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kerr-hpc/kerr/frontend/image/ref"
)

// file is one entry of a test layer: a regular file, or a directory when name ends in "/".
type file struct{ name, data string }

func tarOf(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data))}
		if f.name[len(f.name)-1] == '/' {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipLayer(t *testing.T, files ...file) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(tarOf(t, files...)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCILayer)
}

func zstdLayer(t *testing.T, files ...file) v1.Layer {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := zw.EncodeAll(tarOf(t, files...), nil)
	zw.Close()
	return static.NewLayer(b, types.OCILayerZStd)
}

func plainLayer(t *testing.T, files ...file) v1.Layer {
	t.Helper()
	return static.NewLayer(tarOf(t, files...), types.OCIUncompressedLayer)
}

// imageOf is a linux image for arch with the given layers, bottom first.
func imageOf(t *testing.T, arch string, cmd []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: arch, OS: "linux",
		Config: v1.Config{Cmd: cmd, Env: []string{"PATH=/bin"}, Labels: map[string]string{"arch": arch}},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeLayout writes an OCI layout with imgs, tagged by the map's keys ("" for no tag).
func writeLayout(t *testing.T, dir string, imgs map[string]v1.Image) layout.Path {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for tag, img := range imgs {
		var opts []layout.Option
		if tag != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: tag}))
		}
		if err := p.AppendImage(img, opts...); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func resolve(t *testing.T, s string, opts Options) (*Image, error) {
	t.Helper()
	src, err := ref.Parse(s, true, true)
	if err != nil {
		t.Fatalf("ref.Parse(%q): %v", s, err)
	}
	img, err := Resolve(context.Background(), src, opts)
	if err == nil {
		t.Cleanup(img.Close)
	}
	return img, err
}

func mustResolve(t *testing.T, s string, opts Options) *Image {
	t.Helper()
	img, err := resolve(t, s, opts)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", s, err)
	}
	return img
}

// entry is what a test sees of a tar entry.
type entry struct {
	typ        byte
	link, data string
}

// readLayer reads layer i of img as a tar to its end and closes it, as flatten does. It
// returns the entries, the error of reading (nil at a clean end) and that of closing.
func readLayer(img *Image, i int) (map[string]entry, error, error) {
	rc, err := img.Layers(nil)[i]()
	if err != nil {
		return nil, err, nil
	}
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	var rerr error
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			rerr = err
			break
		}
		out[h.Name] = entry{typ: h.Typeflag, link: h.Linkname, data: string(b)}
	}
	return out, rerr, rc.Close()
}

func mustReadLayer(t *testing.T, img *Image, i int) map[string]entry {
	t.Helper()
	es, rerr, cerr := readLayer(img, i)
	if rerr != nil || cerr != nil {
		t.Fatalf("layer %d: read: %v, close: %v", i, rerr, cerr)
	}
	return es
}

// flipByte changes one byte of the file at p, keeping its length.
func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func blobPath(dir string, h v1.Hash) string {
	return filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
}

// dockerArchive writes img as a `docker save` tarball.
func dockerArchive(t *testing.T, img v1.Image, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tag, err := name.NewTag("example.com/test/img:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(tag, img, f); err != nil {
		t.Fatal(err)
	}
}
