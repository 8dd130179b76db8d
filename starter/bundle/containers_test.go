package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/errdefs"
)

// writeState writes root/id/state.json naming bundle, as the oci engine keeps it.
func writeState(t *testing.T, root, id, bundle string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, id), 0o700); err != nil {
		t.Fatal(err)
	}
	st := `{"ociVersion":"1.2.0","id":"` + id + `","status":"created","pid":1,"bundle":"` + bundle + `"}`
	if err := os.WriteFile(filepath.Join(root, id, "state.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUmountRefusesWhileAContainerUsesTheBundle(t *testing.T) {
	e := newEnv(t)
	bundle := filepath.Join(e.dir, "b")
	other := filepath.Join(e.dir, "other")
	e.mustMount(bundle, false)
	stateRoot := filepath.Join(e.dir, "state")
	writeState(t, stateRoot, "web-1", bundle)
	writeState(t, stateRoot, "unrelated", other)
	// Not containers: a bad id, a file, and a symlinked state file.
	writeState(t, stateRoot, "..bad", bundle)
	if err := os.WriteFile(filepath.Join(stateRoot, "afile"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stateRoot, "linked"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(stateRoot, "web-1", "state.json"), filepath.Join(stateRoot, "linked", "state.json")); err != nil {
		t.Fatal(err)
	}

	err := Umount(bundle, UmountOptions{StateRoot: stateRoot})
	if !errors.Is(err, errdefs.ErrExists) || !strings.Contains(err.Error(), "container web-1") || strings.Contains(err.Error(), "linked") {
		t.Fatalf("Umount with a container = %v, want a refusal naming web-1 only", err)
	}
	if ms := mountsBelow(t, bundle); len(ms) != 2 {
		t.Fatalf("the refused umount changed the mounts: %v", ms)
	}
	// --force goes ahead.
	if err := Umount(bundle, UmountOptions{StateRoot: stateRoot, Force: true}); err != nil {
		t.Fatalf("Umount --force: %v", err)
	}
	e.checkLeftAsFound(bundle, dirState{})
}

func TestContainersUsingWithoutStateRoot(t *testing.T) {
	for _, root := range []string{"", filepath.Join(t.TempDir(), "absent")} {
		ids, err := containersUsing(root, "/b")
		if err != nil || len(ids) != 0 {
			t.Errorf("containersUsing(%q) = %v, %v", root, ids, err)
		}
	}
}
