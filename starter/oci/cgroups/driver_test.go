package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// --systemd-cgroup: systemd's driver where systemd runs, refused in one line where it does
// not; cgroupfs otherwise.
func TestDriver(t *testing.T) {
	defer func(old string) { systemdRunDir = old }(systemdRunDir)
	dir := t.TempDir()
	systemdRunDir = filepath.Join(dir, "run", "systemd", "system")
	if d, err := Driver(false); err != nil || d != DriverCgroupfs {
		t.Errorf("Driver(false) = %q, %v; want cgroupfs", d, err)
	}
	d, err := Driver(true)
	if d != "" || !errors.Is(err, ErrNoSystemd) {
		t.Fatalf("Driver(true) without systemd = %q, %v; want ErrNoSystemd", d, err)
	}
	want := "systemd is not running on this host (no " + systemdRunDir + "); use the cgroupfs driver (the default)"
	if err.Error() != want {
		t.Errorf("without systemd:\n got %q\nwant %q", err, want)
	}
	// A file where the directory should be is no systemd either.
	if err := os.MkdirAll(filepath.Dir(systemdRunDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(systemdRunDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Driver(true); !errors.Is(err, ErrNoSystemd) {
		t.Errorf("with a file at %s: %v, want ErrNoSystemd", systemdRunDir, err)
	}
	if err := os.Remove(systemdRunDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(systemdRunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err = Driver(true); d != DriverSystemd || err != nil {
		t.Errorf("Driver(true) with systemd = %q, %v; want systemd", d, err)
	}
}

func TestCheckDriver(t *testing.T) {
	for _, ok := range []string{"", DriverCgroupfs, DriverSystemd} {
		if err := CheckDriver(ok); err != nil {
			t.Errorf("CheckDriver(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"systemd-user", "cgroupfs2"} {
		if err := CheckDriver(bad); err == nil {
			t.Errorf("CheckDriver(%q) accepted", bad)
		}
	}
}
