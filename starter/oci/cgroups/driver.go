package cgroups

import (
	"errors"
	"fmt"
	"os"
)

// Drivers: what creates and manages a container's cgroup. Create records the driver in
// the container's state, and later commands (delete, update, pause, events, ps, kill
// --all, exec) go through the one recorded, whatever their own flags say.
const (
	// DriverCgroupfs: kerr makes the cgroup directories and writes their files itself
	// (the default, and the only driver this kerr has).
	DriverCgroupfs = "cgroupfs"
	// DriverSystemd: systemd makes the cgroup as a transient unit (runc's
	// --systemd-cgroup, with linux.cgroupsPath as "slice:prefix:name"). Not implemented:
	// create refuses it.
	DriverSystemd = "systemd"
)

// systemdRunDir exists while systemd is the host's init (sd_booted(3)).
var systemdRunDir = "/run/systemd/system"

// ErrNoSystemd is Driver's error when --systemd-cgroup is asked of a host that does not
// run systemd.
var ErrNoSystemd = errors.New("systemd is not running on this host")

// Driver returns the driver create uses: cgroupfs, or with systemd (--systemd-cgroup)
// systemd's. A host without systemd is refused (wrapping ErrNoSystemd), and so is one with
// it, as kerr has no systemd driver yet: either way nothing has been created.
//
// Privileges: none (it only looks at /run/systemd/system).
func Driver(systemd bool) (string, error) {
	if !systemd {
		return DriverCgroupfs, nil
	}
	if fi, err := os.Lstat(systemdRunDir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w (no %s); use the cgroupfs driver (the default)", ErrNoSystemd, systemdRunDir)
	}
	return "", errors.New("kerr has no systemd cgroup driver yet (it manages cgroups through cgroupfs only); use the cgroupfs driver (the default)")
}

// CheckDriver refuses a driver recorded in a container's state that this kerr cannot
// manage the cgroup with; "" is cgroupfs (states written before drivers were recorded).
//
// Privileges: none.
func CheckDriver(driver string) error {
	switch driver {
	case "", DriverCgroupfs:
		return nil
	case DriverSystemd:
		return fmt.Errorf("cgroups: the container's cgroup is systemd's (--systemd-cgroup), and this kerr has no systemd driver")
	}
	return fmt.Errorf("cgroups: unknown cgroup driver %q in the container's state", driver)
}
