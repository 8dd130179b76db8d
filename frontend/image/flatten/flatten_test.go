package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kerr-hpc/kerr/errdefs"
)

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func hdr(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: testTime, Format: tar.FormatPAX}
}

func file(name, body string) Entry {
	return Entry{Header: hdr(name, tar.TypeReg, 0o644), Data: []byte(body)}
}

func dirE(name string, mode int64) Entry { return Entry{Header: hdr(name, tar.TypeDir, mode)} }

func symlink(name, target string) Entry {
	h := hdr(name, tar.TypeSymlink, 0o777)
	h.Linkname = target
	return Entry{Header: h}
}

func hardlink(name, target string) Entry {
	h := hdr(name, tar.TypeLink, 0o644)
	h.Linkname = target
	return Entry{Header: h}
}

func device(name string, typ byte, major, minor int64) Entry {
	h := hdr(name, typ, 0o666)
	h.Devmajor, h.Devminor = major, minor
	return Entry{Header: h}
}

// layerOf encodes entries as an in-memory tar layer.
func layerOf(t testing.TB, es ...Entry) Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := *e.Header
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing test layer header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			t.Fatalf("writing test layer data %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return rawLayer(buf.Bytes())
}

func rawLayer(b []byte) Layer {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

type result struct {
	order    []string         // names as read back, cleaned ("." for the root)
	entries  map[string]Entry // by cleaned name
	stats    Stats
	warnings []string
}

func (r *result) has(name string) bool { _, ok := r.entries[name]; return ok }

// flatten runs Flatten over layers given bottom to top and reads the stream back.
func flatten(t testing.TB, layers []Layer, opts Options) *result {
	t.Helper()
	r := &result{}
	opts.Warn = func(format string, args ...any) {
		r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
	}
	var out bytes.Buffer
	st, err := Flatten(context.Background(), &out, layers, opts)
	if err != nil {
		t.Fatalf("Flatten: %v", err)
	}
	if st.Bytes != int64(out.Len()) {
		t.Errorf("Stats.Bytes = %d, stream has %d", st.Bytes, out.Len())
	}
	r.stats = st
	var rerr error
	r.order, r.entries, rerr = readStream(out.Bytes())
	if rerr != nil {
		t.Fatalf("reading flattened stream: %v", rerr)
	}
	if len(r.order) != st.Written {
		t.Errorf("Stats.Written = %d, stream has %d entries", st.Written, len(r.order))
	}
	return r
}

// readStream reads a flattened stream and checks the invariants tar2sqfs relies on: unique
// clean relative names, no entry below a non-directory, hard links to earlier entries.
// It returns what it read before the first error.
func readStream(b []byte) ([]string, map[string]Entry, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	entries := map[string]Entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return order, entries, nil
		}
		if err != nil {
			return order, entries, err
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if name == "." && h.Name != "./" {
			return order, entries, fmt.Errorf("root written as %q", h.Name)
		}
		if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") {
			return order, entries, fmt.Errorf("unclean name %q", h.Name)
		}
		if _, dup := entries[name]; dup {
			return order, entries, fmt.Errorf("duplicate name %q", name)
		}
		if base := path.Base(name); strings.HasPrefix(base, ".wh.") {
			return order, entries, fmt.Errorf("whiteout %q written", name)
		}
		for p := path.Dir(name); p != "." && name != "."; p = path.Dir(p) {
			if e, ok := entries[p]; ok && e.Header.Typeflag != tar.TypeDir {
				return order, entries, fmt.Errorf("%q below non-directory %q", name, p)
			}
		}
		if h.Typeflag == tar.TypeLink {
			if e, ok := entries[h.Linkname]; !ok || e.Header.Typeflag == tar.TypeDir {
				return order, entries, fmt.Errorf("hard link %q to %q not written before", name, h.Linkname)
			}
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return order, entries, err
		}
		order = append(order, name)
		entries[name] = Entry{Header: h, Data: data}
	}
}

func (r *result) content(t *testing.T, name string) string {
	t.Helper()
	e, ok := r.entries[name]
	if !ok {
		t.Fatalf("%q missing; have %v", name, r.order)
	}
	return string(e.Data)
}

func (r *result) want(t *testing.T, present []string, absent []string) {
	t.Helper()
	for _, n := range present {
		if !r.has(n) {
			t.Errorf("%q missing; have %v", n, r.order)
		}
	}
	for _, n := range absent {
		if r.has(n) {
			t.Errorf("%q present; have %v", n, r.order)
		}
	}
}

func (r *result) typeOf(t *testing.T, name string) byte {
	t.Helper()
	e, ok := r.entries[name]
	if !ok {
		t.Fatalf("%q missing; have %v", name, r.order)
	}
	return e.Header.Typeflag
}

func (r *result) warned(t *testing.T, substr string) {
	t.Helper()
	for _, w := range r.warnings {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning containing %q; got %q", substr, r.warnings)
}

func TestWhiteoutHidesFileInLowerLayersOnly(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("a", 0o755), file("a/gone", "x"), file("a/kept", "y")),
		layerOf(t, file("a/.wh.gone", ""), file("a/.wh.kept", ""), file("a/kept", "same layer")),
	}, Options{})
	r.want(t, []string{"a", "a/kept"}, []string{"a/gone", "a/.wh.gone", "a/.wh.kept"})
	if got := r.content(t, "a/kept"); got != "same layer" {
		t.Errorf("a/kept = %q, want the whiting-out layer's own file", got)
	}
	if r.stats.Whiteouts != 2 {
		t.Errorf("Whiteouts = %d, want 2", r.stats.Whiteouts)
	}
}

func TestWhiteoutOfDirHidesItsChildren(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("d", 0o755), file("d/x", "x"), dirE("d/sub", 0o755), file("d/sub/y", "y")),
		layerOf(t, file(".wh.d", "")),
	}, Options{})
	r.want(t, nil, []string{"d", "d/x", "d/sub", "d/sub/y"})
}

func TestOpaqueDirHidesLowerChildrenButKeepsDir(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("d", 0o700), file("d/old", "x"), dirE("e", 0o711), file("e/old", "x")),
		layerOf(t, dirE("d", 0o755), file("d/.wh..wh..opq", ""), file("d/new", "n"),
			file("e/.wh..wh..opq", "")),
	}, Options{})
	r.want(t, []string{"d", "d/new", "e"}, []string{"d/old", "e/old"})
	if m := r.entries["d"].Header.Mode; m != 0o755 {
		t.Errorf("d mode = %o, want the upper layer's 0755", m)
	}
	if m := r.entries["e"].Header.Mode; m != 0o711 {
		t.Errorf("e mode = %o, want the lower entry's 0711 (opaque keeps the dir)", m)
	}
}

func TestRootOpaqueHidesAllLowerLayers(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, file("old", "x"), dirE("etc", 0o755)),
		layerOf(t, file(".wh..wh..opq", ""), file("new", "n")),
	}, Options{})
	r.want(t, []string{"new"}, []string{"old", "etc"})
}

func TestRecreateAfterWhiteout(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("d", 0o755), file("d/old", "x"), file("f", "old")),
		layerOf(t, file(".wh.d", ""), file(".wh.f", "")),
		layerOf(t, dirE("d", 0o750), file("d/new", "n"), file("f", "new")),
	}, Options{})
	r.want(t, []string{"d", "d/new", "f"}, []string{"d/old"})
	if got := r.content(t, "f"); got != "new" {
		t.Errorf("f = %q, want new", got)
	}
	// The same within one layer: its whiteout hides only the lower layers.
	r = flatten(t, []Layer{
		layerOf(t, dirE("d", 0o755), file("d/old", "x")),
		layerOf(t, file(".wh.d", ""), dirE("d", 0o750), file("d/new", "n")),
	}, Options{})
	r.want(t, []string{"d", "d/new"}, []string{"d/old"})
}

func TestFileReplacesDirAndItsChildren(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("x", 0o755), file("x/a", "a"), dirE("x/sub", 0o755)),
		layerOf(t, file("x", "now a file")),
	}, Options{})
	r.want(t, []string{"x"}, []string{"x/a", "x/sub"})
	if r.typeOf(t, "x") != tar.TypeReg {
		t.Errorf("x is not a regular file")
	}
	if len(r.warnings) != 0 {
		t.Errorf("ordinary shadowing warned: %q", r.warnings)
	}
}

func TestDirReplacesFile(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, file("x", "file")),
		layerOf(t, dirE("x", 0o755), file("x/a", "a")),
	}, Options{})
	r.want(t, []string{"x", "x/a"}, nil)
	if r.typeOf(t, "x") != tar.TypeDir {
		t.Errorf("x is not a directory")
	}
}

func TestSymlinkReplacesDir(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("x", 0o755), file("x/a", "a")),
		layerOf(t, symlink("x", "/elsewhere")),
	}, Options{})
	r.want(t, []string{"x"}, []string{"x/a"})
	if e := r.entries["x"]; e.Header.Typeflag != tar.TypeSymlink || e.Header.Linkname != "/elsewhere" {
		t.Errorf("x = %c -> %q, want symlink to /elsewhere", e.Header.Typeflag, e.Header.Linkname)
	}
}

// A lower non-directory covered by an upper directory still ends the lower layers'
// directory below it: bottom-up, the middle layer's file deleted the old directory.
func TestNonDirBetweenDirsCutsLowerChildren(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("d", 0o755), file("d/old", "x")),
		layerOf(t, file("d", "a file in between")),
		layerOf(t, dirE("d", 0o755), file("d/new", "n")),
	}, Options{})
	r.want(t, []string{"d", "d/new"}, []string{"d/old"})
}

func TestChildOfSymlinkDropped(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("lib", 0o755), file("lib/lower", "x")),
		layerOf(t, symlink("lib", "usr/lib"), file("lib/same", "x")),
	}, Options{})
	r.want(t, []string{"lib"}, []string{"lib/lower", "lib/same"})
	if r.typeOf(t, "lib") != tar.TypeSymlink {
		t.Errorf("lib is not a symlink")
	}
	r.warned(t, `"lib/same": a parent is not a directory`)
}

func TestUpperChildWinsOverLowerSymlink(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, symlink("lib", "usr/lib")),
		layerOf(t, file("lib/foo", "x")),
	}, Options{})
	r.want(t, []string{"lib/foo"}, []string{"lib"})
}

func TestImplicitParentTakesLowerExplicitMode(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("a", 0o700), dirE("a/b", 0o750)),
		layerOf(t, file("a/b/c", "c")),
	}, Options{})
	r.want(t, []string{"a", "a/b", "a/b/c"}, nil)
	if m := r.entries["a"].Header.Mode; m != 0o700 {
		t.Errorf("a mode = %o, want 0700", m)
	}
}

func TestHostileNamesDroppedOrCleaned(t *testing.T) {
	r := flatten(t, []Layer{layerOf(t,
		file("../evil", "x"),
		file("a/../../evil2", "x"),
		file("/abs/path", "abs"),
		file("./rel//x/./y", "rel"),
		file(".wh..wh.plnk/123.456", "aufs"),
		file("a/.wh.b/c", "below a whiteout name"),
		file("..", "x"),
	)}, Options{})
	r.want(t, []string{"abs/path", "rel/x/y"}, []string{"evil", "../evil", "evil2", ".wh..wh.plnk/123.456", "a/.wh.b/c"})
	r.warned(t, `invalid name "../evil"`)
	r.warned(t, `invalid name "a/../../evil2"`)
	r.warned(t, `below a whiteout name`)

	for raw, want := range map[string]string{
		"/": ".", "./": ".", ".": ".", "//a//b/": "a/b", "./a/./b": "a/b", "a/b/..": "a",
	} {
		if got, ok := CleanName(raw); !ok || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
	for _, raw := range []string{"", "a\x00b", "..", "../a", "a/../..", "/../x"} {
		if got, ok := CleanName(raw); ok {
			t.Errorf("CleanName(%q) = %q, want refusal", raw, got)
		}
	}
}

func TestDuplicateInLayerFirstWins(t *testing.T) {
	r := flatten(t, []Layer{layerOf(t,
		file("f", "first"), file("./f", "second"), dirE("d", 0o755), file("d", "file after dir"),
	)}, Options{})
	if got := r.content(t, "f"); got != "first" {
		t.Errorf("f = %q, want first", got)
	}
	if r.typeOf(t, "d") != tar.TypeDir {
		t.Errorf("d is not the first entry's directory")
	}
	r.warned(t, `duplicate entry "f"`)
	r.warned(t, `duplicate entry "d"`)
}

func TestHardLinkRules(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t,
			file("shadowed", "lower"),
			hardlink("to-shadowed", "shadowed"),
			file("t", "target"),
			hardlink("ok", "t"),
			hardlink("ok2", "/ok"), // a link to a link, absolute spelling
			hardlink("early", "late"),
			file("late", "late"),
			dirE("d", 0o755),
			hardlink("to-dir", "d"),
			hardlink("self", "self"),
			file("hidden-by-upper-link", "lower file"),
		),
		layerOf(t,
			file("shadowed", "upper"),
			hardlink("cross", "t"),
			hardlink("hidden-by-upper-link", "nowhere"),
		),
	}, Options{})
	r.want(t, []string{"ok", "ok2", "t", "late"},
		[]string{"to-shadowed", "early", "to-dir", "self", "cross", "hidden-by-upper-link"})
	if e := r.entries["ok2"]; e.Header.Typeflag != tar.TypeLink || e.Header.Linkname != "ok" {
		t.Errorf("ok2 = %c -> %q, want hard link to ok", e.Header.Typeflag, e.Header.Linkname)
	}
	for _, n := range []string{"to-shadowed", "early", "to-dir", "self", "cross", "hidden-by-upper-link"} {
		r.warned(t, fmt.Sprintf("hard link %q", n))
	}
}

func TestTopOverridesLayers(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE(".singularity.d", 0o700), file(".singularity.d/runscript", "image"),
			file(".singularity.d/labels.json", "image labels"), symlink("environment", "/bad")),
	}, Options{Top: []Entry{
		dirE(".singularity.d", 0o755),
		file(".singularity.d/runscript", "kerr"),
		file("environment", "kerr env"),
	}})
	if got := r.content(t, ".singularity.d/runscript"); got != "kerr" {
		t.Errorf("runscript = %q, want kerr's", got)
	}
	if got := r.content(t, "environment"); got != "kerr env" {
		t.Errorf("environment = %q, want kerr's file over the image's symlink", got)
	}
	if m := r.entries[".singularity.d"].Header.Mode; m != 0o755 {
		t.Errorf(".singularity.d mode = %o, want 0755", m)
	}
	r.want(t, []string{".singularity.d/labels.json"}, nil)
	if len(r.warnings) != 0 {
		t.Errorf("warnings: %q", r.warnings)
	}
}

func TestTopEntriesNotMutated(t *testing.T) {
	top := file("/x/y", "data")
	top.Header.Size = 99
	flatten(t, nil, Options{Top: []Entry{top}})
	if top.Header.Name != "/x/y" || top.Header.Size != 99 {
		t.Errorf("caller's header changed: %+v", top.Header)
	}
}

func TestBottomOnlyFillsGaps(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("proc", 0o555), symlink("var", "/private/var"), dirE("tmp", 0o1777),
			file("etc/hosts", "image hosts")),
		layerOf(t, file(".wh.tmp", "")),
	}, Options{Bottom: []Entry{
		dirE("proc", 0o700),
		dirE("dev", 0o755),
		dirE("var/tmp", 0o1777),
		dirE("tmp", 0o1777),
		file("etc/hosts", "kerr hosts"),
		dirE("etc", 0o700),
	}})
	r.want(t, []string{"proc", "dev", "tmp", "var", "etc"}, []string{"var/tmp"})
	if m := r.entries["proc"].Header.Mode; m != 0o555 {
		t.Errorf("proc mode = %o, want the image's 0555", m)
	}
	if got := r.content(t, "etc/hosts"); got != "image hosts" {
		t.Errorf("etc/hosts = %q, want the image's", got)
	}
	if m := r.entries["etc"].Header.Mode; m != 0o700 {
		t.Errorf("etc mode = %o, want bottom's 0700 (the image only implied etc)", m)
	}
}

func TestDeviceNodes(t *testing.T) {
	layers := []Layer{
		layerOf(t, file("dev/null", "a lower file")),
		layerOf(t, device("dev/null", tar.TypeChar, 1, 3), device("dev/sda", tar.TypeBlock, 8, 0),
			Entry{Header: hdr("dev/fifo", tar.TypeFifo, 0o600)}),
	}
	r := flatten(t, layers, Options{})
	r.want(t, []string{"dev/fifo"}, []string{"dev/null", "dev/sda"})
	r.warned(t, `device node "dev/null"`)
	r.warned(t, `device node "dev/sda"`)

	r = flatten(t, layers, Options{KeepDevices: true})
	e := r.entries["dev/null"]
	if e.Header == nil || e.Header.Typeflag != tar.TypeChar || e.Header.Devmajor != 1 || e.Header.Devminor != 3 {
		t.Errorf("dev/null = %+v, want char 1:3", e.Header)
	}
	if r.typeOf(t, "dev/sda") != tar.TypeBlock {
		t.Errorf("dev/sda is not a block device")
	}
}

func TestMetadataAndXattrsPreserved(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 678, time.UTC)
	f := file("usr/bin/ping", "elf")
	f.Header.Mode = 0o4755
	f.Header.Uid, f.Header.Gid = 1234, 5678
	f.Header.Uname, f.Header.Gname = "someone-with-a-rather-long-user-name", "grp"
	f.Header.ModTime = mtime
	f.Header.AccessTime = mtime
	f.Header.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00",
		"SCHILY.xattr.user.note":           "hello",
	}
	long := strings.Repeat("d/", 80) + "file"
	r := flatten(t, []Layer{layerOf(t, f, symlink("rel", "../../../../etc/passwd"), file(long, "deep"))}, Options{})
	h := r.entries["usr/bin/ping"].Header
	if h == nil {
		t.Fatalf("ping missing: %v", r.order)
	}
	if h.Mode != 0o4755 || h.Uid != 1234 || h.Gid != 5678 || h.Uname != f.Header.Uname || h.Gname != "grp" {
		t.Errorf("metadata = mode %o uid %d gid %d %q %q", h.Mode, h.Uid, h.Gid, h.Uname, h.Gname)
	}
	if !h.ModTime.Equal(mtime.Truncate(time.Second)) {
		t.Errorf("mtime = %v, want %v", h.ModTime, mtime.Truncate(time.Second))
	}
	for k, v := range f.Header.PAXRecords {
		if h.PAXRecords[k] != v {
			t.Errorf("PAX record %s = %q, want %q", k, h.PAXRecords[k], v)
		}
	}
	if got := r.entries["rel"].Header.Linkname; got != "../../../../etc/passwd" {
		t.Errorf("symlink target = %q, want it verbatim", got)
	}
	if got := r.content(t, long); got != "deep" {
		t.Errorf("long name content = %q", got)
	}
}

func TestRootEntryWrittenOnceFromTopmostLayer(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, dirE("./", 0o755), file("a", "a")),
		layerOf(t, dirE("/", 0o700), file("b", "b"), file(".", "not a dir")),
	}, Options{Bottom: []Entry{dirE(".", 0o711)}})
	e, ok := r.entries["."]
	if !ok {
		t.Fatalf("root entry missing: %v", r.order)
	}
	if e.Header.Mode != 0o700 {
		t.Errorf("root mode = %o, want the top layer's 0700", e.Header.Mode)
	}
	r.warned(t, "root entry")
}

func TestSymlinkWithEmptyTargetDropped(t *testing.T) {
	r := flatten(t, []Layer{layerOf(t, file("s", "lower")), layerOf(t, symlink("s", ""))}, Options{})
	r.want(t, nil, []string{"s"})
	r.warned(t, "empty target")
}

func TestStatsCount(t *testing.T) {
	r := flatten(t, []Layer{
		layerOf(t, file("a", "1"), file("b", "2")),
		layerOf(t, file(".wh.a", ""), file("b", "3"), file("../x", "")),
	}, Options{})
	want := Stats{Written: 1, Skipped: 3, Whiteouts: 1, Bytes: r.stats.Bytes}
	if r.stats != want {
		t.Errorf("stats = %+v, want %+v", r.stats, want)
	}
}

func TestCorruptLayerIsInvalidImage(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 4096, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	_, err := Flatten(context.Background(), io.Discard, []Layer{rawLayer(buf.Bytes())}, Options{})
	if !errors.Is(err, errdefs.ErrInvalidImage) {
		t.Errorf("truncated layer: err = %v, want ErrInvalidImage", err)
	}

	openErr := errors.New("blob missing")
	_, err = Flatten(context.Background(), io.Discard, []Layer{func() (io.ReadCloser, error) { return nil, openErr }}, Options{})
	if !errors.Is(err, openErr) {
		t.Errorf("failing layer open: err = %v, want it wrapped", err)
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Flatten(ctx, io.Discard, []Layer{layerOf(t, file("a", "a"))}, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before start: err = %v", err)
	}

	// Cancelled while the lower layer is being opened: no entry of it is written.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	lower := layerOf(t, file("lower", "x"))
	var out bytes.Buffer
	_, err = Flatten(ctx, &out, []Layer{
		func() (io.ReadCloser, error) { cancel(); return lower() },
		layerOf(t, file("upper", "x")),
	}, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled mid-stream: err = %v", err)
	}
	if bytes.Contains(out.Bytes(), []byte("lower")) {
		t.Errorf("entries written after cancellation")
	}
}

// Never panic on arbitrary layer bytes, and whatever comes out reads back as a tree with
// unique clean names (a prefix of one when Flatten failed).
func FuzzFlatten(f *testing.F) {
	seed := func(es ...Entry) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range es {
			h := *e.Header
			h.Size = int64(len(e.Data))
			if h.Typeflag != tar.TypeReg {
				h.Size = 0
			}
			_ = tw.WriteHeader(&h)
			_, _ = tw.Write(e.Data)
		}
		_ = tw.Close()
		f.Add(buf.Bytes(), buf.Bytes())
	}
	seed(file("a", "x"), dirE("d", 0o755), file("d/.wh..wh..opq", ""), symlink("s", "/x"), file("s/y", ""))
	seed(file(".wh.a", ""), hardlink("h", "a"), file("../x", ""), dirE("./", 0o700), file("a/b/c", "z"))
	seed(device("dev/null", tar.TypeChar, 1, 3), file("x", "1"), file("x", "2"), hardlink("y", "x"))
	f.Fuzz(func(t *testing.T, upper, lower []byte) {
		var out bytes.Buffer
		st, ferr := Flatten(context.Background(), &out, []Layer{rawLayer(lower), rawLayer(upper)},
			Options{Top: []Entry{file("top/x", "t")}, Bottom: []Entry{dirE("proc", 0o555), dirE("a/b", 0o755)}})
		order, _, err := readStream(out.Bytes())
		if err != nil {
			// A failed Flatten leaves a stream cut anywhere; only a cut may be wrong with it.
			cut := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader)
			if ferr == nil || !cut {
				t.Fatalf("invalid stream (Flatten error %v): %v", ferr, err)
			}
		}
		if ferr == nil && len(order) != st.Written {
			t.Fatalf("Written = %d, stream has %d", st.Written, len(order))
		}
	})
}

// A sparse file is dropped, not expanded: a few bytes of layer must not turn into a
// gigabyte of zeros in the stream.
func TestSparseFileDropped(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not in PATH")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lower"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "holes"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), 1<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	lower, err := exec.Command("tar", "-C", dir, "--transform", "s/lower/holes/", "-cf", "-", "lower").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	for _, format := range []string{"gnu", "pax"} {
		layer, err := exec.Command("tar", "--sparse", "--format="+format, "-C", dir, "-cf", "-", "holes").Output()
		if err != nil {
			t.Fatalf("tar --format=%s: %v", format, err)
		}
		r := flatten(t, []Layer{rawLayer(lower), rawLayer(layer)}, Options{})
		r.want(t, nil, []string{"holes"})
		r.warned(t, `sparse file "holes"`)
		if r.stats.Bytes > 1<<20 {
			t.Errorf("%s: stream is %d bytes", format, r.stats.Bytes)
		}
	}
}

// BenchmarkFlatten streams three layers of 20,000 small files each, the shape of a big
// distribution image, to measure per-entry overhead.
func BenchmarkFlatten(b *testing.B) {
	var layers []Layer
	total := 0
	for l := range 3 {
		var es []Entry
		for d := range 200 {
			es = append(es, dirE(fmt.Sprintf("usr/share/d%03d", d), 0o755))
			for f := range 100 {
				es = append(es, file(fmt.Sprintf("usr/share/d%03d/file-%d-%d", d, f, l), "some small file body"))
			}
		}
		layers = append(layers, layerOf(b, es...))
		total += len(es)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Flatten(context.Background(), io.Discard, layers, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(total), "ns/entry")
}

func TestUnencodableHeaderDroppedStreamStaysValid(t *testing.T) {
	bad := file("etc/motd", "top")
	bad.Header.PAXRecords = map[string]string{"bad=key": "x"}
	badDir := dirE("opt", 0o700)
	badDir.Header.PAXRecords = map[string]string{"bad=key": "x"}
	r := flatten(t, []Layer{layerOf(t, file("etc/motd", "image"), file("opt/tool", "t"))},
		Options{Top: []Entry{bad, badDir, file("after", "still written")}})
	r.want(t, []string{"after", "opt/tool"}, []string{"etc/motd"})
	r.warned(t, `"etc/motd": header cannot be written`)
	r.warned(t, `"opt": header cannot be written`)

	if _, err := Flatten(context.Background(), io.Discard, nil, Options{Top: []Entry{{}}}); err == nil {
		t.Errorf("entry without header accepted")
	}
}
