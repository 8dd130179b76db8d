//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/kerr-hpc/kerr/e2e/internal/fixture"
	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// sifImage is what checkSIF learned about a SIF kerr wrote.
type sifImage struct {
	path         string
	offset, size int64 // of the root filesystem partition
	entries      map[string]harness.Entry
	config       v1.ConfigFile     // from the OCI image config descriptor
	labels       map[string]string // from the labels descriptor
}

// cat returns a file of the image's root filesystem.
func (si *sifImage) cat(t *testing.T, path string) string {
	t.Helper()
	b, err := harness.CatSquashfs(si.path, si.offset, path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var siftoolPrimSys = regexp.MustCompile(`(?m)\|FS \(Squashfs/\*System/`)

// checkSIF checks that path is a SIF as kerr must write it: siftool sees a primary squashfs
// partition, there is an OCI image config JSON descriptor and a labels descriptor, and the
// squashfs holds the image with the /.singularity.d layout.
func checkSIF(t *testing.T, path string) *sifImage {
	t.Helper()
	return checkSIFWith(t, path, true)
}

// checkSIFFromDir is checkSIF for a SIF built from a directory, which has no OCI image
// config to keep.
func checkSIFFromDir(t *testing.T, path string) *sifImage {
	t.Helper()
	return checkSIFWith(t, path, false)
}

func checkSIFWith(t *testing.T, path string, wantConfig bool) *sifImage {
	t.Helper()
	out, err := exec.Command("siftool", "list", path).CombinedOutput()
	if err != nil {
		t.Fatalf("siftool list %s: %v\n%s", path, err, out)
	}
	if !siftoolPrimSys.Match(out) {
		t.Errorf("siftool list shows no primary squashfs (FS) partition:\n%s", out)
	}

	si := &sifImage{path: path}
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatalf("loading %s with the sif library: %v", path, err)
	}
	defer f.UnloadContainer()
	if si.offset, si.size, err = harness.RootfsPartition(path); err != nil {
		t.Fatalf("%s: no squashfs primary system partition: %v", path, err)
	}
	foundConfig := false
	jsons, _ := f.GetDescriptors(sif.WithDataType(sif.DataGenericJSON))
	for _, d := range jsons {
		b, err := d.GetData()
		if err != nil {
			t.Fatal(err)
		}
		var cf v1.ConfigFile
		if json.Unmarshal(b, &cf) == nil && cf.RootFS.Type == "layers" {
			si.config, foundConfig = cf, true
		}
	}
	if wantConfig && !foundConfig {
		t.Errorf("%s: no JSON descriptor holding the OCI image config", path)
	}
	if d, err := f.GetDescriptor(sif.WithDataType(sif.DataLabels)); err != nil {
		t.Errorf("%s: no labels descriptor: %v", path, err)
	} else if b, err := d.GetData(); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &si.labels); err != nil {
		t.Errorf("%s: labels descriptor is not a JSON object of strings: %v\n%s", path, err, b)
	}

	if si.entries, err = harness.ListSquashfs(path, si.offset); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, si.entries)
	return si
}

// checkLayout checks a root filesystem (of a SIF or a sandbox) for the image's own files and
// the Singularity layout kerr adds.
func checkLayout(t *testing.T, entries map[string]harness.Entry) {
	t.Helper()
	isDir := func(p string) {
		t.Helper()
		if e, ok := entries[p]; !ok || !e.IsDir() {
			t.Errorf("rootfs: %s missing or not a directory", p)
		}
	}
	isFile := func(p string, exec bool) {
		t.Helper()
		e, ok := entries[p]
		switch {
		case !ok:
			t.Errorf("rootfs: %s missing", p)
		case !strings.HasPrefix(e.Mode, "-"):
			t.Errorf("rootfs: %s is %s, want a regular file", p, e.Mode)
		case exec && !strings.Contains(e.Mode, "x"):
			t.Errorf("rootfs: %s is %s, want it executable", p, e.Mode)
		}
	}
	isLink := func(p, target string) {
		t.Helper()
		e, ok := entries[p]
		switch {
		case !ok:
			t.Errorf("rootfs: %s missing", p)
		case !e.IsSymlink():
			t.Errorf("rootfs: %s is %s, want a symlink to %s", p, e.Mode, target)
		case e.Target != target && e.Target != "/"+target:
			t.Errorf("rootfs: %s -> %s, want -> %s", p, e.Target, target)
		}
	}

	// The image's own content.
	isFile("/bin/busybox", true)
	isLink("/bin/sh", "busybox")
	isFile("/etc/passwd", false)
	isFile(fixture.ArchFile, false)

	// The Singularity layout.
	for _, d := range []string{"/.singularity.d", "/.singularity.d/actions", "/.singularity.d/env"} {
		isDir(d)
	}
	for _, a := range []string{"exec", "run", "shell", "start", "test"} {
		isFile("/.singularity.d/actions/"+a, true)
	}
	isFile("/.singularity.d/runscript", true)
	isFile("/.singularity.d/startscript", true)
	isFile("/.singularity.d/labels.json", false)
	isFile("/.singularity.d/env/90-environment.sh", false)
	isLink("/environment", ".singularity.d/env/90-environment.sh")
	isLink("/singularity", ".singularity.d/runscript")

	// Empty mount points (the fixture images have none of them).
	for _, mp := range []string{"/proc", "/sys", "/dev", "/tmp", "/home"} {
		isDir(mp)
		for p := range entries {
			if strings.HasPrefix(p, mp+"/") {
				t.Errorf("rootfs: mount point %s is not empty: %s", mp, p)
			}
		}
	}
	for p := range entries {
		if strings.Contains(p, "/.wh.") {
			t.Errorf("rootfs: whiteout file left in the image: %s", p)
		}
	}
}

// checkWhiteouts checks the multi-layer fixture's second layer was applied.
func checkWhiteouts(t *testing.T, entries map[string]harness.Entry) {
	t.Helper()
	for _, p := range []string{fixture.KeptFile, fixture.OpaqueDir, fixture.OpaqueNew, fixture.AddedFile} {
		if _, ok := entries[p]; !ok {
			t.Errorf("whiteouts: %s missing", p)
		}
	}
	gone := append([]string{fixture.DeletedFile, fixture.DeletedDir, fixture.DeletedDir + "/inside"}, fixture.OpaqueHidden...)
	for _, p := range gone {
		if _, ok := entries[p]; ok {
			t.Errorf("whiteouts: %s should have been deleted by the upper layer", p)
		}
	}
	for p := range entries {
		if strings.HasPrefix(p, fixture.OpaqueDir+"/") && p != fixture.OpaqueNew {
			t.Errorf("whiteouts: opaque dir %s shows lower-layer content %s", fixture.OpaqueDir, p)
		}
	}
}

// checkConfig checks the OCI image config kerr kept against the fixture's.
func checkConfig(t *testing.T, cf v1.ConfigFile, arch string) {
	t.Helper()
	if cf.Architecture != arch || cf.OS != "linux" {
		t.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
	}
	c := cf.Config
	if !slices.Equal(c.Env, fixture.Env) {
		t.Errorf("config Env %q, want %q", c.Env, fixture.Env)
	}
	if len(c.Entrypoint) == 0 || c.Entrypoint[0] != "/bin/sh" || !slices.Equal(c.Cmd, []string{"hello", "world"}) {
		t.Errorf("config Entrypoint %q Cmd %q, not the fixture's", c.Entrypoint, c.Cmd)
	}
	if c.WorkingDir != fixture.WorkingDir || c.User != fixture.User {
		t.Errorf("config WorkingDir %q User %q, want %q %q", c.WorkingDir, c.User, fixture.WorkingDir, fixture.User)
	}
	if c.Labels[fixture.LabelKey] != fixture.LabelValue {
		t.Errorf("config Labels %v lack %s=%s", c.Labels, fixture.LabelKey, fixture.LabelValue)
	}
}

// sandboxEntries lists a directory tree like harness.ListSquashfs lists a squashfs.
func sandboxEntries(t *testing.T, root string) map[string]harness.Entry {
	t.Helper()
	entries := map[string]harness.Entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		m := info.Mode()
		kind := "-"
		switch {
		case m.IsDir():
			kind = "d"
		case m&fs.ModeSymlink != 0:
			kind = "l"
		case !m.IsRegular():
			kind = "?"
		}
		e := harness.Entry{Path: rel, Mode: kind + m.Perm().String()[1:], Size: fmt.Sprint(info.Size())}
		if kind == "l" {
			e.Target, _ = os.Readlink(p)
		}
		entries[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// inRootfs runs a command chrooted into an unpacked image (root only), with nothing in the
// environment but PATH, as a container runtime would start it, and returns its stdout.
func inRootfs(t *testing.T, rootfs string, args ...string) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{rootfs}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chroot %s %q: %v\nstdout: %s\nstderr: %s", rootfs, args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// checkRuns checks that the Singularity actions of an unpacked image run the image's
// ENTRYPOINT+CMD and commands with its ENV.
func checkRuns(t *testing.T, rootfs string) {
	t.Helper()
	if got := inRootfs(t, rootfs, "/bin/sh", "/.singularity.d/actions/run"); !strings.Contains(got, fixture.RunOutput) {
		t.Errorf("actions/run printed %q, want %q (ENTRYPOINT+CMD with ENV)", got, fixture.RunOutput)
	}
	if got := inRootfs(t, rootfs, "/bin/sh", "/.singularity.d/actions/run", "a", "b"); !strings.Contains(got, "FOO=bar ARGS=a b") {
		t.Errorf("actions/run a b printed %q, want the arguments to replace CMD: %q", got, "FOO=bar ARGS=a b")
	}
	if got := inRootfs(t, rootfs, "/bin/sh", "/.singularity.d/actions/exec", "/bin/sh", "-c", "echo FOO=$FOO"); strings.TrimSpace(got) != "FOO=bar" {
		t.Errorf("actions/exec printed %q, want FOO=bar", got)
	}
}

// extract unpacks a SIF's root filesystem into a fresh directory of the session.
func extract(t *testing.T, s *harness.Session, si *sifImage) string {
	t.Helper()
	dest := filepath.Join(s.Base(), "rootfs-"+filepath.Base(si.path))
	if err := harness.ExtractSquashfs(si.path, si.offset, dest); err != nil {
		t.Fatal(err)
	}
	return dest
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// wantDir checks that dir holds exactly the names given (a failed command left nothing).
func wantDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	got := dirNames(t, dir)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// owner returns the uid owning path.
func owner(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// pushUnique pushes a variant of the busybox image whose blobs no other test shares, so that
// the test may tamper with them in the registry's storage.
func pushUnique(t *testing.T, spec fixture.Spec) harness.Pushed {
	t.Helper()
	spec.Nonce = fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	img, err := fixture.Image(spec)
	if err != nil {
		t.Fatal(err)
	}
	repo := "unique/" + strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	p, err := harness.PushImage(h.Registry, strings.Trim(repo, "-"), "latest", img, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inspectJSON runs kerr inspect --json and decodes the object.
type inspectOutput struct {
	Labels      map[string]string `json:"labels"`
	Runscript   *string           `json:"runscript"`
	Environment *string           `json:"environment"`
	Config      *v1.ConfigFile    `json:"config"`
}
