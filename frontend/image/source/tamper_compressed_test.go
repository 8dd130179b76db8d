package source

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/errdefs"
)

// TestTamperedCompressedBlobIsInvalidImage changes one byte of a compressed layer blob: the
// decompressor fails before the digest check at EOF, and Close must still report the
// corruption as ErrInvalidImage (exit code 7), not a bare flate or zstd error (exit code 1).
func TestTamperedCompressedBlobIsInvalidImage(t *testing.T) {
	content := []file{{"etc/", ""}, {"etc/data", strings.Repeat("payload ", 512)}}
	for _, c := range []struct {
		name  string
		layer v1.Layer
		off   func(size int64) int64
	}{
		{"gzip, in the deflate data", gzipLayer(t, content...), func(size int64) int64 { return size / 2 }},
		{"gzip, in the CRC trailer", gzipLayer(t, content...), func(size int64) int64 { return size - 6 }},
		{"zstd, in the frame", zstdLayer(t, content...), func(size int64) int64 { return size / 2 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLayout(t, dir, map[string]v1.Image{"": imageOf(t, "amd64", nil, c.layer)})
			size, err := c.layer.Size()
			if err != nil {
				t.Fatal(err)
			}
			flipByte(t, blobPath(dir, digestOf(t, c.layer)), c.off(size))
			img := mustResolve(t, "oci:"+dir, Options{})
			_, rerr, cerr := readLayer(img, 0)
			if !errors.Is(cerr, errdefs.ErrInvalidImage) {
				t.Errorf("read: %v; close: %v; want Close to report ErrInvalidImage", rerr, cerr)
			}
		})
	}
}
