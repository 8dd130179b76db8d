package cgroups

import (
	"errors"
	"fmt"
	"os"
	"strings"

	sdcg "github.com/opencontainers/cgroups/systemd"
)

// Drivers: what creates and manages a container's cgroup. Create records the driver in
// the container's state, and later commands (delete, update, pause, events, ps, kill
// --all, exec) go through the one recorded, whatever their own flags say.
const (
	// DriverCgroupfs: kerr makes the cgroup directories and writes their files itself
	// (the default).
	DriverCgroupfs = "cgroupfs"
	// DriverSystemd: systemd makes the cgroup as a transient scope unit, and kerr asks
	// systemd over D-Bus for the limits it knows (then writes them to the cgroup files too,
	// with the ones systemd does not know), as runc's --systemd-cgroup does. The
	// container's linux.cgroupsPath is then "slice:prefix:name".
	DriverSystemd = "systemd"
)

// systemdRunDir exists while systemd is the host's init (sd_booted(3)).
var systemdRunDir = "/run/systemd/system"

// ErrNoSystemd is Driver's error when --systemd-cgroup is asked of a host that does not
// run systemd.
var ErrNoSystemd = errors.New("systemd is not running on this host")

// Driver returns the driver create uses: cgroupfs, or with systemd (--systemd-cgroup)
// systemd's. A host without systemd is refused (wrapping ErrNoSystemd) before anything
// has been created.
//
// Privileges: none (it only looks at /run/systemd/system).
func Driver(systemd bool) (string, error) {
	if !systemd {
		return DriverCgroupfs, nil
	}
	if fi, err := os.Lstat(systemdRunDir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w (no %s); use the cgroupfs driver (the default)", ErrNoSystemd, systemdRunDir)
	}
	return DriverSystemd, nil
}

// CheckDriver refuses a driver recorded in a container's state that this kerr cannot
// manage the cgroup with; "" is cgroupfs (states written before drivers were recorded).
//
// Privileges: none.
func CheckDriver(driver string) error {
	switch driver {
	case "", DriverCgroupfs, DriverSystemd:
		return nil
	}
	return fmt.Errorf("cgroups: unknown cgroup driver %q in the container's state", driver)
}

// Defaults of the systemd driver: a container without linux.cgroupsPath is the scope
// kerr-<id>.scope in system.slice, as runc makes runc-<id>.scope there.
const (
	systemdDefaultSlice  = "system.slice"
	systemdDefaultPrefix = "kerr"
	// unitNameMax is systemd's limit on a unit name (UNIT_NAME_MAX less its NUL).
	unitNameMax = 255
)

// systemdPath returns the systemd form of a container's cgroup, "slice:prefix:name", with
// the slice filled in: cgroupsPath itself when it has that form, or "system.slice:kerr:id"
// when it is empty. The unit is then prefix-name.scope in the slice. Refused: any other
// form (a cgroupfs path), a slice name systemd would not take, an empty prefix or name, a
// name that is a slice (kerr puts containers in scopes), and characters systemd does not
// allow in unit names.
func systemdPath(cgroupsPath, id string) (string, error) {
	if cgroupsPath == "" {
		if err := checkID(id); err != nil {
			return "", err
		}
		return systemdDefaultSlice + ":" + systemdDefaultPrefix + ":" + id, nil
	}
	slice, prefix, name, err := splitSystemdPath(cgroupsPath)
	if err != nil {
		return "", err
	}
	return slice + ":" + prefix + ":" + name, nil
}

// splitSystemdPath checks a "slice:prefix:name" path and returns its parts, the slice
// defaulting to system.slice.
func splitSystemdPath(p string) (slice, prefix, name string, _ error) {
	bad := func(why string) error {
		return fmt.Errorf("cgroups: cgroup path %q: %s (the systemd driver takes \"slice:prefix:name\", as \"system.slice:kerr:ID\")", p, why)
	}
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return "", "", "", bad("not of the form slice:prefix:name")
	}
	slice, prefix, name = parts[0], parts[1], parts[2]
	if slice == "" {
		slice = systemdDefaultSlice
	}
	if !unitNameChars(slice) {
		return "", "", "", bad(fmt.Sprintf("the slice %q holds a character systemd does not allow in a unit name", slice))
	}
	if _, err := sdcg.ExpandSlice(slice); err != nil {
		return "", "", "", bad(fmt.Sprintf("%q is not a slice name (NAME.slice, parts joined by single dashes)", slice))
	}
	switch {
	case prefix == "" || name == "":
		return "", "", "", bad("the prefix and the name must not be empty")
	case strings.HasSuffix(name, ".slice"):
		return "", "", "", bad("the name is a slice; kerr puts a container in a scope unit, prefix-name.scope")
	case !unitNameChars(prefix) || !unitNameChars(name):
		return "", "", "", bad("the prefix or the name holds a character systemd does not allow in a unit name (letters, digits and \"_.@-\" only)")
	case len(prefix)+1+len(name)+len(".scope") > unitNameMax:
		return "", "", "", bad(fmt.Sprintf("the unit name would be longer than systemd's %d characters", unitNameMax))
	}
	return slice, prefix, name, nil
}

// unitNameChars reports whether s holds only characters systemd allows in unit names
// (less ':', the separator here, and '\', which only escapes).
func unitNameChars(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.@-", c)) {
			return false
		}
	}
	return true
}
