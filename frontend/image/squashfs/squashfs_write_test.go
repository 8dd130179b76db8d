package squashfs

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteReportsTar2sqfsMessage feeds more garbage than a pipe holds, so tar2sqfs exits
// while Write is still writing: the Write error must carry tar2sqfs's own reason (that is
// how a full disk is told apart from other failures), and reading it must not race with the
// goroutine that copies tar2sqfs's output (go test -race).
func TestWriteReportsTar2sqfsMessage(t *testing.T) {
	needTools(t, "tar2sqfs")
	w, err := Create(context.Background(), filepath.Join(t.TempDir(), "bad.sqfs"), "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Abort()
	chunk := bytes.Repeat([]byte("this is not a tar stream\n"), 4096)
	for range 1000 {
		if _, err = w.Write(chunk); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("100 MB of garbage written without an error")
	}
	if !strings.Contains(err.Error(), "not a ustar tar archive") {
		t.Errorf("Write error %q does not carry tar2sqfs's message", err)
	}
}
