package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sqfsEntry is one line of `unsquashfs -lln`.
type sqfsEntry struct {
	mode   string // as ls prints it, e.g. "drwx------"
	owner  string // "uid/gid"
	target string // symlink target
}

var lsLine = regexp.MustCompile(`^(\S+) (\d+/\d+) +.*? \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(/.*)?$`)

// TestTar2sqfsAcceptsNastyStream pipes a hostile multi-layer image through the real tar2sqfs
// (which aborts on duplicates and children of non-directories) and checks the tree it built.
func TestTar2sqfsAcceptsNastyStream(t *testing.T) {
	for _, tool := range []string{"tar2sqfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH", tool)
		}
	}
	owned := file("etc/shadow", "secret")
	owned.Header.Uid, owned.Header.Gid, owned.Header.Mode = 0, 42, 0o640
	xattr := file("usr/bin/ping", "elf")
	xattr.Header.Mode = 0o4755
	xattr.Header.PAXRecords = map[string]string{"SCHILY.xattr.user.kerr": "yes"}
	layers := []Layer{
		layerOf(t,
			dirE("./", 0o755),
			dirE("etc", 0o755), file("etc/passwd", "old"), owned,
			dirE("lib", 0o755), file("lib/a.so", "so"),
			dirE("var", 0o755), dirE("var/log", 0o755), file("var/log/x", "log"),
			dirE("d", 0o755), file("d/old", "old"),
			file("usr/bin/tool", "tool"), hardlink("usr/bin/tool2", "usr/bin/tool"),
			device("dev/null", tar.TypeChar, 1, 3),
			file("x", "a file that becomes a dir"),
			dirE("y", 0o755), file("y/child", "a dir that becomes a file"),
		),
		layerOf(t,
			symlink("lib", "usr/lib"), file("lib/b.so", "below own symlink"),
			file(".wh.var", ""),
			file("d/.wh..wh..opq", ""), file("d/new", "new"),
			dirE("x", 0o750), file("x/inner", "inner"),
			file("y", "now a file"),
			file("etc/passwd", "new"), file("etc/passwd", "duplicate"),
			file("../evil", "evil"), file("/abs", "abs"),
			hardlink("cross", "usr/bin/tool"),
			symlink("s", "/etc"), file("s/passwd", "through symlink"),
			xattr,
		),
		layerOf(t,
			dirE("/", 0o700),
			file("deep/a/b/c", "deep"), dirE("deep/a", 0o710), dirE("deep", 0o750),
			file("etc/.wh.passwd", ""),
		),
	}
	opts := Options{
		KeepDevices: true,
		Top:         []Entry{dirE(".singularity.d", 0o755), file(".singularity.d/runscript", "#!/bin/sh\n")},
		Bottom:      []Entry{dirE("proc", 0o555), dirE("dev", 0o755), dirE("var/tmp", 0o1777), dirE("lib/extra", 0o755)},
	}

	dir := t.TempDir()
	img := filepath.Join(dir, "root.sqfs")
	cmd := exec.Command("tar2sqfs", "-q", "-c", "gzip", img)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_, ferr := Flatten(context.Background(), stdin, layers, opts)
	stdin.Close()
	if err := cmd.Wait(); err != nil || ferr != nil {
		t.Fatalf("Flatten: %v; tar2sqfs: %v: %s", ferr, err, stderr.String())
	}

	out, err := exec.Command("unsquashfs", "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v: %s", err, out)
	}
	tree := map[string]sqfsEntry{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := lsLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsed unsquashfs line %q", line)
		}
		p, target, _ := strings.Cut(strings.TrimPrefix(m[3], "/"), " -> ")
		if p == "" {
			p = "."
		}
		tree[p] = sqfsEntry{mode: m[1], owner: m[2], target: target}
	}

	want := map[string]string{ // path -> mode as ls prints it
		".":                        "drwx------",
		".singularity.d":           "drwxr-xr-x",
		".singularity.d/runscript": "-rw-r--r--",
		"etc":                      "drwxr-xr-x",
		"etc/shadow":               "-rw-r-----",
		"lib":                      "lrwxrwxrwx",
		"d":                        "drwxr-xr-x",
		"d/new":                    "-rw-r--r--",
		"usr":                      "drwxr-xr-x",
		"usr/bin":                  "drwxr-xr-x",
		"usr/bin/tool":             "-rw-r--r--",
		"usr/bin/tool2":            "-rw-r--r--",
		"usr/bin/ping":             "-rwsr-xr-x",
		"dev":                      "drwxr-xr-x",
		"dev/null":                 "crw-rw-rw-",
		"x":                        "drwxr-x---",
		"x/inner":                  "-rw-r--r--",
		"y":                        "-rw-r--r--",
		"abs":                      "-rw-r--r--",
		"s":                        "lrwxrwxrwx",
		"deep":                     "drwxr-x---",
		"deep/a":                   "drwx--x---",
		"deep/a/b":                 "drwxr-xr-x",
		"deep/a/b/c":               "-rw-r--r--",
		"proc":                     "dr-xr-xr-x",
		"var":                      "drwxr-xr-x",
		"var/tmp":                  "drwxrwxrwt",
	}
	for p, mode := range want {
		got, ok := tree[p]
		if !ok {
			t.Errorf("%q missing from the image", p)
			continue
		}
		if got.mode != mode {
			t.Errorf("%q mode %s, want %s", p, got.mode, mode)
		}
	}
	for p := range tree {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected %q in the image", p)
		}
	}
	if tree["etc/shadow"].owner != "0/42" {
		t.Errorf("etc/shadow owner %s, want 0/42", tree["etc/shadow"].owner)
	}
	if tree["lib"].target != "usr/lib" {
		t.Errorf("lib -> %q, want usr/lib", tree["lib"].target)
	}

	for p, body := range map[string]string{
		"d/new": "new", "usr/bin/tool2": "tool", "y": "now a file", "deep/a/b/c": "deep",
		".singularity.d/runscript": "#!/bin/sh\n",
	} {
		got, err := exec.Command("unsquashfs", "-cat", img, p).Output()
		if err != nil {
			t.Errorf("unsquashfs -cat %s: %v", p, err)
		} else if string(got) != body {
			t.Errorf("%s = %q, want %q", p, got, body)
		}
	}

	// The xattr survives into the image; sqfs2tar shows it as a PAX record.
	if _, err := exec.LookPath("sqfs2tar"); err == nil {
		raw, err := exec.Command("sqfs2tar", img).Output()
		if err != nil {
			t.Fatalf("sqfs2tar: %v", err)
		}
		tr := tar.NewReader(bytes.NewReader(raw))
		found := false
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "./") == "usr/bin/ping" {
				found = h.PAXRecords["SCHILY.xattr.user.kerr"] == "yes"
			}
		}
		if !found {
			t.Errorf("xattr user.kerr lost on usr/bin/ping")
		}
	}
}
