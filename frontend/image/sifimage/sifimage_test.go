package sifimage

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/errdefs"
)

// entry is one tar entry of a test root filesystem.
type entry struct {
	name, data, link string
	typ              byte
}

func reg(name, data string) entry   { return entry{name: name, data: data, typ: tar.TypeReg} }
func dir(name string) entry         { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, to string) entry { return entry{name: name, link: to, typ: tar.TypeSymlink} }

// makeSquashfs builds a squashfs image from entries with the real tar2sqfs.
func makeSquashfs(t *testing.T, entries ...entry) string {
	t.Helper()
	if _, err := exec.LookPath("tar2sqfs"); err != nil {
		t.Skip("tar2sqfs not in PATH")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644,
			Size: int64(len(e.data)), ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data[:h.Size])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "root.sqfs")
	cmd := exec.Command("tar2sqfs", "-q", "-c", "gzip", out)
	cmd.Stdin = &buf
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar2sqfs: %v: %s", err, b)
	}
	return out
}

var testCreated = time.Unix(1710000000, 0)

// writeSIF writes a SIF around the squashfs at sqfs and returns its path.
func writeSIF(t *testing.T, sqfs string, labels map[string]string, ociConfig []byte) string {
	t.Helper()
	f, err := os.Open(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := filepath.Join(t.TempDir(), "image.sif")
	err = Write(p, Contents{Squashfs: f, Arch: "arm64", Deffile: "bootstrap: docker\nfrom: busybox\n",
		Labels: labels, OCIConfig: ociConfig, Created: testCreated})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return p
}

func openSIF(t *testing.T, p string) *Image {
	t.Helper()
	img, err := Open(p)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// testRoot is a small tree with the kinds of links ReadRootFile must follow.
func testRoot(t *testing.T) string {
	return makeSquashfs(t,
		dir("etc/"),
		reg("etc/hello", "hello\n"),
		symlink("etc/rel", "hello"),
		symlink("etc/abs", "/etc/hello"),
		symlink("etc/up", "../../../etc/hello"),
		symlink("etc/chain", "abs"),
		dir(".singularity.d/"),
		reg(".singularity.d/runscript", "#!/bin/sh\nexec true\n"),
		symlink("singularity", ".singularity.d/runscript"),
		reg("big", strings.Repeat("x", maxMetadataFile+1)),
		reg("limit", strings.Repeat("y", maxMetadataFile)),
		dir("loop/"),
		symlink("loop/a", "b"),
		symlink("loop/b", "a"),
		symlink("dangling", "/nowhere"),
	)
}

func TestWriteOpenRootFSIsSquashfsPrimSysWithArch(t *testing.T) {
	img := openSIF(t, writeSIF(t, testRoot(t), nil, nil))
	d, err := img.RootFS()
	if err != nil {
		t.Fatalf("RootFS: %v", err)
	}
	fsType, pt, arch, err := d.PartitionMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if fsType != sif.FsSquash || pt != sif.PartPrimSys || arch != "arm64" {
		t.Errorf("partition = %v %v %q, want squashfs primary system arm64", fsType, pt, arch)
	}
	if img.File() == nil || d.Size() == 0 {
		t.Errorf("root filesystem partition is empty")
	}
	b := make([]byte, len(LaunchScript))
	if _, err := img.File().ReadAt(b, 0); err != nil || string(b) != LaunchScript {
		t.Errorf("file starts with %q, want the launch script", b)
	}
	def, err := img.GetDescriptor(sif.WithDataType(sif.DataDeffile))
	if err != nil {
		t.Fatalf("no deffile descriptor: %v", err)
	}
	if got, _ := def.GetData(); string(got) != "bootstrap: docker\nfrom: busybox\n" {
		t.Errorf("deffile = %q", got)
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	want := map[string]string{"org.label-schema.build-arch": "arm64", "maintainer": `"quoted" ünïcode`, "empty": ""}
	img := openSIF(t, writeSIF(t, testRoot(t), want, nil))
	got, err := img.Labels()
	if err != nil {
		t.Fatalf("Labels: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Labels() = %v, want %v", got, want)
	}
}

func TestOCIConfigRoundTripAndNilWithout(t *testing.T) {
	sqfs := testRoot(t)
	cfg := []byte(`{"architecture":"arm64","os":"linux","config":{"Cmd":["sh"]}}`)
	img := openSIF(t, writeSIF(t, sqfs, nil, cfg))
	got, err := img.OCIConfig()
	if err != nil || !bytes.Equal(got, cfg) {
		t.Errorf("OCIConfig() = %q, %v; want %q", got, err, cfg)
	}

	img = openSIF(t, writeSIF(t, sqfs, nil, nil))
	got, err = img.OCIConfig()
	if err != nil || got != nil {
		t.Errorf("OCIConfig() without one = %q, %v; want nil, nil", got, err)
	}
}

func TestReadRootFileFollowsLinksInsideTheImage(t *testing.T) {
	img := openSIF(t, writeSIF(t, testRoot(t), nil, nil))
	for _, name := range []string{"/etc/hello", "etc/hello", "/etc/rel", "/etc/abs", "/etc/up", "/etc/chain", "/etc/../etc/hello"} {
		b, err := img.ReadRootFile(name)
		if err != nil || string(b) != "hello\n" {
			t.Errorf("ReadRootFile(%q) = %q, %v; want hello", name, b, err)
		}
	}
	b, err := img.ReadRootFile("/singularity")
	if err != nil || string(b) != "#!/bin/sh\nexec true\n" {
		t.Errorf("ReadRootFile(/singularity) = %q, %v; want the runscript", b, err)
	}
}

func TestReadRootFileMissingIsNotExist(t *testing.T) {
	img := openSIF(t, writeSIF(t, testRoot(t), nil, nil))
	for _, name := range []string{"/etc/missing", "/nodir/file", "/dangling"} {
		_, err := img.ReadRootFile(name)
		if !IsNotExist(err) {
			t.Errorf("ReadRootFile(%q) error = %v, want a not-exist error", name, err)
		}
	}
}

func TestReadRootFileRefusesLargeFile(t *testing.T) {
	img := openSIF(t, writeSIF(t, testRoot(t), nil, nil))
	if b, err := img.ReadRootFile("/big"); err == nil {
		t.Errorf("ReadRootFile(/big) read %d bytes, want an error for a file over %d", len(b), maxMetadataFile)
	} else if IsNotExist(err) {
		t.Errorf("ReadRootFile(/big) = %v, want a size error, not not-exist", err)
	}
	if b, err := img.ReadRootFile("/limit"); err != nil || len(b) != maxMetadataFile {
		t.Errorf("ReadRootFile(/limit) = %d bytes, %v; want exactly %d", len(b), err, maxMetadataFile)
	}
}

func TestOpenRefusesNonSIF(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "text.sif")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho this is no SIF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(tmp, "empty.sif")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want error
	}{
		{text, errdefs.ErrInvalidImage},
		{empty, errdefs.ErrInvalidImage},
		{tmp, errdefs.ErrInvalidImage},
		{filepath.Join(tmp, "missing.sif"), errdefs.ErrNotFound},
	} {
		img, err := Open(c.path)
		if err == nil {
			img.Close()
			t.Errorf("Open(%s) succeeded", c.path)
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("Open(%s) = %v, want %v", c.path, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%s) error has several lines: %q", c.path, err)
		}
	}
}

func TestOpenRefusesTruncatedSIF(t *testing.T) {
	p := writeSIF(t, testRoot(t), nil, nil)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{fi.Size() / 2, fi.Size() - 1} {
		cut := filepath.Join(t.TempDir(), "cut.sif")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cut, b[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := Open(cut)
		if err == nil {
			img.Close()
			t.Errorf("Open of a SIF cut to %d of %d bytes succeeded", size, fi.Size())
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidImage) {
			t.Errorf("Open of a SIF cut to %d bytes = %v, want ErrInvalidImage", size, err)
		}
	}
}

func TestRootFSWithoutPartitionIsInvalid(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nopart.sif")
	di, err := sif.NewDescriptorInput(sif.DataGenericJSON, strings.NewReader(`{"a":"b"}`), sif.OptObjectName("other.json"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := sif.CreateContainerAtPath(p, sif.OptCreateWithDescriptors(di))
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	img := openSIF(t, p)
	if _, err := img.RootFS(); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("RootFS() = %v, want ErrInvalidImage", err)
	}
	if _, err := img.ReadRootFile("/etc/hello"); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("ReadRootFile() = %v, want ErrInvalidImage", err)
	}
	if cfg, err := img.OCIConfig(); cfg != nil || err != nil {
		t.Errorf("OCIConfig() = %q, %v; want nil: the JSON object has another name", cfg, err)
	}
	if l, err := img.Labels(); err != nil || len(l) != 0 {
		t.Errorf("Labels() = %v, %v; want none", l, err)
	}
}

func TestRootFSRefusesOtherFilesystems(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ext3.sif")
	di, err := sif.NewDescriptorInput(sif.DataPartition, strings.NewReader(strings.Repeat("\x00", 4096)),
		sif.OptPartitionMetadata(sif.FsExt3, sif.PartPrimSys, runtime.GOARCH))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := sif.CreateContainerAtPath(p, sif.OptCreateWithDescriptors(di))
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	img := openSIF(t, p)
	if _, err := img.RootFS(); !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("RootFS() of an ext3 partition = %v, want ErrInvalidImage", err)
	}
}

func TestLabelsKeepNonStringValuesAsJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels.sif")
	di, err := sif.NewDescriptorInput(sif.DataLabels, strings.NewReader(`{"n":1,"s":"x","l":["a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := sif.CreateContainerAtPath(p, sif.OptCreateWithDescriptors(di))
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	got, err := openSIF(t, p).Labels()
	want := map[string]string{"n": "1", "s": "x", "l": `["a"]`}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("Labels() = %v, %v; want %v", got, err, want)
	}
}

func TestWriteRefusesExistingPath(t *testing.T) {
	sqfs := testRoot(t)
	f, err := os.Open(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := filepath.Join(t.TempDir(), "exists.sif")
	if err := os.WriteFile(p, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = Write(p, Contents{Squashfs: f, Arch: "amd64", Created: testCreated})
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Write over an existing file = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "keep me" {
		t.Errorf("Write changed the existing file: %q", b)
	}
	link := filepath.Join(t.TempDir(), "link.sif")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, Contents{Squashfs: f, Arch: "amd64", Created: testCreated}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Write through a symlink = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "keep me" {
		t.Errorf("Write through a symlink changed its target: %q", b)
	}
}

// TestOpenRefusesOverflowingDescriptor: a descriptor whose offset+size wraps around int64
// must be refused at Open, not panic later in a read (the root starter reads these).
func TestOpenRefusesOverflowingDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int64
		size int64
	}{
		{"wraps", 1, math.MaxInt64},
		{"negative size", 0, -1},
		{"past the end", 1 << 40, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := forgeDescriptor(t, tc.off, tc.size)
			img, err := Open(path)
			if err == nil {
				_, _ = img.OCIConfig()
				img.Close()
				t.Fatal("Open accepted a descriptor outside the file")
			}
			if !errors.Is(err, errdefs.ErrInvalidImage) {
				t.Errorf("Open = %v, want ErrInvalidImage", err)
			}
		})
	}
}

// forgeDescriptor writes a SIF with one JSON object and then overwrites that descriptor's
// offset and size fields in the file.
func forgeDescriptor(t *testing.T, off, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "forged.sif")
	di, err := sif.NewDescriptorInput(sif.DataGenericJSON, strings.NewReader(`{"a":1}`), sif.OptObjectName(ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := sif.CreateContainerAtPath(path, sif.OptCreateWithDescriptors(di))
	if err != nil {
		t.Fatal(err)
	}
	d, err := fi.GetDescriptor(sif.WithDataType(sif.DataGenericJSON))
	if err != nil {
		t.Fatal(err)
	}
	realOff, realSize := d.Offset(), d.Size()
	if err := fi.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Find the descriptor's (offset, size) pair, two little-endian int64s side by side.
	var pair [16]byte
	binary.LittleEndian.PutUint64(pair[:8], uint64(realOff))
	binary.LittleEndian.PutUint64(pair[8:], uint64(realSize))
	i := bytes.Index(b, pair[:])
	if i < 0 {
		t.Fatal("descriptor offset/size not found in the file")
	}
	binary.LittleEndian.PutUint64(b[i:], uint64(off))
	binary.LittleEndian.PutUint64(b[i+8:], uint64(size))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
