package main

import (
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// digestTree hashes every path, type and content of a tree in walk order.
func digestTree(t *testing.T, root string) []byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		io.WriteString(h, rel+"\x00"+d.Type().String()+"\x00")
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			io.WriteString(h, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

func TestGenerateTreeIsDeterministicAndMixed(t *testing.T) {
	const total = 4 << 20
	dir := t.TempDir()
	a, err := generateTree(context.Background(), filepath.Join(dir, "a"), total, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateTree(context.Background(), filepath.Join(dir, "b"), total, 7)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || string(digestTree(t, filepath.Join(dir, "a"))) != string(digestTree(t, filepath.Join(dir, "b"))) {
		t.Errorf("two trees from one seed differ: %+v, %+v", a, b)
	}
	if a.FileBytes < total || a.FileBytes > total+(1<<20) {
		t.Errorf("tree holds %d bytes, want about %d", a.FileBytes, total)
	}
	if a.Files < 50 || a.Symlinks == 0 || a.HardLinks == 0 {
		t.Errorf("tree %+v: want many small files, symlinks and hard links", a)
	}
	big, err := os.Stat(filepath.Join(dir, "a", "data", "part000.bin"))
	if err != nil || big.Size() < 256<<10 {
		t.Errorf("no large data file: %v", err)
	}
	c, err := generateTree(context.Background(), filepath.Join(dir, "c"), total, 8)
	if err != nil {
		t.Fatal(err)
	}
	if string(digestTree(t, filepath.Join(dir, "a"))) == string(digestTree(t, filepath.Join(dir, "c"))) {
		t.Errorf("seeds 7 and 8 gave the same tree (%+v)", c)
	}
}

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10, 200,1000")
	if err != nil || len(got) != 3 || got[0] != 10e6 || got[2] != 1000e6 {
		t.Errorf("parseSizes: %v, %v", got, err)
	}
	for _, bad := range []string{"", "10", "200,10", "10,x", "0,10"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
	if l := label(1000e6); l != "1GB" {
		t.Errorf("label(1e9) = %q", l)
	}
	if l := label(200e6); l != "200MB" {
		t.Errorf("label(2e8) = %q", l)
	}
}
