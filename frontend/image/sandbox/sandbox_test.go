package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/flatten"
)

// helperEnv makes the test binary extract stdin into the named directory and exit: the
// unprivileged test runs it under another uid.
const helperEnv = "KERR_SANDBOX_TEST_EXTRACT_INTO"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		err := Extract(context.Background(), os.Stdin, dir, Options{Warn: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "warning: "+f+"\n", a...)
		}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var testTime = time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)

func hdr(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: testTime}
}

func file(name, body string, mode int64) flatten.Entry {
	return flatten.Entry{Header: hdr(name, tar.TypeReg, mode), Data: []byte(body)}
}

func dirE(name string, mode int64) flatten.Entry {
	return flatten.Entry{Header: hdr(name, tar.TypeDir, mode)}
}

func link(name string, typ byte, target string) flatten.Entry {
	h := hdr(name, typ, 0o777)
	h.Linkname = target
	return flatten.Entry{Header: h}
}

func tarOf(t testing.TB, es ...flatten.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := *e.Header
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("test tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// escapeName is what a write through a symlink to /etc would create on the host.
const escapeName = "kerr-sandbox-escape-test"

type sandbox struct {
	parent string // holds the canaries next to root
	root   string // the directory extracted into
}

// newSandbox makes an empty root inside a parent holding canary files, and checks after the
// test that nothing outside root changed and nothing appeared in /etc.
func newSandbox(t *testing.T) sandbox {
	t.Helper()
	parent := t.TempDir()
	s := sandbox{parent: parent, root: filepath.Join(parent, "root")}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "canary"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(parent, "outside/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "outside/deeper/canary"), []byte("deep canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, parent, s.root)
	t.Cleanup(func() {
		if after := snapshot(t, parent, s.root); !reflect.DeepEqual(before, after) {
			t.Errorf("outside the sandbox changed:\nbefore %v\nafter  %v", before, after)
		}
		if _, err := os.Lstat("/etc/" + escapeName); err == nil {
			os.Remove("/etc/" + escapeName)
			t.Errorf("a write escaped to /etc/%s", escapeName)
		}
		// Let t.TempDir remove read-only directories when not running as root.
		_ = filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
	})
	return s
}

// snapshot describes everything under parent except the root subtree.
func snapshot(t *testing.T, parent, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			m[p] = "sandbox root"
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d nlink=%d size=%d mtime=%d", st.Mode, st.Uid, st.Nlink, st.Size, st.Mtim.Nano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " data=" + string(b)
		}
		m[p] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return m
}

// extract runs Extract and returns its warnings.
func (s sandbox) extract(t *testing.T, data []byte, opts Options) []string {
	t.Helper()
	var warnings []string
	opts.Warn = func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) }
	if err := Extract(context.Background(), bytes.NewReader(data), s.root, opts); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	return warnings
}

func (s sandbox) path(name string) string { return filepath.Join(s.root, name) }

func (s sandbox) stat(t *testing.T, name string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(s.path(name), &st); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return st
}

func (s sandbox) wantMode(t *testing.T, name string, typ, perm uint32) {
	t.Helper()
	st := s.stat(t, name)
	if st.Mode&unix.S_IFMT != typ || st.Mode&0o7777 != perm {
		t.Errorf("%s: mode %o, want type %o perm %o", name, st.Mode, typ, perm)
	}
}

func (s sandbox) wantData(t *testing.T, name, want string) {
	t.Helper()
	b, err := os.ReadFile(s.path(name))
	if err != nil {
		t.Errorf("%s: %v", name, err)
	} else if string(b) != want {
		t.Errorf("%s = %q, want %q", name, b, want)
	}
}

func (s sandbox) wantAbsent(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Lstat(s.path(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (err %v)", name, err)
	}
}

func wantWarning(t *testing.T, warnings []string, substr string) {
	t.Helper()
	for _, w := range warnings {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", substr, warnings)
}

func TestExtractNormalTree(t *testing.T) {
	s := newSandbox(t)
	fifo := hdr("run/fifo", tar.TypeFifo, 0o640)
	warnings := s.extract(t, tarOf(t,
		dirE("./", 0o750),
		dirE("etc/", 0o755),
		file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		file("bin/sh", "elf", 0o755),
		dirE("bin", 0o711),
		file("usr/bin/su", "setuid", 0o4755),
		file("empty", "", 0o600),
		link("lib", tar.TypeSymlink, "usr/lib"),
		link("passwd-link", tar.TypeLink, "etc/passwd"),
		flatten.Entry{Header: fifo},
	), Options{})
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	s.wantMode(t, ".", unix.S_IFDIR, 0o750)
	s.wantMode(t, "etc", unix.S_IFDIR, 0o755)
	s.wantMode(t, "bin", unix.S_IFDIR, 0o711)
	s.wantMode(t, "usr", unix.S_IFDIR, 0o755) // implicit parent
	s.wantMode(t, "usr/bin/su", unix.S_IFREG, 0o4755)
	s.wantMode(t, "empty", unix.S_IFREG, 0o600)
	s.wantMode(t, "run/fifo", unix.S_IFIFO, 0o640)
	s.wantData(t, "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
	s.wantData(t, "bin/sh", "elf")
	if target, err := os.Readlink(s.path("lib")); err != nil || target != "usr/lib" {
		t.Errorf("lib -> %q, %v", target, err)
	}
	if a, b := s.stat(t, "etc/passwd"), s.stat(t, "passwd-link"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("passwd-link is not a hard link of etc/passwd")
	}
	for _, n := range []string{".", "etc", "bin", "etc/passwd", "bin/sh", "lib", "run/fifo"} {
		if st := s.stat(t, n); st.Mtim.Nano() != testTime.UnixNano() {
			t.Errorf("%s mtime %v, want %v", n, time.Unix(0, st.Mtim.Nano()).UTC(), testTime)
		}
	}
}

func TestExtractRefusesWritesThroughSymlinks(t *testing.T) {
	s := newSandbox(t)
	warnings := s.extract(t, tarOf(t,
		link("abs", tar.TypeSymlink, s.parent),
		file("abs/canary", "pwned", 0o644),
		file("abs/new", "pwned", 0o644),
		link("rel", tar.TypeSymlink, "../../../../../../.."+s.parent),
		file("rel/canary", "pwned", 0o644),
		link("up", tar.TypeSymlink, ".."),
		file("up/canary", "pwned", 0o644),
		dirE("up/outside/", 0o777),
		link("etc", tar.TypeSymlink, "/etc"),
		file("etc/"+escapeName, "pwned", 0o644),
		link("deep/x", tar.TypeSymlink, s.parent+"/outside"),
		file("deep/x/y/z", "pwned", 0o644),
		link("inside", tar.TypeSymlink, "real"),
		dirE("real", 0o755),
		file("inside/f", "via an inside symlink", 0o644),
		// Replacing a symlink replaces the link, never what it points to.
		file("abs", "now a file", 0o644),
		dirE("up", 0o755),
		file("up/ok", "in the new directory", 0o644),
	), Options{})
	wantWarning(t, warnings, `"abs/canary": a parent is a symlink`)
	wantWarning(t, warnings, `"rel/canary": a parent is a symlink`)
	wantWarning(t, warnings, `"etc/`+escapeName+`": a parent is a symlink`)
	wantWarning(t, warnings, `"deep/x/y/z": a parent is a symlink`)
	wantWarning(t, warnings, `"inside/f": a parent is a symlink`)
	s.wantData(t, "abs", "now a file")
	s.wantMode(t, "up", unix.S_IFDIR, 0o755)
	s.wantData(t, "up/ok", "in the new directory")
	s.wantAbsent(t, "real/f")
	s.wantMode(t, "etc", unix.S_IFLNK, 0o777)
}

func TestExtractHardLinksStayInside(t *testing.T) {
	s := newSandbox(t)
	var before unix.Stat_t
	if err := unix.Stat("/etc/passwd", &before); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(s.parent, "canary")
	warnings := s.extract(t, tarOf(t,
		link("host-passwd", tar.TypeLink, "/etc/passwd"),
		link("up-canary", tar.TypeLink, "../canary"),
		link("s", tar.TypeSymlink, canary),
		link("link-to-symlink", tar.TypeLink, "s"),
		link("sd", tar.TypeSymlink, s.parent),
		link("through-symlink", tar.TypeLink, "sd/canary"),
		dirE("d", 0o755),
		link("to-dir", tar.TypeLink, "d"),
		file("etc/passwd", "inside", 0o644),
		link("inside-passwd", tar.TypeLink, "/etc/passwd"),
	), Options{})
	var after unix.Stat_t
	if err := unix.Stat("/etc/passwd", &after); err != nil {
		t.Fatal(err)
	}
	if after.Nlink != before.Nlink {
		t.Errorf("/etc/passwd link count %d -> %d", before.Nlink, after.Nlink)
	}
	for _, n := range []string{"host-passwd", "up-canary", "through-symlink", "to-dir"} {
		s.wantAbsent(t, n)
		wantWarning(t, warnings, fmt.Sprintf("hard link %q", n))
	}
	s.wantMode(t, "link-to-symlink", unix.S_IFLNK, 0o777)
	s.wantData(t, "inside-passwd", "inside")
	if a, b := s.stat(t, "etc/passwd"), s.stat(t, "inside-passwd"); a.Ino != b.Ino {
		t.Errorf("inside-passwd does not link the sandbox's etc/passwd")
	}
}

func TestExtractDeviceNodesNeedPrivileges(t *testing.T) {
	dev := hdr("dev/null", tar.TypeChar, 0o666)
	dev.Devmajor, dev.Devminor = 1, 3
	blk := hdr("dev/loop9", tar.TypeBlock, 0o660)
	blk.Devmajor, blk.Devminor = 7, 9
	data := tarOf(t, dirE("dev", 0o755), flatten.Entry{Header: dev}, flatten.Entry{Header: blk})

	s := newSandbox(t)
	warnings := s.extract(t, data, Options{})
	s.wantAbsent(t, "dev/null")
	s.wantAbsent(t, "dev/loop9")
	wantWarning(t, warnings, `device node "dev/null"`)

	if os.Geteuid() != 0 {
		t.Skip("creating device nodes needs root")
	}
	s = newSandbox(t)
	s.extract(t, data, Options{Privileged: true})
	s.wantMode(t, "dev/null", unix.S_IFCHR, 0o666)
	s.wantMode(t, "dev/loop9", unix.S_IFBLK, 0o660)
	if st := s.stat(t, "dev/null"); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null is %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

func TestExtractPrivilegedOwnersAndXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	s := newSandbox(t)
	// user.* xattrs exist only on files and directories; trusted.* (root only) also on
	// symlinks, which takes the lsetxattr path.
	own := func(e flatten.Entry, uid, gid int) flatten.Entry {
		e.Header.Uid, e.Header.Gid = uid, gid
		ns := "user"
		if e.Header.Typeflag == tar.TypeSymlink {
			ns = "trusted"
		}
		e.Header.PAXRecords = map[string]string{"SCHILY.xattr." + ns + ".kerr": e.Header.Name}
		return e
	}
	warnings := s.extract(t, tarOf(t,
		own(dirE("home/", 0o750), 1000, 1001),
		own(file("home/su", "x", 0o6755), 1234, 5678),
		own(link("home/l", tar.TypeSymlink, "su"), 42, 43),
	), Options{Privileged: true})
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	for n, ids := range map[string][2]uint32{"home": {1000, 1001}, "home/su": {1234, 5678}, "home/l": {42, 43}} {
		if st := s.stat(t, n); st.Uid != ids[0] || st.Gid != ids[1] {
			t.Errorf("%s owned by %d:%d, want %d:%d", n, st.Uid, st.Gid, ids[0], ids[1])
		}
	}
	s.wantMode(t, "home/su", unix.S_IFREG, 0o6755) // set after chown, so the bits survive
	for n, want := range map[string][2]string{
		"home": {"user.kerr", "home/"}, "home/su": {"user.kerr", "home/su"}, "home/l": {"trusted.kerr", "home/l"},
	} {
		buf := make([]byte, 64)
		sz, err := unix.Lgetxattr(s.path(n), want[0], buf)
		if err != nil || string(buf[:sz]) != want[1] {
			t.Errorf("%s: xattr %s = %q, %v; want %q", n, want[0], buf[:max(sz, 0)], err, want[1])
		}
	}
}

func TestExtractUnprivilegedSkipsOwnersAndXattrs(t *testing.T) {
	s := newSandbox(t)
	f := file("f", "x", 0o644)
	f.Header.Uid = 4321
	f.Header.PAXRecords = map[string]string{"SCHILY.xattr.user.kerr": "v"}
	warnings := s.extract(t, tarOf(t, f), Options{})
	wantWarning(t, warnings, `xattrs of "f" not set`)
	if st := s.stat(t, "f"); st.Uid != uint32(os.Geteuid()) {
		t.Errorf("f owned by %d", st.Uid)
	}
}

func readOnlyTree(t testing.TB) []byte {
	return tarOf(t,
		dirE("ro/", 0o555),
		file("ro/file", "read only", 0o444),
		dirE("ro/sub/", 0o500),
		file("ro/sub/f", "below read-only", 0o400),
		dirE("locked/", 0o000),
		file("locked/f", "in a locked dir", 0o644),
		file("suid", "setuid kept", 0o4755),
		flatten.Entry{Header: &tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
	)
}

func checkReadOnlyTree(t *testing.T, s sandbox) {
	t.Helper()
	s.wantMode(t, "ro", unix.S_IFDIR, 0o555)
	s.wantMode(t, "ro/file", unix.S_IFREG, 0o444)
	s.wantMode(t, "ro/sub", unix.S_IFDIR, 0o500)
	s.wantMode(t, "ro/sub/f", unix.S_IFREG, 0o400)
	s.wantMode(t, "locked", unix.S_IFDIR, 0o000)
	s.wantMode(t, "locked/f", unix.S_IFREG, 0o644)
	s.wantMode(t, "suid", unix.S_IFREG, 0o4755)
	s.wantAbsent(t, "dev/null")
	if st := s.stat(t, "ro/sub"); st.Mtim.Nano() != testTime.UnixNano() {
		t.Errorf("ro/sub mtime changed after it was set")
	}
}

func TestExtractReadOnlyDirs(t *testing.T) {
	s := newSandbox(t)
	s.extract(t, readOnlyTree(t), Options{})
	checkReadOnlyTree(t, s)
}

// Without root's overrides, read-only and unsearchable directories must still be filled;
// as root this runs the extraction as nobody in a child process.
func TestExtractAsUnprivilegedUser(t *testing.T) {
	s := newSandbox(t)
	if os.Geteuid() != 0 {
		s.extract(t, readOnlyTree(t), Options{})
		checkReadOnlyTree(t, s)
		return
	}
	const nobody = 65534
	// The child needs to reach root and run a copy of this test binary, which goes next to
	// the canaries' parent so that their snapshot does not see it.
	top := filepath.Dir(s.parent)
	for _, p := range []string{top, s.parent, s.root} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(s.root, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "extract-helper")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(bin)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"="+s.root)
	cmd.Stdin = bytes.NewReader(readOnlyTree(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("extracting as nobody: %v\n%s", err, out)
	}
	checkReadOnlyTree(t, s)
	if !strings.Contains(string(out), `device node "dev/null"`) {
		t.Errorf("no device warning from the unprivileged extraction: %s", out)
	}
	if st := s.stat(t, "ro/file"); st.Uid != nobody {
		t.Errorf("ro/file owned by %d, want nobody", st.Uid)
	}
}

func TestExtractReplacesExistingEntries(t *testing.T) {
	s := newSandbox(t)
	s.extract(t, tarOf(t,
		file("a", "file first", 0o644),
		dirE("a", 0o755),
		file("a/x", "x", 0o644),
		dirE("b", 0o755),
		file("b/c/d", "deep", 0o644),
		file("b", "file over a tree", 0o600),
		link("c", tar.TypeSymlink, "/etc/passwd"),
		file("c", "file over a symlink", 0o644),
		file("d", "file", 0o644),
		link("d", tar.TypeSymlink, "target"),
		file("e", "one", 0o644),
		file("e", "two", 0o644),
		dirE("f", 0o700),
		dirE("f", 0o750),
	), Options{})
	s.wantData(t, "a/x", "x")
	s.wantData(t, "b", "file over a tree")
	s.wantData(t, "c", "file over a symlink")
	s.wantMode(t, "d", unix.S_IFLNK, 0o777)
	s.wantData(t, "e", "two")
	s.wantMode(t, "f", unix.S_IFDIR, 0o750)
}

func TestExtractRequiresEmptyExistingDir(t *testing.T) {
	s := newSandbox(t)
	if err := os.WriteFile(s.path("x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(context.Background(), bytes.NewReader(tarOf(t, file("y", "y", 0o644))), s.root, Options{})
	if !errors.Is(err, errdefs.ErrExists) {
		t.Errorf("non-empty dir: err = %v, want ErrExists", err)
	}
	s.wantAbsent(t, "y")
	if err := Extract(context.Background(), bytes.NewReader(nil), s.path("missing"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: err = %v", err)
	}
}

func TestExtractBadStreams(t *testing.T) {
	s := newSandbox(t)
	full := tarOf(t, file("big", strings.Repeat("x", 4096), 0o644))
	err := Extract(context.Background(), bytes.NewReader(full[:1024]), s.root, Options{})
	if !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("truncated stream: err = %v, want ErrInvalidImage", err)
	}

	s = newSandbox(t)
	warnings := s.extract(t, tarOf(t, file("../evil", "x", 0o644), file("/abs", "kept", 0o644), link("s", tar.TypeSymlink, "")), Options{})
	wantWarning(t, warnings, `invalid name "../evil"`)
	wantWarning(t, warnings, "empty target")
	s.wantData(t, "abs", "kept")
}

func TestExtractContextCancel(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Extract(ctx, bytes.NewReader(tarOf(t, file("a", "a", 0o644))), s.root, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	s.wantAbsent(t, "a")
}

// The two halves of `kerr build --sandbox`: flatten layers, extract the stream.
func TestExtractFlattenedImage(t *testing.T) {
	layer := func(es ...flatten.Entry) flatten.Layer {
		b := tarOf(t, es...)
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	layers := []flatten.Layer{
		layer(dirE("etc", 0o755), file("etc/passwd", "old", 0o644), dirE("var/log", 0o755), file("var/log/x", "x", 0o644)),
		layer(file("etc/passwd", "new", 0o644), file(".wh.var", "", 0o644), link("lib", tar.TypeSymlink, "/usr/lib")),
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := flatten.Flatten(context.Background(), pw, layers, flatten.Options{
			Bottom: []flatten.Entry{dirE("proc", 0o555), dirE("lib/modules", 0o755)},
		})
		pw.CloseWithError(err)
	}()
	s := newSandbox(t)
	if err := Extract(context.Background(), pr, s.root, Options{}); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	s.wantData(t, "etc/passwd", "new")
	s.wantAbsent(t, "var/log")
	s.wantMode(t, "proc", unix.S_IFDIR, 0o555)
	s.wantMode(t, "lib", unix.S_IFLNK, 0o777)
}
