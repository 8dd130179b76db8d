package source

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/cache"
)

func TestLayoutPicksImageByTag(t *testing.T) {
	dir := t.TempDir()
	one := imageOf(t, "amd64", []string{"one"}, gzipLayer(t, file{"one", "1"}))
	two := imageOf(t, "arm64", []string{"two"}, gzipLayer(t, file{"two", "2"}))
	writeLayout(t, dir, map[string]v1.Image{"v1": one, "example.com/repo:v2": two})

	img := mustResolve(t, "oci:"+dir+":v1", Options{})
	if img.Digest != digestOf(t, one) || img.Arch != "amd64" || img.Bootstrap != "oci" {
		t.Errorf("oci:DIR:v1 = %s %s %s, want %s amd64 oci", img.Digest, img.Arch, img.Bootstrap, digestOf(t, one))
	}
	if !slices.Equal(img.Config.Config.Cmd, []string{"one"}) {
		t.Errorf("config Cmd = %v, want [one]", img.Config.Config.Cmd)
	}
	if es := mustReadLayer(t, img, 0); es["one"].data != "1" {
		t.Errorf("layer of v1 = %v", es)
	}
	// A full reference in the annotation matches by its tag.
	img = mustResolve(t, "oci:"+dir+":v2", Options{})
	if img.Digest != digestOf(t, two) || img.Arch != "arm64" {
		t.Errorf("oci:DIR:v2 = %s %s, want %s arm64", img.Digest, img.Arch, digestOf(t, two))
	}
	if img.CompressedSize <= 0 || len(img.RawConfig) == 0 {
		t.Errorf("CompressedSize %d, RawConfig %d bytes: want both set", img.CompressedSize, len(img.RawConfig))
	}
	if img.Fetch(t.Context()) != nil {
		t.Error("Fetch of a local layout did something and failed")
	}
}

func TestLayoutSingleImageNeedsNoTag(t *testing.T) {
	dir := t.TempDir()
	one := imageOf(t, "amd64", nil, gzipLayer(t, file{"one", "1"}))
	writeLayout(t, dir, map[string]v1.Image{"": one})
	if img := mustResolve(t, "oci:"+dir, Options{}); img.Digest != digestOf(t, one) {
		t.Errorf("digest %s, want %s", img.Digest, digestOf(t, one))
	}
}

func TestLayoutSeveralImagesNeedATag(t *testing.T) {
	dir := t.TempDir()
	writeLayout(t, dir, map[string]v1.Image{
		"v1": imageOf(t, "amd64", []string{"one"}),
		"v2": imageOf(t, "amd64", []string{"two"}),
	})
	if _, err := resolve(t, "oci:"+dir, Options{}); !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("untagged pick among two images = %v, want ErrUsage", err)
	}
	if _, err := resolve(t, "oci:"+dir+":v3", Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown tag = %v, want ErrNotFound", err)
	}
}

func TestLayoutMissingOrEmpty(t *testing.T) {
	if _, err := resolve(t, "oci:"+filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing layout = %v, want ErrNotFound", err)
	}
	if _, err := resolve(t, "oci:"+t.TempDir(), Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("directory without index.json = %v, want ErrNotFound", err)
	}
	dir := t.TempDir()
	writeLayout(t, dir, nil)
	if _, err := resolve(t, "oci:"+dir, Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("empty layout = %v, want ErrNotFound", err)
	}
}

func TestLayoutIndexPicksArch(t *testing.T) {
	amd := imageOf(t, "amd64", []string{"amd"}, gzipLayer(t, file{"arch", "amd64"}))
	arm := imageOf(t, "arm64", []string{"arm"}, gzipLayer(t, file{"arch", "arm64"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	dir := t.TempDir()
	p := writeLayout(t, dir, nil)
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		img := mustResolve(t, "oci:"+dir, Options{Arch: arch})
		want := map[string]v1.Image{"amd64": amd, "arm64": arm}[arch]
		if img.Digest != digestOf(t, want) || img.Arch != arch {
			t.Errorf("Arch %s: got image %s (%s), want %s", arch, img.Digest, img.Arch, digestOf(t, want))
		}
		if es := mustReadLayer(t, img, 0); es["arch"].data != arch {
			t.Errorf("Arch %s: layer holds %q", arch, es["arch"].data)
		}
	}
	if _, err := resolve(t, "oci:"+dir, Options{Arch: "s390x"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no image for the arch = %v, want ErrNotFound", err)
	}
}

func TestLayersOfEveryCompressionDecompress(t *testing.T) {
	img := imageOf(t, "amd64", nil,
		gzipLayer(t, file{"etc/", ""}, file{"etc/gzip", "g"}),
		zstdLayer(t, file{"zstd", "z"}),
		plainLayer(t, file{"plain", "p"}),
	)
	dir := t.TempDir()
	writeLayout(t, dir, map[string]v1.Image{"": img})
	got := mustResolve(t, "oci:"+dir, Options{})
	if n := len(got.Layers(nil)); n != 3 {
		t.Fatalf("%d layers, want 3", n)
	}
	for i, want := range []map[string]entry{
		{"etc/": {typ: tar.TypeDir}, "etc/gzip": {typ: tar.TypeReg, data: "g"}},
		{"zstd": {typ: tar.TypeReg, data: "z"}},
		{"plain": {typ: tar.TypeReg, data: "p"}},
	} {
		es := mustReadLayer(t, got, i)
		if len(es) != len(want) {
			t.Errorf("layer %d: entries %v, want %v", i, es, want)
		}
		for name, w := range want {
			if es[name] != w {
				t.Errorf("layer %d: %s = %+v, want %+v", i, name, es[name], w)
			}
		}
	}
}

// TestTamperedLayoutBlobIsInvalidImage changes one byte of a layer blob: once the stream is
// read as far as a tar reader goes and closed, Close reports ErrInvalidImage, whether or not
// the tar reader stumbled on the change first.
func TestTamperedLayoutBlobIsInvalidImage(t *testing.T) {
	content := []file{{"etc/", ""}, {"etc/data", strings.Repeat("payload ", 512)}}
	for _, c := range []struct {
		name  string
		layer v1.Layer
		off   func(size int64) int64
	}{
		{"uncompressed, in file data", plainLayer(t, content...), func(int64) int64 { return 1024 + 100 }},
		{"uncompressed, in the end padding", plainLayer(t, content...), func(size int64) int64 { return size - 10 }},
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
			if rerr != nil && !errors.Is(rerr, errdefs.ErrInvalidImage) {
				t.Logf("reading the tampered layer: %v", rerr)
			}
			if !errors.Is(cerr, errdefs.ErrInvalidImage) {
				t.Errorf("closing a tampered layer after reading it = %v, want ErrInvalidImage", cerr)
			}
		})
	}
}

func TestUnpackLayoutArchiveRefusesEscapes(t *testing.T) {
	for _, bad := range []string{"../x", "/abs", "blobs/../../x", "./../x"} {
		t.Run(bad, func(t *testing.T) {
			root := t.TempDir()
			archive := filepath.Join(root, "a.tar")
			writeTar(t, archive, tarEntry{name: "oci-layout", data: "{}"}, tarEntry{name: bad, data: "evil"})
			dir := filepath.Join(root, "out")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unpackLayoutArchive(archive, dir); !errors.Is(err, errdefs.ErrInvalidImage) {
				t.Errorf("unpack of %q = %v, want ErrInvalidImage", bad, err)
			}
			if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
				t.Errorf("%q was written outside the directory", bad)
			}
		})
	}
}

func TestUnpackLayoutArchiveIgnoresOtherFiles(t *testing.T) {
	root := t.TempDir()
	archive := filepath.Join(root, "a.tar")
	writeTar(t, archive,
		tarEntry{name: "./"},
		tarEntry{name: "./oci-layout", data: "{}"},
		tarEntry{name: "./index.json", data: "{}"},
		tarEntry{name: "README", data: "not part of a layout"},
		tarEntry{name: "other/file", data: "neither"},
		tarEntry{name: "blobs/", dir: true},
		tarEntry{name: "blobs/sha256/abc", data: "blob"},
		tarEntry{name: "blobs/link", link: "/etc/passwd"},
	)
	dir := filepath.Join(root, "out")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unpackLayoutArchive(archive, dir); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	var got []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".", "blobs", "blobs/sha256", "blobs/sha256/abc", "index.json", "oci-layout"}
	if !slices.Equal(got, want) {
		t.Errorf("unpacked %v, want %v", got, want)
	}
}

func TestOCIArchiveResolvesAndCleansUp(t *testing.T) {
	layoutDir := t.TempDir()
	img := imageOf(t, "amd64", []string{"x"}, gzipLayer(t, file{"hello", "world"}))
	writeLayout(t, layoutDir, map[string]v1.Image{"v1": img})
	archive := filepath.Join(t.TempDir(), "img.tar")
	tarDir(t, layoutDir, archive)
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := mustResolve(t, "oci-archive:"+archive+":v1", Options{Cache: c})
	if src.Bootstrap != "oci-archive" || src.Digest != digestOf(t, img) {
		t.Errorf("got %s %s, want oci-archive %s", src.Bootstrap, src.Digest, digestOf(t, img))
	}
	if es := mustReadLayer(t, src, 0); es["hello"].data != "world" {
		t.Errorf("layer = %v", es)
	}
	src.Close()
	if left, _ := os.ReadDir(c.TempDir()); len(left) != 0 {
		t.Errorf("Close left %v in the cache's tmp directory", left)
	}
	if _, err := resolve(t, "oci-archive:"+archive+":nope", Options{Cache: c}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown tag in an archive = %v, want ErrNotFound", err)
	}
	if left, _ := os.ReadDir(c.TempDir()); len(left) != 0 {
		t.Errorf("a failed resolve left %v in the cache's tmp directory", left)
	}
	if _, err := resolve(t, "oci-archive:"+filepath.Join(t.TempDir(), "missing.tar"), Options{Cache: c}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing archive = %v, want ErrNotFound", err)
	}
}

func TestDockerArchive(t *testing.T) {
	img := imageOf(t, "arm64", []string{"run"}, gzipLayer(t, file{"a", "1"}), gzipLayer(t, file{"b", "2"}))
	p := filepath.Join(t.TempDir(), "saved.tar")
	dockerArchive(t, img, p)
	src := mustResolve(t, "docker-archive:"+p, Options{})
	if src.Bootstrap != "docker-archive" || src.Arch != "arm64" || !slices.Equal(src.Config.Config.Cmd, []string{"run"}) {
		t.Errorf("got %s %s %v", src.Bootstrap, src.Arch, src.Config.Config.Cmd)
	}
	if src.Digest.Hex != "" {
		t.Errorf("a docker archive has no manifest digest, got %s", src.Digest)
	}
	if es := mustReadLayer(t, src, 0); es["a"].data != "1" {
		t.Errorf("layer 0 = %v", es)
	}
	if es := mustReadLayer(t, src, 1); es["b"].data != "2" {
		t.Errorf("layer 1 = %v", es)
	}
	if _, err := resolve(t, "docker-archive:"+filepath.Join(t.TempDir(), "none.tar"), Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing archive = %v, want ErrNotFound", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.tar")
	if err := os.WriteFile(junk, []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(t, "docker-archive:"+junk, Options{}); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("junk archive = %v, want ErrInvalidImage", err)
	}
}

func TestDirectoryStreamsFilesLinksAndHardLinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("bin/tool", "elf")
	mk("etc/conf", "conf")
	if err := os.Link(filepath.Join(dir, "bin/tool"), filepath.Join(dir, "bin/tool2")); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": "/etc/passwd", "rel": "etc/conf", "out": outside} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	img := mustResolve(t, dir, Options{})
	if img.Bootstrap != "localimage" || img.Digest.Hex != "" || img.Config != nil {
		t.Errorf("directory image: bootstrap %s digest %s config %v", img.Bootstrap, img.Digest, img.Config)
	}
	layers := img.Layers(nil)
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	got := mustReadLayer(t, img, 0)
	want := map[string]entry{
		"bin/":      {typ: tar.TypeDir},
		"bin/tool":  {typ: tar.TypeReg, data: "elf"},
		"bin/tool2": {typ: tar.TypeLink, link: "bin/tool"},
		"etc/":      {typ: tar.TypeDir},
		"etc/conf":  {typ: tar.TypeReg, data: "conf"},
		"abs":       {typ: tar.TypeSymlink, link: "/etc/passwd"},
		"rel":       {typ: tar.TypeSymlink, link: "etc/conf"},
		"out":       {typ: tar.TypeSymlink, link: outside},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %+v, want %+v", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s (a symlink was followed?)", name)
		}
	}
	// Each open streams the tree anew.
	if again := mustReadLayer(t, img, 0); len(again) != len(got) {
		t.Errorf("second read has %d entries, the first %d", len(again), len(got))
	}
}

func TestDirectorySourceErrors(t *testing.T) {
	if _, err := resolve(t, filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing directory = %v, want ErrNotFound", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(t, f, Options{}); !errors.Is(err, errdefs.ErrUsage) {
		t.Errorf("a regular file as a directory source = %v, want ErrUsage", err)
	}
}

type tarEntry struct {
	name, data, link string
	dir              bool
}

func writeTar(t *testing.T, p string, entries ...tarEntry) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}
		switch {
		case e.dir || strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// tarDir writes the tree under dir as a tar at p, names relative to dir.
func tarDir(t *testing.T, dir, p string) {
	t.Helper()
	var entries []tarEntry
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			entries = append(entries, tarEntry{name: rel + "/"})
			return nil
		}
		b, err := os.ReadFile(path)
		entries = append(entries, tarEntry{name: rel, data: string(b)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	writeTar(t, p, entries...)
}
