package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func imageDigest(t *testing.T, seed uint64, scale float64) (string, []layerFile) {
	t.Helper()
	layers, err := generateLayers(context.Background(), t.TempDir(), seed, scale)
	if err != nil {
		t.Fatal(err)
	}
	img, err := buildImage(layers)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), layers
}

func TestImageIsReproducibleFromSeed(t *testing.T) {
	a, layers := imageDigest(t, 7, 0.02)
	b, _ := imageDigest(t, 7, 0.02)
	if a != b {
		t.Fatalf("same seed, digests %s and %s", a, b)
	}
	if c, _ := imageDigest(t, 8, 0.02); c == a {
		t.Fatalf("seeds 7 and 8 gave the same digest %s", a)
	}
	if len(layers) != 5 {
		t.Fatalf("%d layers, want 5", len(layers))
	}
}

func TestUpdateLayerDeletesFromBelow(t *testing.T) {
	_, layers := imageDigest(t, 1, 0.1)
	names := map[string]bool{}
	for _, lf := range layers {
		for _, n := range layerNames(t, lf.path) {
			names[n] = true
		}
	}
	for _, want := range []string{
		"usr/share/doc/pkg0010/.wh.copyright",
		sitePackages + "/.wh.pkg007",
		"opt/data/.wh.model-2.bin",
		"opt/app/static/.wh..wh..opq",
	} {
		if !names[want] {
			t.Errorf("no %s in the update layer", want)
		}
	}
	// Every whiteout must hide something a lower layer has.
	for _, p := range removedPaths {
		found := false
		for n := range names {
			if n == p || strings.HasPrefix(n, p+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is deleted but no layer has it", p)
		}
	}
}

func layerNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	}
}
