package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/frontend/image/sylayout"
)

func needTar2sqfs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tar2sqfs"); err != nil {
		t.Skip("tar2sqfs not in PATH")
	}
}

// rootDir is a small root filesystem directory.
func rootDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"bin/tool": "#!/bin/sh\necho tool\n", "etc/motd": "hello from a directory\n"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("etc/motd", filepath.Join(dir, "motd")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func opts(src, out string, cacheDir string) Options {
	return Options{Source: src, Output: out, AllowDir: true, CacheDir: cacheDir, Progress: progress.New(true)}
}

func openSIF(t *testing.T, p string) *sifimage.Image {
	t.Helper()
	img, err := sifimage.Open(p)
	if err != nil {
		t.Fatalf("open built SIF: %v", err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func readRoot(t *testing.T, img *sifimage.Image, name string) string {
	t.Helper()
	b, err := img.ReadRootFile(name)
	if err != nil {
		t.Fatalf("ReadRootFile(%s): %v", name, err)
	}
	return string(b)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// ociLayout writes a one-image OCI layout and returns its directory.
func ociLayout(t *testing.T, cfg v1.Config, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: "amd64", OS: "linux", Config: cfg, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildDirectoryToSIF(t *testing.T) {
	needTar2sqfs(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "dir.sif")
	res, err := Build(context.Background(), opts(rootDir(t), out, t.TempDir()))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if res.Output != out || res.Cached || res.Size <= 0 {
		t.Errorf("Result = %+v", res)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != res.Size {
		t.Errorf("output: %v, size %d; Result.Size %d", err, fi.Size(), res.Size)
	}
	img := openSIF(t, out)
	if got := readRoot(t, img, "/motd"); got != "hello from a directory\n" {
		t.Errorf("/motd = %q", got)
	}
	if got := readRoot(t, img, "/.singularity.d/runscript"); got != sylayout.Runscript(nil, nil) {
		t.Errorf("runscript of a directory without config = %q", got)
	}
	if cfg, err := img.OCIConfig(); cfg != nil || err != nil {
		t.Errorf("OCIConfig = %q, %v; a directory has none", cfg, err)
	}
	labels, err := img.Labels()
	if err != nil || labels["org.label-schema.usage.singularity.deffile.bootstrap"] != "localimage" {
		t.Errorf("labels = %v, %v", labels, err)
	}
	if got := entries(t, outDir); !slices.Equal(got, []string{"dir.sif"}) {
		t.Errorf("output directory holds %v, want only dir.sif", got)
	}
}

func TestBuildRefusesExistingOutputWithoutForce(t *testing.T) {
	needTar2sqfs(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "out.sif")
	if err := os.WriteFile(out, []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, cacheDir := rootDir(t), t.TempDir()
	_, err := Build(context.Background(), opts(src, out, cacheDir))
	if !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("Build over an existing file = %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "previous" {
		t.Errorf("the existing output changed: %q", b)
	}

	o := opts(src, out, cacheDir)
	o.Force = true
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatalf("Build with Force: %v", err)
	}
	if got := readRoot(t, openSIF(t, out), "/etc/motd"); got != "hello from a directory\n" {
		t.Errorf("replaced SIF holds %q", got)
	}
	if got := entries(t, outDir); !slices.Equal(got, []string{"out.sif"}) {
		t.Errorf("output directory holds %v, want only out.sif", got)
	}

	// Force does not turn a directory into a SIF.
	o.Output = t.TempDir()
	if _, err := Build(context.Background(), o); !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("Build onto a directory = %v, want ErrExists", err)
	}
}

func TestBuildIntoMissingDirectoryIsNotFound(t *testing.T) {
	out := filepath.Join(t.TempDir(), "no", "such", "out.sif")
	if _, err := Build(context.Background(), opts(rootDir(t), out, t.TempDir())); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Build into a missing directory = %v, want ErrNotFound", err)
	}
}

// TestFailedBuildLeavesNoFiles builds from a layout whose layer was changed after it was
// written: the build fails as an invalid image and leaves nothing in the output directory.
func TestFailedBuildLeavesNoFiles(t *testing.T) {
	needTar2sqfs(t)
	layer := tarLayer(t, map[string]string{"bin/tool": strings.Repeat("x", 4096)})
	src := ociLayout(t, v1.Config{}, layer)
	d, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(src, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[512+100] ^= 0xff // inside bin/tool's data, after its header
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sandbox := range []bool{false, true} {
		outDir := t.TempDir()
		o := opts("oci:"+src, filepath.Join(outDir, "out"), t.TempDir())
		o.Sandbox = sandbox
		_, err := Build(context.Background(), o)
		if !errors.Is(err, errdefs.ErrInvalidImage) {
			t.Errorf("sandbox=%v: Build from a corrupt layer = %v, want ErrInvalidImage", sandbox, err)
		}
		if left := entries(t, outDir); len(left) != 0 {
			t.Errorf("sandbox=%v: a failed build left %v", sandbox, left)
		}
	}
}

func TestBuildSandboxFromDirectory(t *testing.T) {
	outDir := t.TempDir()
	out := filepath.Join(outDir, "sandbox")
	o := opts(rootDir(t), out, t.TempDir())
	o.Sandbox = true
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if res.Output != out || res.Cached {
		t.Errorf("Result = %+v", res)
	}
	for name, want := range map[string]string{"etc/motd": "hello from a directory\n", "bin/tool": "#!/bin/sh\necho tool\n"} {
		if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", name, b, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "motd")); err != nil || target != "etc/motd" {
		t.Errorf("motd link = %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(out, ".singularity.d", "runscript")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("runscript: %v", err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("sandbox root: %v %v, want mode 0755", fi.Mode(), err)
	}
	if got := entries(t, outDir); !slices.Equal(got, []string{"sandbox"}) {
		t.Errorf("output directory holds %v, want only sandbox", got)
	}
	o.Force = true
	if _, err := Build(context.Background(), o); err != nil {
		t.Errorf("rebuild with Force: %v", err)
	}
	o.Force = false
	if _, err := Build(context.Background(), o); !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("rebuild without Force = %v, want ErrExists", err)
	}
}

// TestBuildFromLayoutIsNotCachedAsSIF: only registry pulls keep a built SIF; a local layout
// saves no download and a cached copy would carry the first build's labels.
func TestBuildFromLayoutIsNotCachedAsSIF(t *testing.T) {
	needTar2sqfs(t)
	src := ociLayout(t, v1.Config{Cmd: []string{"/bin/tool"}}, tarLayer(t, map[string]string{"bin/tool": "tool"}))
	cacheDir := t.TempDir()
	for _, name := range []string{"a.sif", "b.sif"} {
		out := filepath.Join(t.TempDir(), name)
		res, err := Build(context.Background(), opts("oci:"+src, out, cacheDir))
		if err != nil {
			t.Fatalf("Build %s: %v", name, err)
		}
		if res.Cached {
			t.Errorf("%s was served from the SIF cache", name)
		}
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, %v; want mode 0755", name, fi.Mode(), err)
		}
	}
	if got := entries(t, filepath.Join(cacheDir, "sif")); len(got) != 0 {
		t.Errorf("cache holds SIFs %v after layout builds, want none", got)
	}
}

func TestBuildLabelsAndRunscriptFollowImageConfig(t *testing.T) {
	needTar2sqfs(t)
	cfg := v1.Config{
		Entrypoint: []string{"/bin/tool", "--flag"},
		Cmd:        []string{"arg one", "it's"},
		Env:        []string{"PATH=/bin", "GREETING=hi there"},
		Labels:     map[string]string{"org.example.version": "1.2", "maintainer": "kerr"},
	}
	src := ociLayout(t, cfg, tarLayer(t, map[string]string{"bin/tool": "tool"}))
	out := filepath.Join(t.TempDir(), "img.sif")
	if _, err := Build(context.Background(), opts("oci:"+src, out, t.TempDir())); err != nil {
		t.Fatalf("Build: %v", err)
	}
	img := openSIF(t, out)
	if got, want := readRoot(t, img, "/.singularity.d/runscript"), sylayout.Runscript(cfg.Entrypoint, cfg.Cmd); got != want {
		t.Errorf("runscript = %q, want %q", got, want)
	}
	if got := readRoot(t, img, "/singularity"); got != sylayout.Runscript(cfg.Entrypoint, cfg.Cmd) {
		t.Errorf("/singularity does not lead to the runscript: %q", got)
	}
	if got, want := readRoot(t, img, "/.singularity.d/env/10-docker2singularity.sh"), sylayout.DockerEnv(cfg.Env); got != want {
		t.Errorf("env script = %q, want %q", got, want)
	}
	labels, err := img.Labels()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"org.example.version": "1.2", "maintainer": "kerr",
		"org.label-schema.build-arch":                          "amd64",
		"org.label-schema.usage.singularity.deffile.bootstrap": "oci",
		"org.label-schema.usage.singularity.deffile.from":      "oci:" + src,
	} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	if labelsJSON := readRoot(t, img, "/.singularity.d/labels.json"); !strings.Contains(labelsJSON, `"org.example.version": "1.2"`) {
		t.Errorf("labels.json = %s", labelsJSON)
	}
	raw, err := img.OCIConfig()
	if err != nil || !bytes.Contains(raw, []byte(`"Entrypoint":["/bin/tool","--flag"]`)) {
		t.Errorf("OCI config = %s, %v", raw, err)
	}
	if d, err := img.RootFS(); err != nil {
		t.Error(err)
	} else if _, _, arch, _ := d.PartitionMetadata(); arch != "amd64" {
		t.Errorf("partition arch = %s, want amd64", arch)
	}
}
