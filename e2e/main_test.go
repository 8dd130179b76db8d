//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/kerr-hpc/kerr/e2e/internal/harness"
)

// h is the installed kerr and its fixtures, shared by every test; tests only read it.
var h *harness.Harness

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipped: the suite installs a setuid starter and creates an account; run it as root")
		os.Exit(0)
	}
	var err error
	if h, err = harness.Setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setup: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	h.Teardown()
	os.Exit(code)
}
