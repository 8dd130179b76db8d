package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kerr-hpc/kerr/errdefs"
)

// squashfsCompressor reads the compressor id from the superblock of a SIF's root filesystem
// (1 gzip, 4 xz, 6 zstd).
func squashfsCompressor(t *testing.T, sifPath string) uint16 {
	t.Helper()
	img := openSIF(t, sifPath)
	d, err := img.RootFS()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := img.File().ReadAt(b, d.Offset()+20); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint16(b)
}

// TestCachedSIFHonoursCompressor builds the same layout with gzip, then with zstd: the second
// build must not hand back the gzip SIF from the cache.
func TestCachedSIFHonoursCompressor(t *testing.T) {
	needTar2sqfs(t)
	src := ociLayout(t, v1.Config{}, tarLayer(t, map[string]string{"bin/tool": "tool"}))
	cacheDir := t.TempDir()
	o := opts("oci:"+src, filepath.Join(t.TempDir(), "gzip.sif"), cacheDir)
	o.Compressor = "gzip"
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	o.Output, o.Compressor = filepath.Join(t.TempDir(), "zstd.sif"), "zstd"
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if id := squashfsCompressor(t, o.Output); id != 6 {
		t.Errorf("asked for zstd, got squashfs compressor %d (cached: %v)", id, res.Cached)
	}
}

// TestCorruptGzipLayerIsInvalidImage changes a byte of a gzip layer, in its deflate data and
// in its CRC: gzip trips over it before the digest check, and the build must still fail as an
// invalid image (exit code 7), not with a bare gzip error (exit code 1).
func TestCorruptGzipLayerIsInvalidImage(t *testing.T) {
	needTar2sqfs(t)
	plain, err := tarLayer(t, map[string]string{"bin/tool": strings.Repeat("x", 4096)}).Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := io.Copy(zw, plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(gz.Bytes(), types.OCILayer)
	d, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, where := range []struct {
		name string
		off  int
	}{{"deflate data", gz.Len() / 2}, {"CRC", gz.Len() - 6}} {
		t.Run(where.name, func(t *testing.T) {
			src := ociLayout(t, v1.Config{}, layer)
			blob := filepath.Join(src, "blobs", d.Algorithm, d.Hex)
			b, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			b[where.off] ^= 0xff
			if err := os.WriteFile(blob, b, 0o644); err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			_, err = Build(context.Background(), opts("oci:"+src, filepath.Join(outDir, "out.sif"), t.TempDir()))
			if !errors.Is(err, errdefs.ErrInvalidImage) {
				t.Errorf("Build from a corrupt gzip layer = %v, want ErrInvalidImage", err)
			}
			if left := entries(t, outDir); len(left) != 0 {
				t.Errorf("a failed build left %v", left)
			}
		})
	}
}
