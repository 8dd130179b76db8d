package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/starter/loopdev"
	"github.com/kerr-hpc/kerr/starter/mountinfo"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts squashfs and overlayfs through loop devices")
	}
}

// testOCIConfig is the image config of the test SIF.
const testOCIConfig = `{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"}}`

// rootEntry is one file of the test image's root filesystem.
type rootEntry struct {
	name, data string
	dir        bool
}

var testRoot = []rootEntry{
	{name: "bin", dir: true},
	{name: "etc", dir: true},
	{name: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\n"},
	{name: "etc/group", data: "root:x:0:\n"},
	{name: "hello.txt", data: "hello from the image\n"},
	{name: ".singularity.d", dir: true},
	{name: ".singularity.d/actions", dir: true},
	{name: ".singularity.d/actions/run", data: "#!/bin/sh\nexec /bin/sh \"$@\"\n"},
}

// squashfsOf builds a squashfs image of entries with tar2sqfs and returns its bytes.
func squashfsOf(t *testing.T, entries []rootEntry) []byte {
	t.Helper()
	if _, err := exec.LookPath("tar2sqfs"); err != nil {
		t.Skip("tar2sqfs not in PATH")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0)}
		if e.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
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
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeSIF writes a SIF with root filesystem sqfs (and the OCI config ociConfig, nil for
// none) into a new file in dir and returns its path.
func writeSIF(t *testing.T, dir string, sqfs, ociConfig []byte) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "root.sqfs")
	if err := os.WriteFile(src, sqfs, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	p := filepath.Join(dir, "image.sif")
	err = sifimage.Write(p, sifimage.Contents{Squashfs: f, Arch: "amd64", Deffile: "bootstrap: docker\nfrom: test\n",
		Labels: map[string]string{"test": "yes"}, OCIConfig: ociConfig, Created: time.Unix(1710000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// env is one test's scratch space: a SIF of its own (so that loop devices are counted per
// test) and a directory for bundles, with every mount below it detached at the end even if
// the test failed halfway.
type env struct {
	t    *testing.T
	dir  string
	sif  string
	sqfs []byte
}

// newEnv makes a scratch directory with a fresh copy of the test SIF.
func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() { detachAllBelow(t, dir) })
	e := &env{t: t, dir: dir, sqfs: squashfsOf(t, testRoot)}
	e.sif = writeSIF(t, dir, e.sqfs, []byte(testOCIConfig))
	return e
}

// detachAllBelow lazily unmounts everything below dir, deepest first.
func detachAllBelow(t *testing.T, dir string) {
	ms, err := mountinfo.Read()
	if err != nil {
		t.Error(err)
		return
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return
	}
	below := mountinfo.Under(ms, real)
	sort.Slice(below, func(i, j int) bool { return len(below[i].Mountpoint) > len(below[j].Mountpoint) })
	for _, m := range below {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err == nil {
			t.Errorf("test left %s mounted at %s", m.FSType, m.Mountpoint)
		}
	}
}

// mount mounts the env's SIF at bundle the way Mount does, without a seccomp profile (the
// installed one does not exist in a test).
func (e *env) mount(bundle string, readOnly bool) error {
	m := newMounter(e.sif, bundle, readOnly)
	m.seccomp = ""
	return m.mount()
}

// mustMount mounts and fails the test on error.
func (e *env) mustMount(bundle string, readOnly bool) {
	e.t.Helper()
	if err := e.mount(bundle, readOnly); err != nil {
		e.t.Fatalf("mount %s: %v", bundle, err)
	}
}

// sifID is the SIF's device and inode.
func (e *env) sifID() (uint64, uint64) {
	e.t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(e.sif, &st); err != nil {
		e.t.Fatal(err)
	}
	return st.Dev, st.Ino
}

// loops lists the loop devices bound to the SIF.
func (e *env) loops() []loopdev.Status {
	e.t.Helper()
	dev, ino := e.sifID()
	ss, err := loopdev.BoundTo(dev, ino)
	if err != nil {
		e.t.Fatal(err)
	}
	return ss
}

// waitNoLoop waits until no loop device is bound to the SIF: autoclear may finish just
// after the last unmount returns.
func (e *env) waitNoLoop() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss := e.loops()
		if len(ss) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("loop devices still bound to the SIF: %+v", ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountsBelow lists the mounts at or below path.
func mountsBelow(t *testing.T, path string) []mountinfo.Mount {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	return mountinfo.Under(ms, path)
}

// dirState is what "the directory as it was" compares: absent, or mode, owner and entries.
type dirState struct {
	Exists   bool
	Mode     uint32
	UID, GID uint32
	Entries  string
}

func stateOf(t *testing.T, path string) dirState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return dirState{}
		}
		t.Fatal(err)
	}
	s := dirState{Exists: true, Mode: st.Mode, UID: st.Uid, GID: st.Gid}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		var names []string
		err := filepath.Walk(path, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if p != path {
				rel, _ := filepath.Rel(path, p)
				names = append(names, fmt.Sprintf("%s:%v", rel, fi.Mode()))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Entries = strings.Join(names, " ")
	}
	return s
}

// checkLeftAsFound checks that nothing is mounted below bundle, no loop device is bound to
// the SIF, and bundle is in state want.
func (e *env) checkLeftAsFound(bundle string, want dirState) {
	e.t.Helper()
	if ms := mountsBelow(e.t, bundle); len(ms) > 0 {
		e.t.Errorf("still mounted below %s: %+v", bundle, ms)
	}
	e.waitNoLoop()
	if got := stateOf(e.t, bundle); got != want {
		e.t.Errorf("%s left as %+v, want %+v", bundle, got, want)
	}
}

// sum is the SHA-256 of a file.
func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// entries lists a directory's names, sorted.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// statOf returns the stat of path.
func statOf(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}
