package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/starter/loopdev"
	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

// TestMountMakesAnOverlayBundle mounts a real SIF and checks the layout, the mounts, the
// loop device, config.json, and that writes land in overlay/upper, never in the SIF.
func TestMountMakesAnOverlayBundle(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	before := sum(t, e.sif)
	e.mustMount(bundle, false)

	if got := entries(t, bundle); !slices.Equal(got, []string{"config.json", "overlay", "rootfs"}) {
		t.Errorf("ls bundle = %q", got)
	}
	st := statOf(t, bundle)
	if st.Mode&0o7777 != 0o700 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("bundle dir mode %o owner %d:%d, want 0700 root", st.Mode&0o7777, st.Uid, st.Gid)
	}
	ms := mountsBelow(t, bundle)
	if len(ms) != 2 {
		t.Fatalf("mounts below the bundle: %+v", ms)
	}
	lower := mountinfo.At(ms, filepath.Join(bundle, "overlay/lower"))
	rootfs := mountinfo.At(ms, filepath.Join(bundle, "rootfs"))
	if len(lower) != 1 || lower[0].FSType != "squashfs" || !strings.HasPrefix(lower[0].Source, "/dev/loop") ||
		!hasOpts(lower[0].Options, "ro", "nodev") {
		t.Errorf("overlay/lower: %+v", lower)
	}
	if len(rootfs) != 1 || rootfs[0].FSType != "overlay" ||
		!strings.Contains(rootfs[0].SuperOptions, "lowerdir=overlay/lower") || !hasOpts(rootfs[0].Options, "rw", "nodev") {
		t.Errorf("rootfs: %+v", rootfs)
	}
	loops := e.loops()
	if len(loops) != 1 || loops[0].Flags&(unix.LO_FLAGS_READ_ONLY|unix.LO_FLAGS_AUTOCLEAR) != unix.LO_FLAGS_READ_ONLY|unix.LO_FLAGS_AUTOCLEAR {
		t.Errorf("loop devices of the SIF: %+v", loops)
	}

	// The marker says what mount did.
	fd, err := openDir(bundle)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := readMarker(fd)
	_ = unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	dev, ino := e.sifID()
	if mk.Image != e.sif || mk.ImageDev != dev || mk.ImageIno != ino || !mk.CreatedDir || mk.ReadOnly ||
		len(lower) != 1 || mk.LoopDevice != lower[0].Source {
		t.Errorf("marker %+v", mk)
	}

	var spec struct {
		Root    struct{ Path string }
		Process struct{ Args []string }
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != "rootfs" || !slices.Equal(spec.Process.Args, []string{"/bin/sh"}) {
		t.Errorf("config.json root %q args %q", spec.Root.Path, spec.Process.Args)
	}
	if fi, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("config.json: %v %v", fi.Mode(), err)
	}

	if got, err := os.ReadFile(filepath.Join(bundle, "rootfs/hello.txt")); err != nil || string(got) != "hello from the image\n" {
		t.Errorf("rootfs/hello.txt = %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/new.txt"), []byte("written"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(bundle, "overlay/upper/new.txt")); err != nil || string(got) != "written" {
		t.Errorf("overlay/upper/new.txt = %q, %v", got, err)
	}

	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
	if sum(t, e.sif) != before {
		t.Error("the SIF changed")
	}
}

func hasOpts(opts string, want ...string) bool {
	have := strings.Split(opts, ",")
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// A read-only bundle is the squashfs itself at rootfs: no overlay, no upper directory.
func TestMountReadOnlyMountsTheSquashfsAtRootfs(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "ro")
	e.mustMount(bundle, true)
	ms := mountsBelow(t, bundle)
	if len(ms) != 1 || ms[0].Mountpoint != filepath.Join(bundle, "rootfs") || ms[0].FSType != "squashfs" ||
		!hasOpts(ms[0].Options, "ro", "nodev") {
		t.Fatalf("mounts: %+v", ms)
	}
	if got := entries(t, filepath.Join(bundle, "overlay")); !slices.Equal(got, []string{"kerr-bundle.json"}) {
		t.Errorf("overlay/ holds %q", got)
	}
	err := os.WriteFile(filepath.Join(bundle, "rootfs/new.txt"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write in a read-only rootfs: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct{ Root struct{ Readonly bool } }
	if err := json.Unmarshal(b, &spec); err != nil || !spec.Root.Readonly {
		t.Errorf("config.json root.readonly not set: %v", err)
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// An image without an OCI config runs its runscript.
func TestMountWithoutOCIConfigRunsTheRunscript(t *testing.T) {
	e := newEnv(t)
	if err := os.Remove(e.sif); err != nil {
		t.Fatal(err)
	}
	e.sif = writeSIF(t, e.dir, e.sqfs, nil)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	var spec struct{ Process struct{ Args []string } }
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil || !slices.Equal(spec.Process.Args, []string{"/.singularity.d/actions/run"}) {
		t.Errorf("process.args = %q (%v)", spec.Process.Args, err)
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// Bundles of one SIF share one loop device, each with its own overlay; the device stays
// until the last bundle goes.
func TestTwoBundlesShareOneLoopDevice(t *testing.T) {
	e := newEnv(t)
	b1, b2 := filepath.Join(e.dir, "b1"), filepath.Join(e.dir, "b2")
	e.mustMount(b1, false)
	e.mustMount(b2, false)
	loops := e.loops()
	if len(loops) != 1 {
		t.Fatalf("loop devices of the SIF: %+v", loops)
	}
	l1 := mountinfo.At(mountsBelow(t, b1), filepath.Join(b1, "overlay/lower"))
	l2 := mountinfo.At(mountsBelow(t, b2), filepath.Join(b2, "overlay/lower"))
	if len(l1) != 1 || len(l2) != 1 || l1[0].Source != l2[0].Source {
		t.Errorf("lower mounts %+v and %+v", l1, l2)
	}
	if err := os.WriteFile(filepath.Join(b1, "rootfs/only-in-b1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b2, "rootfs/only-in-b1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write in b1 shows in b2: %v", err)
	}
	if err := Umount(b1, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b2, "rootfs/hello.txt")); err != nil || len(got) == 0 {
		t.Errorf("b2 broke when b1 went: %q %v", got, err)
	}
	if len(e.loops()) != 1 {
		t.Error("the shared loop device went with the first bundle")
	}
	if err := Umount(b2, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(b1, dirState{})
	e.checkLeftAsFound(b2, dirState{})
}

// An existing empty directory is taken over while mounted and given back as it was.
func TestUmountRestoresAnExistingDirectory(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "existing")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bundle, 1000, 1001); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bundle, 0o2750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, bundle)
	e.mustMount(bundle, false)
	if st := statOf(t, bundle); st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		t.Errorf("mounted bundle dir: mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, want)
}

// Paths with commas, colons and '=' reach no mount option string, so they just work.
func TestMountPathWithCommaColonAndEquals(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "a,b:c=d e")
	e.mustMount(bundle, false)
	if got, err := os.ReadFile(filepath.Join(bundle, "rootfs/hello.txt")); err != nil || len(got) == 0 {
		t.Errorf("rootfs/hello.txt: %q %v", got, err)
	}
	if ms := mountsBelow(t, bundle); len(ms) != 2 {
		t.Errorf("mounts: %+v", ms)
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// KeepOverlay leaves overlay/upper, the container's writes, and removes the rest.
func TestUmountKeepOverlayKeepsOnlyTheUpperDirectory(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/kept.txt"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Umount(bundle, UmountOptions{KeepOverlay: true}); err != nil {
		t.Fatal(err)
	}
	if ms := mountsBelow(t, bundle); len(ms) > 0 {
		t.Errorf("still mounted: %+v", ms)
	}
	e.waitNoLoop()
	if got := entries(t, bundle); !slices.Equal(got, []string{"overlay"}) {
		t.Errorf("ls bundle = %q", got)
	}
	if got := entries(t, filepath.Join(bundle, "overlay")); !slices.Equal(got, []string{"upper"}) {
		t.Errorf("ls bundle/overlay = %q", got)
	}
	if got, err := os.ReadFile(filepath.Join(bundle, "overlay/upper/kept.txt")); err != nil || string(got) != "kept" {
		t.Errorf("kept.txt: %q %v", got, err)
	}
	// What is left is no bundle any more.
	if err := Umount(bundle, UmountOptions{}); err == nil || !strings.Contains(err.Error(), "is not a kerr bundle") {
		t.Errorf("umount of the kept overlay: %v", err)
	}
}

// A device bound to the SIF's partition by another process that has not mounted it yet (a
// concurrent mount) is shared too, and outlives that process's hold through our mount.
func TestMountSharesADeviceHeldOnlyByAnotherAttach(t *testing.T) {
	e := newEnv(t)
	f, err := os.Open(e.sif)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	m := newMounter(e.sif, filepath.Join(e.dir, "x"), false)
	if err := m.prepare(); err != nil {
		t.Fatal(err)
	}
	held, err := loopdev.Attach(f, m.span)
	m.release()
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(e.dir, "b")
	e.mustMount(bundle, false)
	lower := mountinfo.At(mountsBelow(t, bundle), filepath.Join(bundle, "overlay/lower"))
	if len(lower) != 1 || lower[0].Source != held.Path {
		t.Errorf("mounted %+v, the held device is %s", lower, held.Path)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Umount(bundle, UmountOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

// Concurrent mounts of one SIF agree on one loop device (the search and the binding happen
// under a lock on /dev/loop-control).
func TestConcurrentMountsOfOneSIFShareOneLoopDevice(t *testing.T) {
	e := newEnv(t)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- e.mount(filepath.Join(e.dir, fmt.Sprintf("b%d", i)), false) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if loops := e.loops(); len(loops) != 1 {
		t.Errorf("loop devices of the SIF: %+v", loops)
	}
	for i := range n {
		if err := Umount(filepath.Join(e.dir, fmt.Sprintf("b%d", i)), UmountOptions{}); err != nil {
			t.Error(err)
		}
	}
	for i := range n {
		e.checkLeftAsFound(filepath.Join(e.dir, fmt.Sprintf("b%d", i)), dirState{})
	}
}
