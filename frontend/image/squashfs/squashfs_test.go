package squashfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH", tool)
		}
	}
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"dir/", "dir/a", "b"} {
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[name]))}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCreateWriteCloseMakesImage(t *testing.T) {
	needTools(t, "tar2sqfs", "unsquashfs")
	out := filepath.Join(t.TempDir(), "root.sqfs")
	// The caller's temp file exists already: tar2sqfs must overwrite it.
	if err := os.WriteFile(out, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Create(context.Background(), out, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(tarOf(t, map[string]string{"dir/a": "alpha", "b": "beta"})); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ls, err := exec.Command("unsquashfs", "-lls", out).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lls: %v: %s", err, ls)
	}
	for _, want := range []string{"squashfs-root/dir/a", "squashfs-root/b"} {
		if !bytes.Contains(ls, []byte(want)) {
			t.Errorf("image lacks %s:\n%s", want, ls)
		}
	}
	st, err := exec.Command("unsquashfs", "-s", out).CombinedOutput()
	if err != nil || !bytes.Contains(st, []byte("Compression gzip")) {
		t.Errorf("image is not gzip-compressed (the default): %v\n%s", err, st)
	}
}

func TestCloseReportsTar2sqfsMessage(t *testing.T) {
	needTools(t, "tar2sqfs")
	w, err := Create(context.Background(), filepath.Join(t.TempDir(), "bad.sqfs"), "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// Less than a pipe buffer, so Write succeeds and the failure shows at Close.
	if _, err := w.Write(bytes.Repeat([]byte("this is not a tar stream\n"), 100)); err != nil {
		w.Abort()
		t.Fatalf("Write: %v", err)
	}
	err = w.Close()
	if err == nil {
		t.Fatal("Close succeeded on a garbage stream")
	}
	if !strings.Contains(err.Error(), "not a ustar tar archive") {
		t.Errorf("Close error %q does not carry tar2sqfs's message", err)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Errorf("Close error %q does not wrap the exit status", err)
	}
}

func TestCreateRefusesUnknownCompressor(t *testing.T) {
	needTools(t, "tar2sqfs")
	w, err := Create(context.Background(), filepath.Join(t.TempDir(), "x.sqfs"), "no-such-compressor")
	if err != nil {
		return // refused at start: fine
	}
	_, _ = w.Write(tarOf(t, nil))
	if err := w.Close(); err == nil {
		t.Error("an unknown compressor made an image")
	}
}

func TestAbortReapsTar2sqfs(t *testing.T) {
	needTools(t, "tar2sqfs")
	w, err := Create(context.Background(), filepath.Join(t.TempDir(), "aborted.sqfs"), "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// Half a stream: tar2sqfs is alive and waiting for more.
	full := tarOf(t, map[string]string{"dir/a": strings.Repeat("a", 4096)})
	if _, err := w.Write(full[:1024]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	pid := w.cmd.Process.Pid
	w.Abort()
	if w.cmd.ProcessState == nil {
		t.Fatal("Abort returned without waiting for tar2sqfs")
	}
	// Reaped: no zombie keeps the pid.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("tar2sqfs (pid %d) still exists after Abort: kill(0) = %v", pid, err)
	}
	// Abort after Abort, as deferred cleanup paths do, must not hang or panic.
	w.Abort()
}
