package sifimage

import (
	"context"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestReadRootFileSymlinkCycleEnds reads symlinks that point at each other. The reads run in a
// child process: a cycle that is followed without bound ends there in a stack overflow or a
// timeout, which this test reports instead of dying with it.
func TestReadRootFileSymlinkCycleEnds(t *testing.T) {
	if p := os.Getenv("KERR_TEST_SIF_CYCLE"); p != "" {
		// A runaway recursion overflows this small stack in well under a second.
		debug.SetMaxStack(32 << 20)
		img, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		for _, name := range []string{"/loop/a", "/self", "/top-a"} {
			if _, err := img.ReadRootFile(name); err == nil {
				t.Errorf("ReadRootFile(%q) succeeded on a symlink cycle", name)
			}
		}
		return
	}
	sqfs := makeSquashfs(t,
		dir("loop/"), symlink("loop/a", "b"), symlink("loop/b", "a"),
		symlink("self", "self"),
		symlink("top-a", "top-b"), symlink("top-b", "top-a"),
	)
	p := writeSIF(t, sqfs, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReadRootFileSymlinkCycleEnds$", "-test.v")
	cmd.Env = append(os.Environ(), "KERR_TEST_SIF_CYCLE="+p)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("ReadRootFile did not return on a symlink cycle within 10s")
	}
	if err != nil {
		msg := string(out)
		if i := strings.Index(msg, "\n\ngoroutine "); i > 0 {
			msg = msg[:i] // the stack dump of a crash says nothing more
		}
		if len(msg) > 2000 {
			msg = msg[:2000]
		}
		t.Fatalf("reading a symlink cycle failed the process: %v\n%s", err, msg)
	}
}

// TestReadRootFileFollowsDirectorySymlinks reads a file through a symlinked directory, as in
// a merged-/usr image or a sandbox whose /.singularity.d is a link.
func TestReadRootFileFollowsDirectorySymlinks(t *testing.T) {
	img := openSIF(t, writeSIF(t, makeSquashfs(t,
		dir("real/"), reg("real/file", "x"),
		symlink("linked", "real"),
	), nil, nil))
	if b, err := img.ReadRootFile("/linked/file"); err != nil || string(b) != "x" {
		t.Errorf("ReadRootFile(/linked/file) = %q, %v; want x", b, err)
	}
}
