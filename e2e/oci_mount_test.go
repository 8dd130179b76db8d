//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// `kerr oci mount IMAGE.sif BUNDLE` turns a SIF into an OCI bundle (config.json, an overlay
// at rootfs/ whose writes land in overlay/upper, the image's squashfs on a shared read-only
// loop device) and `kerr oci umount BUNDLE` undoes it, leaving the directory as it found it.

// pullBusyboxSIF pulls the busybox fixture into the root profile's work dir as a user would
// (`kerr pull --insecure docker://…/busybox:latest`) and returns the SIF's path.
func pullBusyboxSIF(t *testing.T, s *harness.Session) string {
	t.Helper()
	s.Run(h.Root, "pull", "--insecure", h.Ref(h.Images.Busybox)).OK(t)
	return filepath.Join(s.Dir(h.Root), "busybox_latest.sif")
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// loopsReleased waits a moment for the loop devices on sif to go (autoclear detaches a
// device when its last user closes it, which the kernel may finish just after umount
// returns) and reports those still attached.
func loopsReleased(t *testing.T, sif string) {
	t.Helper()
	var loops []harness.LoopDevice
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if loops = harness.LoopDevicesFor(sif); len(loops) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range loops {
		t.Errorf("loop device %s still attached to %s", l.Dev, sif)
	}
}

// released checks that nothing of a bundle in dir is left in the kernel: no mount on or under
// dir and no loop device on sif.
func released(t *testing.T, sif, dir string) {
	t.Helper()
	for _, m := range harness.MountsUnder(dir) {
		t.Errorf("still mounted: %s", m)
	}
	loopsReleased(t, sif)
}

// unchanged checks that a path is as it was recorded.
func unchanged(t *testing.T, before harness.DirState) {
	t.Helper()
	if d := before.Diff(); d != "" {
		t.Errorf("changed: %s", d)
	}
}

// mountedBundle is what checkBundle found in a bundle kerr mounted.
type mountedBundle struct {
	dir, sif string
	spec     specs.Spec
	loop     harness.LoopDevice
}

func (b *mountedBundle) rootfs() string { return filepath.Join(b.dir, "rootfs") }
func (b *mountedBundle) upper() string  { return filepath.Join(b.dir, "overlay", "upper") }

// checkBundle checks a bundle that `kerr oci mount [--read-only] sif dir` made: its layout,
// its mounts, the loop device under them and config.json.
func checkBundle(t *testing.T, sif, dir string, readOnly bool) *mountedBundle {
	t.Helper()
	b := &mountedBundle{dir: dir, sif: sif}
	if !readOnly {
		wantDir(t, dir, "config.json", "overlay", "rootfs")
		wantDir(t, filepath.Join(dir, "overlay"), "kerr-bundle.json", "lower", "upper", "work")
	}

	offset, size, err := harness.RootfsPartition(sif)
	if err != nil {
		t.Fatal(err)
	}
	loops := harness.LoopDevicesFor(sif)
	if len(loops) != 1 {
		t.Fatalf("want one loop device attached to %s, got %+v", sif, loops)
	}
	b.loop = loops[0]
	if !b.loop.ReadOnly || !b.loop.Autoclear || b.loop.Offset != offset {
		t.Errorf("loop device %+v: want read-only, autoclear, offset %d (the squashfs partition)", b.loop, offset)
	}
	if b.loop.SizeLimit != 0 && b.loop.SizeLimit != size {
		t.Errorf("loop device %s: size limit %d, want the partition's %d", b.loop.Dev, b.loop.SizeLimit, size)
	}

	// The image: a read-only squashfs of that loop device, in the bundle.
	var squash []harness.Mount
	for _, m := range harness.MountsUnder(dir) {
		if m.Source == b.loop.Dev {
			squash = append(squash, m)
		}
	}
	if len(squash) != 1 || squash[0].FSType != "squashfs" || !squash[0].ReadOnly() {
		t.Errorf("want one read-only squashfs mount of %s in %s, got %v", b.loop.Dev, dir, squash)
	}
	root, ok := harness.MountAt(b.rootfs())
	switch {
	case !ok:
		t.Fatalf("nothing mounted at %s; mounts in the bundle: %v", b.rootfs(), harness.MountsUnder(dir))
	case readOnly && (root.FSType != "squashfs" || !root.ReadOnly()):
		t.Errorf("--read-only: want the read-only squashfs at rootfs, got %s", root)
	case !readOnly && root.FSType != "overlay":
		t.Errorf("want an overlay at rootfs, got %s", root)
	case !readOnly && len(squash) == 1 && squash[0].Point != filepath.Join(dir, "overlay", "lower"):
		t.Errorf("want the squashfs at overlay/lower, got %s", squash[0])
	}
	if readOnly {
		for _, m := range harness.MountsUnder(dir) {
			if m.FSType == "overlay" {
				t.Errorf("--read-only: an overlay is mounted: %s", m)
			}
		}
		if _, err := os.Lstat(b.upper()); err == nil {
			t.Errorf("--read-only: %s exists", b.upper())
		}
	}

	b.spec = checkSpec(t, filepath.Join(dir, "config.json"), readOnly)
	return b
}

// checkSpec decodes config.json strictly into the runtime-spec types and checks what the
// fixture image and kerr's defaults put there.
func checkSpec(t *testing.T, path string, readOnly bool) specs.Spec {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		t.Fatalf("config.json is not a runtime-spec Spec: %v\n%s", err, raw)
	}
	if !strings.HasPrefix(spec.Version, "1.") {
		t.Errorf("ociVersion %q", spec.Version)
	}
	if spec.Root == nil || (spec.Root.Path != "rootfs" && spec.Root.Path != filepath.Join(filepath.Dir(path), "rootfs")) {
		t.Errorf("root %+v, want path rootfs", spec.Root)
	} else if spec.Root.Readonly != readOnly {
		t.Errorf("root.readonly %v, want %v", spec.Root.Readonly, readOnly)
	}
	if spec.Hostname == "" {
		t.Error("no hostname")
	}

	p := spec.Process
	if p == nil {
		t.Fatalf("no process in config.json:\n%s", raw)
	}
	// The fixture's ENTRYPOINT and CMD, ENV, WORKDIR and USER (nobody is 65534:65534 in its
	// /etc/passwd).
	wantArgs := []string{"/bin/sh", "-c", `echo "FOO=$FOO ARGS=$*"`, "e2e", "hello", "world"}
	if !slices.Equal(p.Args, wantArgs) {
		t.Errorf("process.args %q, want ENTRYPOINT+CMD %q", p.Args, wantArgs)
	}
	for _, e := range fixture.Env {
		if !slices.Contains(p.Env, e) {
			t.Errorf("process.env %q lacks the image's %q", p.Env, e)
		}
	}
	if p.Cwd != fixture.WorkingDir {
		t.Errorf("process.cwd %q, want %q", p.Cwd, fixture.WorkingDir)
	}
	if p.User.UID != 65534 || p.User.GID != 65534 {
		t.Errorf("process.user %d:%d, want the image's USER %s as 65534:65534", p.User.UID, p.User.GID, fixture.User)
	}
	if c := p.Capabilities; c == nil {
		t.Error("no process.capabilities")
	} else {
		for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
			for _, cp := range []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"} {
				if !slices.Contains(set, cp) {
					t.Errorf("capabilities.%s %q lacks the default %s", name, set, cp)
				}
			}
			for _, cp := range []string{"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE"} {
				if slices.Contains(set, cp) {
					t.Errorf("capabilities.%s holds %s, not a default capability", name, cp)
				}
			}
		}
	}
	if !slices.ContainsFunc(p.Rlimits, func(r specs.POSIXRlimit) bool {
		return r.Type == "RLIMIT_NOFILE" && r.Soft > 0 && r.Soft <= r.Hard
	}) {
		t.Errorf("process.rlimits %+v: no RLIMIT_NOFILE", p.Rlimits)
	}

	types := map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue", "/sys": "sysfs"}
	for dest, typ := range types {
		if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == dest && m.Type == typ }) {
			t.Errorf("no %s mount at %s in %+v", typ, dest, spec.Mounts)
		}
	}

	l := spec.Linux
	if l == nil {
		t.Fatalf("no linux section in config.json:\n%s", raw)
	}
	for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
		if !slices.ContainsFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == ns && n.Path == "" }) {
			t.Errorf("linux.namespaces %+v: no new %s namespace", l.Namespaces, ns)
		}
	}
	if l.Resources == nil || len(l.Resources.Devices) == 0 || l.Resources.Devices[0].Allow ||
		l.Resources.Devices[0].Access != "rwm" || l.Resources.Devices[0].Type != "" && l.Resources.Devices[0].Type != "a" {
		t.Errorf("linux.resources.devices does not start with deny-all: %+v", l.Resources)
	}
	if !slices.Contains(l.MaskedPaths, "/proc/kcore") {
		t.Errorf("linux.maskedPaths %q lacks /proc/kcore", l.MaskedPaths)
	}
	if !slices.Contains(l.ReadonlyPaths, "/proc/sys") {
		t.Errorf("linux.readonlyPaths %q lacks /proc/sys", l.ReadonlyPaths)
	}
	checkSeccomp(t, l.Seccomp)
	return spec
}

// checkSeccomp compares the config's seccomp profile with the installed one.
func checkSeccomp(t *testing.T, got *specs.LinuxSeccomp) {
	t.Helper()
	if got == nil || got.DefaultAction == "" || len(got.Syscalls) == 0 {
		t.Errorf("linux.seccomp %+v: want the installed profile", got)
		return
	}
	path := filepath.Join(h.Prefix, "etc", "kerr", "seccomp.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("installed seccomp profile: %v", err)
		return
	}
	var want specs.LinuxSeccomp
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if got.DefaultAction != want.DefaultAction || len(got.Syscalls) != len(want.Syscalls) {
		t.Errorf("linux.seccomp: default %s with %d rules, the installed %s has %s with %d",
			got.DefaultAction, len(got.Syscalls), path, want.DefaultAction, len(want.Syscalls))
	}
}

// runProcess runs config.json's process in the rootfs (chroot, its args and env) and returns
// its stdout: the bundle holds what the image's ENTRYPOINT and CMD need.
func runProcess(t *testing.T, b *mountedBundle) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{b.rootfs()}, b.spec.Process.Args...)...)
	cmd.Env = b.spec.Process.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("running config.json's process %q in %s: %v\n%s", b.spec.Process.Args, b.rootfs(), err, stderr.String())
	}
	return stdout.String()
}

// writeThrough writes a file in the bundle's rootfs from inside it and checks the write
// landed in overlay/upper.
func writeThrough(t *testing.T, b *mountedBundle, name, content string) {
	t.Helper()
	out := inRootfs(t, b.rootfs(), "/bin/sh", "-c", "echo "+content+" > /"+name+"; cat /etc/passwd")
	if !strings.Contains(out, "root:x:0:0") {
		t.Errorf("cat /etc/passwd in the rootfs printed %q", out)
	}
	got, err := os.ReadFile(filepath.Join(b.upper(), name))
	if err != nil || string(got) != content+"\n" {
		t.Errorf("overlay/upper/%s: %q, %v; want the write from the rootfs, %q", name, got, err, content+"\n")
	}
}

func TestOCIMountWalkthrough(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	sum := fileSHA256(t, sif)
	dir := filepath.Join(s.Dir(h.Root), "bundle")

	s.Run(h.Root, "oci", "mount", "./busybox_latest.sif", "bundle").OK(t)
	b := checkBundle(t, sif, dir, false)
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 || owner(t, dir) != 0 {
		t.Errorf("a bundle dir kerr created is %v, uid %d, want 0700 root", info.Mode(), owner(t, dir))
	}
	if got := runProcess(t, b); !strings.Contains(got, fixture.RunOutput) {
		t.Errorf("config.json's process printed %q, want %q", got, fixture.RunOutput)
	}
	writeThrough(t, b, "f", "hi")
	if _, err := harness.CatSquashfs(sif, b.loop.Offset, "/f"); err == nil {
		t.Error("the write in the rootfs reached the SIF's squashfs")
	}

	s.Run(h.Root, "oci", "umount", "bundle").OK(t)
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bundle dir that mount created is still there after umount: %v", err)
	}
	released(t, sif, s.Base())
	if got := fileSHA256(t, sif); got != sum {
		t.Errorf("the SIF changed: sha256 %s before mount, %s after umount", sum, got)
	}
}

func TestOCIMountPrecreatedDirIsLeftAsFound(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dir := s.Mkdir(h.Root, "bundle")
	if err := os.Chmod(dir, 0o751); err != nil {
		t.Fatal(err)
	}
	before := harness.StatDir(dir)

	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, false)
	writeThrough(t, b, "f", "hi")
	s.Run(h.Root, "oci", "umount", dir).OK(t)
	unchanged(t, before)
	released(t, sif, s.Base())
}

func TestOCIMountTwoBundlesShareOneLoopDevice(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dirA := filepath.Join(s.Dir(h.Root), "a")
	dirB := filepath.Join(s.Dir(h.Root), "b")

	s.Run(h.Root, "oci", "mount", sif, dirA).OK(t)
	s.Run(h.Root, "oci", "mount", sif, dirB).OK(t)
	a := checkBundle(t, sif, dirA, false) // each checks: exactly one loop device on the SIF
	b := checkBundle(t, sif, dirB, false)
	if a.loop.Dev != b.loop.Dev {
		t.Errorf("bundles of one SIF on two loop devices: %s, %s", a.loop.Dev, b.loop.Dev)
	}
	writeThrough(t, a, "only-in-a", "a")
	if _, err := os.Lstat(filepath.Join(b.rootfs(), "only-in-a")); err == nil {
		t.Error("a write in bundle a shows in bundle b: the overlays are not separate")
	}

	s.Run(h.Root, "oci", "umount", dirA).OK(t)
	for _, m := range harness.MountsUnder(dirA) {
		t.Errorf("still mounted in the unmounted bundle: %s", m)
	}
	if loops := harness.LoopDevicesFor(sif); len(loops) != 1 || loops[0].Dev != b.loop.Dev {
		t.Errorf("after umount of a, loop devices on the SIF: %+v, want b's %s", loops, b.loop.Dev)
	}
	writeThrough(t, b, "in-b", "b") // b still reads the image and writes to its own upper
	if got := runProcess(t, b); !strings.Contains(got, fixture.RunOutput) {
		t.Errorf("bundle b after umount of a: the process printed %q", got)
	}

	s.Run(h.Root, "oci", "umount", dirB).OK(t)
	for _, d := range []string{dirA, dirB} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after umount: %v", d, err)
		}
	}
	released(t, sif, s.Base())
}

func TestOCIMountReadOnly(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	sum := fileSHA256(t, sif)
	dir := filepath.Join(s.Dir(h.Root), "bundle")

	s.Run(h.Root, "oci", "mount", "--read-only", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, true)
	err := os.WriteFile(filepath.Join(b.rootfs(), "f"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing in a read-only bundle's rootfs: %v, want EROFS", err)
	}
	if got := runProcess(t, b); !strings.Contains(got, fixture.RunOutput) {
		t.Errorf("config.json's process printed %q, want %q", got, fixture.RunOutput)
	}

	s.Run(h.Root, "oci", "umount", dir).OK(t)
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bundle dir is still there after umount: %v", err)
	}
	released(t, sif, s.Base())
	if got := fileSHA256(t, sif); got != sum {
		t.Error("the SIF changed")
	}
}

func TestOCIUmountKeepOverlay(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dir := filepath.Join(s.Dir(h.Root), "bundle")

	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, false)
	writeThrough(t, b, "f", "kept")
	s.Run(h.Root, "oci", "umount", "--keep-overlay", dir).OK(t)
	released(t, sif, s.Base())
	wantDir(t, dir, "overlay")
	wantDir(t, filepath.Join(dir, "overlay"), "upper")
	if got, err := os.ReadFile(filepath.Join(dir, "overlay", "upper", "f")); err != nil || string(got) != "kept\n" {
		t.Errorf("overlay/upper/f after --keep-overlay: %q, %v", got, err)
	}
}

// A bundle in use (a process's cwd in its rootfs) is not unmounted without --force, and is
// not changed by the attempt; --force detaches it anyway and the loop device goes when its
// last user does.
func TestOCIUmountBusyNeedsForce(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dir := filepath.Join(s.Dir(h.Root), "bundle")
	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, false)

	busy := exec.Command("sleep", "120")
	busy.Dir = filepath.Join(b.rootfs(), "etc")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Process.Kill(); _ = busy.Wait() }()

	res := s.Run(h.Root, "oci", "umount", dir)
	if res.Code == 0 {
		t.Fatalf("umount of a busy bundle succeeded without --force:\n%s", res)
	}
	if err := harness.CheckErrorLine(res.Stderr); err != nil {
		t.Errorf("%v:\n%s", err, res)
	} else if !strings.Contains(strings.ToLower(res.Stderr), "busy") {
		t.Errorf("the error does not say the bundle is busy:\n%s", res)
	}
	checkBundle(t, sif, dir, false) // still whole
	writeThrough(t, b, "still-works", "yes")

	s.Run(h.Root, "oci", "umount", "--force", dir).OK(t)
	for _, m := range harness.MountsUnder(s.Base()) {
		t.Errorf("still mounted after umount --force: %s", m)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bundle dir is still there after umount --force: %v", err)
	}
	_ = busy.Process.Kill()
	_ = busy.Wait()
	loopsReleased(t, sif)
}

// sifWithoutRootfs writes a SIF holding one JSON descriptor and no partition.
func sifWithoutRootfs(t *testing.T, path string) {
	t.Helper()
	di, err := sif.NewDescriptorInput(sif.DataGenericJSON, strings.NewReader(`{"hello":"world"}`))
	if err != nil {
		t.Fatal(err)
	}
	writeSIF(t, path, di)
}

// sifWithCorruptSquashfs writes a SIF whose primary squashfs partition is random bytes.
func sifWithCorruptSquashfs(t *testing.T, path string) {
	t.Helper()
	junk := make([]byte, 256<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(junk)
	di, err := sif.NewDescriptorInput(sif.DataPartition, bytes.NewReader(junk),
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	writeSIF(t, path, di)
}

func writeSIF(t *testing.T, path string, dis ...sif.DescriptorInput) {
	t.Helper()
	f, err := sif.CreateContainerAtPath(path, sif.OptCreateWithDescriptors(dis...))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mountOverlay mounts an overlay at a new dir of the session, where a bundle cannot hold an
// overlay's upper dir (an overlay is not supported as upperdir), and returns it with the
// function that unmounts it.
func mountOverlay(t *testing.T, s *harness.Session) (string, func()) {
	t.Helper()
	base := s.Mkdir(h.Root, "ovl")
	for _, d := range []string{"l", "u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(base, "m")
	opts := "lowerdir=" + filepath.Join(base, "l") + ",upperdir=" + filepath.Join(base, "u") + ",workdir=" + filepath.Join(base, "w")
	if err := syscall.Mount("overlay", m, "overlay", 0, opts); err != nil {
		t.Fatalf("mounting an overlay for the test: %v", err)
	}
	return m, func() {
		if err := syscall.Unmount(m, 0); err != nil {
			t.Errorf("unmounting the test's overlay: %v", err)
		}
	}
}

// Each bad input fails with its exit code and one error line, and leaves no mount, no loop
// device on the image and the target as it was.
func TestOCIMountBadInputs(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	good := pullBusyboxSIF(t, s)
	onOverlay, unmountOverlay := mountOverlay(t, s)
	defer unmountOverlay() // before Done

	type setup struct {
		sif, dir string // the image to use and the bundle path
	}
	for _, tc := range []struct {
		name  string
		codes []int // acceptable exit codes; the first is the contract's
		// prepare makes the inputs in the test's work dir and returns the kerr arguments
		// and what they name.
		prepare func(t *testing.T, s *harness.Session, work string) (setup, []string)
	}{
		{"image-missing", []int{exitMissing}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "missing.sif"), filepath.Join(work, "bundle")}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"image-not-a-sif", []int{exitInvalid}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "notes.sif"), filepath.Join(work, "bundle")}
			if err := os.WriteFile(st.sif, []byte("this is not a SIF\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"image-empty", []int{exitInvalid}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "empty.sif"), filepath.Join(work, "bundle")}
			if err := os.WriteFile(st.sif, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"image-without-rootfs", []int{exitInvalid}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "norootfs.sif"), filepath.Join(work, "bundle")}
			sifWithoutRootfs(t, st.sif)
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"image-corrupt-squashfs", []int{exitInvalid}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "corrupt.sif"), filepath.Join(work, "bundle")}
			sifWithCorruptSquashfs(t, st.sif)
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"image-truncated", []int{exitInvalid}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{filepath.Join(work, "truncated.sif"), filepath.Join(work, "bundle")}
			copyFile(t, good, st.sif)
			offset, size, err := harness.RootfsPartition(st.sif)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(st.sif, offset+size/2); err != nil {
				t.Fatal(err)
			}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"bundle-is-a-file", []int{exitExists}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			if err := os.WriteFile(st.dir, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"bundle-not-empty", []int{exitExists}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			if err := os.Mkdir(st.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(st.dir, "precious"), []byte("x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"bundle-on-overlayfs", []int{1}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(onOverlay, "bundle")}
			return st, []string{"oci", "mount", st.sif, st.dir}
		}},
		{"mount-no-args", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			return setup{sif: good}, []string{"oci", "mount"}
		}},
		{"mount-one-arg", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			return setup{sif: good}, []string{"oci", "mount", good}
		}},
		{"mount-three-args", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			return st, []string{"oci", "mount", st.sif, st.dir, "extra"}
		}},
		{"mount-unknown-flag", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			return st, []string{"oci", "mount", "--no-such-flag", st.sif, st.dir}
		}},
		{"mount-force-flag", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			return st, []string{"oci", "mount", "--force", st.sif, st.dir}
		}},
		{"umount-no-args", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			return setup{sif: good}, []string{"oci", "umount"}
		}},
		{"umount-two-args", []int{exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			return st, []string{"oci", "umount", st.dir, st.dir}
		}},
		{"umount-missing-dir", []int{exitMissing, exitUsage}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, filepath.Join(work, "bundle")}
			return st, []string{"oci", "umount", st.dir}
		}},
		{"umount-empty-dir", []int{exitUsage, 1}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, s.Mkdir(h.Root, "bundle")}
			return st, []string{"oci", "umount", st.dir}
		}},
		{"umount-not-a-bundle", []int{exitUsage, 1}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, notABundle(t, s)}
			return st, []string{"oci", "umount", st.dir}
		}},
		{"umount-force-not-a-bundle", []int{exitUsage, 1}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, notABundle(t, s)}
			return st, []string{"oci", "umount", "--force", st.dir}
		}},
		{"umount-keep-overlay-not-a-bundle", []int{exitUsage, 1}, func(t *testing.T, s *harness.Session, work string) (setup, []string) {
			st := setup{good, notABundle(t, s)}
			return st, []string{"oci", "umount", "--force", "--keep-overlay", st.dir}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Begin(t)
			defer s.Done()
			work := s.Dir(h.Root)
			st, args := tc.prepare(t, s, work)
			dir := st.dir
			if dir == "" {
				dir = work
			}
			before, beforeWork := harness.StatDir(dir), harness.StatDir(work)
			var sum string
			if _, err := os.Stat(st.sif); err == nil {
				sum = fileSHA256(t, st.sif)
			}

			res := s.Run(h.Root, args...)
			t.Logf("stderr: %s", strings.TrimSpace(res.Stderr))
			if !slices.Contains(tc.codes, res.Code) {
				t.Errorf("want exit %d, got %d:\n%s", tc.codes[0], res.Code, res)
			}
			if err := harness.CheckOnlyErrorLine(res.Stderr); err != nil {
				t.Errorf("%v:\n%s", err, res)
			}
			unchanged(t, before)
			unchanged(t, beforeWork)
			released(t, st.sif, s.Base())
			released(t, good, s.Base())
			if sum != "" && fileSHA256(t, st.sif) != sum {
				t.Errorf("the image %s changed", st.sif)
			}
		})
	}
}

// notABundle makes a directory that looks a little like a bundle (config.json, rootfs/,
// overlay/upper/) but that kerr did not make: umount must refuse it and delete nothing.
func notABundle(t *testing.T, s *harness.Session) string {
	t.Helper()
	dir := s.Mkdir(h.Root, "bundle")
	for _, d := range []string{"rootfs", "overlay", "overlay/upper"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"config.json", "precious", "overlay/upper/precious"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOCIMountAlreadyABundleExits3(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dir := filepath.Join(s.Dir(h.Root), "bundle")
	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, false)
	writeThrough(t, b, "f", "first")
	config, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{{"oci", "mount", sif, dir}, {"oci", "mount", "--read-only", sif, dir}} {
		s.Run(h.Root, args...).Fails(t, exitExists)
		checkBundle(t, sif, dir, false)
		if now, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(now, config) {
			t.Error("a refused mount rewrote config.json")
		}
		if got, _ := os.ReadFile(filepath.Join(b.upper(), "f")); string(got) != "first\n" {
			t.Errorf("a refused mount lost the bundle's writes: overlay/upper/f is %q", got)
		}
	}
	s.Run(h.Root, "oci", "umount", dir).OK(t)
	released(t, sif, s.Base())
}

func TestOCIMountAsUserExits5(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	work := s.Dir(h.User)
	before := harness.StatDir(work)
	s.Run(h.User, "oci", "mount", sif, filepath.Join(work, "bundle")).Fails(t, exitDenied)
	s.Run(h.User, "oci", "mount", "--read-only", sif, filepath.Join(work, "bundle")).Fails(t, exitDenied)
	unchanged(t, before)
	released(t, sif, s.Base())

	// Nor may the user undo root's bundle.
	dir := filepath.Join(s.Dir(h.Root), "bundle")
	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	s.Run(h.User, "oci", "umount", dir).Fails(t, exitDenied)
	s.Run(h.User, "oci", "umount", "--force", dir).Fails(t, exitDenied)
	checkBundle(t, sif, dir, false)
	s.Run(h.Root, "oci", "umount", dir).OK(t)
	released(t, sif, s.Base())
}

// procStat is a process's state letter, parent and process group from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgid int
	state           string
}

// processes lists the processes that are not zombies (a zombie waits for init to reap it,
// which takes a while on some machines, and runs nothing).
func processes() []procStat {
	var out []procStat
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if i < 0 || len(f) < 3 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, procStat{pid: pid, ppid: ppid, pgid: pgid, state: f[0]})
	}
	return out
}

// children lists the live processes whose parent is pid.
func children(pid int) []int {
	var out []int
	for _, p := range processes() {
		if p.ppid == pid {
			out = append(out, p.pid)
		}
	}
	return out
}

// groupGone waits for every process of a process group to exit (zombies aside).
func groupGone(pgid int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !slices.ContainsFunc(processes(), func(p procStat) bool { return p.pgid == pgid }) {
			return true
		}
	}
	return false
}

// A `kerr oci mount` (or umount) killed with SIGKILL at any moment leaves what `kerr oci
// umount --force` cleans completely: no mount, no loop device, the directory as before.
func TestOCIMountKilledThenUmountForceCleans(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	// A SIF of some size (32 MiB of incompressible data), so that the mount has more to look at.
	p := pushUnique(t, fixture.Spec{Padding: 32 << 20})
	sif := filepath.Join(s.Dir(h.Root), "big.sif")
	s.Run(h.Root, "pull", "--insecure", sif, h.Ref(p)).OK(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))

	// group: kill -9 the mount's process group (kerr and its starter); starter: the starter
	// alone; umount: the process group of an umount of a whole bundle.
	for _, victim := range []string{"group", "starter", "umount"} {
		t.Run(victim, func(t *testing.T) {
			for i := range 10 {
				dir := filepath.Join(s.Dir(h.Root), "bundle-"+victim+strconv.Itoa(i))
				if i%2 == 1 { // half of them into a dir that exists
					if err := os.Mkdir(dir, 0o750); err != nil {
						t.Fatal(err)
					}
				}
				before := harness.StatDir(dir)
				delay := time.Duration(rng.IntN(51)) * time.Millisecond
				args := []string{"oci", "mount", sif, dir}
				if victim == "umount" {
					s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
					args = []string{"oci", "umount", dir}
				}
				run := s.Start(h.Root, harness.Opts{}, args...)
				pid := run.Pid()
				killed := "nothing (kerr had exited)"
				switch victim {
				case "group", "umount":
					time.Sleep(delay)
					if syscall.Kill(-pid, syscall.SIGKILL) == nil {
						killed = "the process group"
					}
				case "starter":
					// Wait for kerr's child, then kill it alone after the delay.
					for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
						if c := children(pid); len(c) > 0 {
							time.Sleep(delay)
							if syscall.Kill(c[0], syscall.SIGKILL) == nil {
								killed = "the starter"
							}
							break
						}
						if state, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); len(state) == 0 ||
							strings.Contains(string(state), ") Z ") {
							break
						}
						time.Sleep(200 * time.Microsecond)
					}
				}
				res := run.Wait()
				t.Logf("try %d: killed %s after %s; %s exited %d", i, killed, delay, args[1], res.Code)
				if victim == "starter" && res.Code != 0 {
					if err := harness.CheckErrorLine(res.Stderr); err != nil {
						t.Errorf("kerr after its starter was killed: %v:\n%s", err, res)
					}
				}
				if !groupGone(pid, 5*time.Second) {
					t.Errorf("try %d: processes of the killed mount still run 5s later", i)
				}

				intact := before.Diff() == "" && len(harness.MountsUnder(dir)) == 0
				um := s.Run(h.Root, "oci", "umount", "--force", dir)
				switch {
				case um.Code != 0 && !intact:
					t.Errorf("try %d: umount --force failed on what the killed mount left:\n%s", i, um)
				case um.Code != 0:
					if err := harness.CheckErrorLine(um.Stderr); err != nil {
						t.Errorf("try %d: %v:\n%s", i, err, um)
					}
				}
				unchanged(t, before)
				released(t, sif, s.Base())
				if t.Failed() {
					t.Fatalf("stopping after try %d (killed %s after %s, %s exited %d)", i, killed, delay, args[1], res.Code)
				}
				_ = os.Remove(dir)
			}
		})
	}
}

// Mounts of one SIF started at the same moment share one loop device too, and unmounts at
// the same moment release it.
func TestOCIMountConcurrentMountsShareOneLoopDevice(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	var dirs []string
	var runs []*harness.Running
	for i := range 4 {
		dir := filepath.Join(s.Dir(h.Root), "bundle"+strconv.Itoa(i))
		dirs = append(dirs, dir)
		runs = append(runs, s.Start(h.Root, harness.Opts{}, "oci", "mount", sif, dir))
	}
	for _, r := range runs {
		r.Wait().OK(t)
	}
	loop := ""
	for _, dir := range dirs {
		b := checkBundle(t, sif, dir, false) // exactly one loop device on the SIF
		if loop != "" && b.loop.Dev != loop {
			t.Errorf("bundles on %s and %s", loop, b.loop.Dev)
		}
		loop = b.loop.Dev
	}
	runs = runs[:0]
	for _, dir := range dirs {
		runs = append(runs, s.Start(h.Root, harness.Opts{}, "oci", "umount", dir))
	}
	for _, r := range runs {
		r.Wait().OK(t)
	}
	wantDir(t, s.Dir(h.Root), filepath.Base(sif))
	released(t, sif, s.Base())
}

// A mount that finds the SIF's loop device while the last bundle on it is being unmounted
// (and autoclear is about to unbind the device) still makes a working bundle of the right
// image.
func TestOCIMountRacesUmountOfTheSameImage(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	for i := range 8 {
		a := filepath.Join(s.Dir(h.Root), "a"+strconv.Itoa(i))
		b := filepath.Join(s.Dir(h.Root), "b"+strconv.Itoa(i))
		s.Run(h.Root, "oci", "mount", sif, a).OK(t)
		um := s.Start(h.Root, harness.Opts{}, "oci", "umount", a)
		if i%2 == 1 {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
		}
		mt := s.Start(h.Root, harness.Opts{}, "oci", "mount", sif, b)
		um.Wait().OK(t)
		mt.Wait().OK(t)
		bb := checkBundle(t, sif, b, false)
		if got := runProcess(t, bb); !strings.Contains(got, fixture.RunOutput) {
			t.Errorf("try %d: the bundle mounted during an umount runs %q", i, got)
		}
		s.Run(h.Root, "oci", "umount", b).OK(t)
		released(t, sif, s.Base())
		if t.Failed() {
			t.Fatalf("stopping after try %d", i)
		}
	}
}

// Bundle and image paths with the characters that separate mount options (comma, colon,
// equals sign, space, backslash) work: they never reach an option string unescaped.
func TestOCIMountPathsWithOptionSeparators(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	pulled := pullBusyboxSIF(t, s)
	odd := filepath.Join(s.Dir(h.Root), `odd, dir:lowerdir=x\y`)
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	sif := filepath.Join(odd, "busy,box:1.sif")
	if err := os.Rename(pulled, sif); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(odd, `bundle,upperdir=x,y z`)
	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	b := checkBundle(t, sif, dir, false)
	writeThrough(t, b, "f", "odd")
	s.Run(h.Root, "oci", "umount", dir).OK(t)
	wantDir(t, odd, filepath.Base(sif))
	released(t, sif, s.Base())
}
