package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kerr-hpc/kerr/errdefs"
)

func digestOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func TestPutBlobVerifiesDigestAndLeavesNoTemp(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("layer data")
	good := digestOf(data)
	if _, err := c.PutBlob(good, int64(len(data)), bytes.NewReader([]byte("tampered!!"))); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Fatalf("tampered blob: got %v, want invalid image", err)
	}
	if _, ok := c.BlobPath(good); ok {
		t.Fatal("a corrupt blob became visible in the cache")
	}
	if _, err := c.PutBlob(good, 3, bytes.NewReader(data)); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Fatalf("wrong size: got %v, want invalid image", err)
	}
	p, err := c.PutBlob(good, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatalf("cached blob = %q", got)
	}
	if left, _ := os.ReadDir(c.TempDir()); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestConcurrentPutsOfOneBlob(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 1<<20)
	d := digestOf(data)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.PutBlob(d, int64(len(data)), bytes.NewReader(data))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, _ := c.BlobPath(d)
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("blob content damaged by concurrent writers")
	}
}

func TestListAndClean(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("abc")
	if _, err := c.PutBlob(digestOf(data), -1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "x.sif")
	if err := os.WriteFile(src, []byte("sif"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := SIFKey(digestOf(data), "amd64", "1")
	if err := c.PutSIF(key, src); err != nil {
		t.Fatal(err)
	}
	es, err := c.List()
	if err != nil || len(es) != 2 || es[0].Kind != "blob" || es[1].Kind != "sif" || es[1].Name != key {
		t.Fatalf("List = %+v, %v", es, err)
	}
	freed, err := c.Clean()
	if err != nil || freed != 6 {
		t.Fatalf("Clean = %d, %v", freed, err)
	}
	if es, _ := c.List(); len(es) != 0 {
		t.Fatalf("after Clean: %+v", es)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache root mode = %v, %v", fi.Mode(), err)
	}
}
