//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kerr oci umount refuses while a container's state (kerr oci --root DIR) names the bundle,
// names the container, and changes nothing; --force goes ahead.
func TestOCIUmountRefusesWhileAContainerExists(t *testing.T) {
	s := h.Begin(t)
	defer s.Done()
	sif := pullBusyboxSIF(t, s)
	dir := filepath.Join(s.Dir(h.Root), "bundle")
	state := filepath.Join(s.Dir(h.Root), "state")
	s.Run(h.Root, "oci", "mount", sif, dir).OK(t)
	checkBundle(t, sif, dir, false)
	if err := os.MkdirAll(filepath.Join(state, "busybox1"), 0o700); err != nil {
		t.Fatal(err)
	}
	st := `{"ociVersion":"1.2.0","id":"busybox1","status":"created","pid":1,"bundle":"` + dir + `"}`
	if err := os.WriteFile(filepath.Join(state, "busybox1", "state.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}

	r := s.Run(h.Root, "oci", "--root", state, "umount", dir)
	r.Fails(t, 3)
	if !strings.Contains(r.Stderr, "busybox1") {
		t.Errorf("the refusal does not name the container: %q", r.Stderr)
	}
	checkBundle(t, sif, dir, false)

	s.Run(h.Root, "oci", "--root", state, "umount", "--force", dir).OK(t)
	released(t, sif, s.Base())
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("bundle dir after umount --force: %v", err)
	}
}
