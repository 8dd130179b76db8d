package oci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

// reportTo runs InitEngine.Report with stderr on a pipe and returns what it printed.
func reportTo(t *testing.T, err error) (int, string) {
	t.Helper()
	r, w, perr := os.Pipe()
	if perr != nil {
		t.Fatal(perr)
	}
	saved := os.Stderr
	os.Stderr = w
	code := InitEngine{}.Report(err)
	os.Stderr = saved
	w.Close()
	b, _ := io.ReadAll(r)
	r.Close()
	return code, string(b)
}

// A container process's error that the runtime got on the sync socket is the runtime's to
// report (kerr-runc: its stderr and --log): printed by the process as well, it would reach
// the container's stderr twice. One the runtime did not get is printed.
func TestInitReportSilentWhenRuntimeHasIt(t *testing.T) {
	enoent := fmt.Errorf("exec /no/such: %w", os.ErrNotExist)
	code, out := reportTo(t, reportedError{enoent})
	if out != "" || code != errdefs.ExitCode(enoent) {
		t.Errorf("a reported error: printed %q, exit %d", out, code)
	}
	code, out = reportTo(t, errors.New("sync: broken"))
	if out != "starter: sync: broken\n" || code == 0 {
		t.Errorf("an error the runtime lacks: printed %q, exit %d", out, code)
	}
}
