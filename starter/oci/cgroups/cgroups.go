// Package cgroups puts an OCI container in its own cgroup and manages that cgroup for the
// rest of the container's life: limits from the runtime spec's linux.resources, freezing
// (pause), listing and signalling every process (kill --all), statistics, and removal.
//
// Why a package of its own: a container's resource limits and its device allow list are part
// of its confinement, so a limit the host cannot honour must be refused with a clear error
// rather than dropped. Validate says what this host can do before anything is created; the
// Manager then applies exactly that, through github.com/opencontainers/cgroups: with the
// cgroupfs driver its fs (cgroup v1 and hybrid hosts) and fs2 (unified cgroup v2 hosts)
// managers, with the systemd driver its systemd managers, which have systemd make the
// cgroup as a transient scope unit and set the limits systemd knows as unit properties.
//
// Device rules: with cgroupfs on cgroup v1 this package writes them (devices.allow /
// devices.deny, setDevicesV1); on cgroup v2 the library loads an eBPF program; with
// systemd the library gives them to systemd as DeviceAllow/DevicePolicy, so that systemd,
// which rewrites a unit's device cgroup whenever it reloads, keeps them.
//
// Privileges: root (real cgroup files are created and written). Nothing here switches ids.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	ocg "github.com/opencontainers/cgroups"
	// The device rule back ends: systemd's DeviceAllow properties and cgroup v2's eBPF
	// program. Without it the library refuses device rules in both.
	_ "github.com/opencontainers/cgroups/devices"
	libfs "github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	sdcg "github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// parentPath is where kerr puts containers' cgroups: /kerr/<id> by default, and relative
// cgroupsPath values are taken under it.
const parentPath = "/kerr"

// unifiedKey names the cgroup v2 directory in Paths (the library calls it "").
const unifiedKey = "unified"

// Stats is what Manager.Stats returns: the library's cgroup statistics.
//
// Privileges: root, like the package (a type grants nothing).
type Stats = ocg.Stats

// Path returns the cgroup path for a container under driver. For the systemd driver it is
// "slice:prefix:name" (see systemdPath). For cgroupfs: cgroupsPath (the spec's
// linux.cgroupsPath) if set, else "/kerr/<id>". An absolute cgroupsPath ("/a/b") is taken
// from the root of every cgroup hierarchy; a relative one ("a/b") is taken under kerr's
// parent, "/kerr/a/b", as runc takes relative paths under its own cgroup. The result is absolute and clean.
// Refused: ".." elements, the systemd "slice:prefix:name" form (that is the systemd
// driver's), the root cgroup and kerr's parent itself, and an id that is not a plain name.
//
// Privileges: root, like the rest of the package; Path itself touches nothing.
func Path(driver, cgroupsPath, id string) (string, error) {
	if err := CheckDriver(driver); err != nil {
		return "", err
	}
	if driver == DriverSystemd {
		return systemdPath(cgroupsPath, id)
	}
	if cgroupsPath == "" {
		if err := checkID(id); err != nil {
			return "", err
		}
		return parentPath + "/" + id, nil
	}
	if strings.Contains(cgroupsPath, ":") {
		return "", fmt.Errorf("cgroups: linux.cgroupsPath %q: the systemd \"slice:prefix:name\" form needs the systemd cgroup driver (--systemd-cgroup)", cgroupsPath)
	}
	p := cgroupsPath
	if !filepath.IsAbs(p) {
		p = parentPath + "/" + p
	}
	if err := checkCgroupPath(filepath.Clean(p), cgroupsPath); err != nil {
		return "", err
	}
	return filepath.Clean(p), nil
}

// checkID accepts the ids that can name a directory on their own (runc's rule).
func checkID(id string) error {
	if id == "" || id == "." || id == ".." {
		return fmt.Errorf("cgroups: container id %q cannot name a cgroup", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_+-.", c)) {
			return fmt.Errorf("cgroups: container id %q cannot name a cgroup (%q is not a letter, digit or one of _+-.)", id, c)
		}
	}
	return nil
}

// checkCgroupPath checks a cleaned absolute cgroup path; orig is what the caller gave, for
// the message.
func checkCgroupPath(p, orig string) error {
	switch {
	case strings.ContainsAny(orig, "\x00\n"):
		return fmt.Errorf("cgroups: cgroup path %q contains a NUL or newline", orig)
	case strings.Contains(orig, ":"):
		return fmt.Errorf("cgroups: cgroup path %q: the systemd \"slice:prefix:name\" form needs the systemd cgroup driver (--systemd-cgroup)", orig)
	case !filepath.IsAbs(p):
		return fmt.Errorf("cgroups: cgroup path %q is not absolute", orig)
	}
	for e := range strings.SplitSeq(orig, "/") {
		if e == ".." {
			return fmt.Errorf("cgroups: cgroup path %q: \"..\" is not allowed", orig)
		}
	}
	switch p {
	case "/":
		return fmt.Errorf("cgroups: cgroup path %q is the root cgroup", orig)
	case parentPath:
		return fmt.Errorf("cgroups: cgroup path %q is kerr's parent cgroup, shared by all containers", orig)
	}
	return nil
}

// Manager is one container's cgroup: one directory per v1 hierarchy, or one v2 directory.
// Its methods may be called from several goroutines, but Apply, Set and Destroy should not
// run at the same time as each other.
//
// Privileges: root, for every method that touches the cgroup (each one says).
type Manager struct {
	path    string                // the cgroup path, e.g. /kerr/<id>, or slice:prefix:name
	systemd bool                  // the systemd driver: the cgroup is a systemd scope unit
	v2      bool                  // unified cgroup v2 host
	res     *specs.LinuxResources // limits Apply sets; nil: none
	lib     ocg.Manager
	cfg     *ocg.Cgroup       // what lib was made from (systemd: unit properties for Apply)
	paths   map[string]string // library key ("" is the v2 dir) -> directory
}

// New returns the manager for path (as Path returns it for driver; "" is cgroupfs) with
// limits r (nil: no limits) and, for the systemd driver, the unit properties that
// annotations set (see PropertyAnnotationPrefix; the cgroupfs driver ignores them, as
// runc's does). It checks r with Validate and the properties' form, but creates nothing;
// Apply does. r is kept, not copied, until Apply.
//
// Privileges: root (it only reads cgroupfs and mountinfo, but is useless without root).
func New(driver, path string, r *specs.LinuxResources, annotations map[string]string) (*Manager, error) {
	if err := checkPath(driver, path); err != nil {
		return nil, err
	}
	if err := Validate(r); err != nil {
		return nil, err
	}
	v2 := ocg.IsCgroup2UnifiedMode()
	conv := toLibResources(r, v2, driver == DriverSystemd)
	// The library's Apply reads these (cpuset, v2 domain checks); devices are joined on v1
	// whatever the rules, since SkipDevices is false here.
	conv.SkipDevices = false
	m, err := open(driver, path, r, conv, v2)
	if err != nil || !m.systemd {
		return m, err
	}
	_, _, name, _ := splitSystemdPath(path)
	if m.cfg.SystemdProps, err = unitProperties(name, annotations); err != nil {
		return nil, err
	}
	return m, nil
}

// Load re-opens the existing cgroup at path (as Path returned it for driver when the
// container was created), for later commands: state, kill --all, pause/resume, update,
// delete. It fails, wrapping fs.ErrNotExist, if the cgroup does not exist.
//
// Privileges: root.
func Load(driver, path string) (*Manager, error) {
	if err := checkPath(driver, path); err != nil {
		return nil, err
	}
	// Nothing to set: the device rules are left alone (SkipDevices), or the systemd
	// managers would take an empty list as "no device at all".
	m, err := open(driver, path, nil, &ocg.Resources{SkipDevices: true}, ocg.IsCgroup2UnifiedMode())
	if err != nil {
		return nil, err
	}
	if !m.exists() {
		return nil, fmt.Errorf("cgroups: load %s: %w", path, fs.ErrNotExist)
	}
	return m, nil
}

// exists reports whether any directory of the cgroup exists. Not only the devices one (the
// library's test): systemd removes the directories of the controllers it manages when the
// last process of a scope exits, and leaves the others (on this kind of host cpuacct,
// freezer...) for delete to find.
func (m *Manager) exists() bool {
	for _, dir := range m.paths {
		if _, err := os.Stat(dir); err == nil {
			return true
		}
	}
	return false
}

// checkPath checks a path that Path returned for driver (it may come from a state file).
func checkPath(driver, path string) error {
	if err := CheckDriver(driver); err != nil {
		return err
	}
	if driver == DriverSystemd {
		_, _, _, err := splitSystemdPath(path)
		return err
	}
	if err := checkCgroupPath(filepath.Clean(path), path); err != nil {
		return err
	}
	if filepath.Clean(path) != path {
		return fmt.Errorf("cgroups: cgroup path %q is not clean (use Path)", path)
	}
	return nil
}

func open(driver, path string, r *specs.LinuxResources, conv *ocg.Resources, v2 bool) (*Manager, error) {
	cfg := &ocg.Cgroup{Path: path, Resources: conv}
	systemd := driver == DriverSystemd
	// The fs managers directly for cgroupfs, not the library's manager package, which
	// would pick systemd's when systemd runs: the driver is the user's choice.
	var lib ocg.Manager
	var err error
	switch {
	case systemd:
		slice, prefix, name, _ := splitSystemdPath(path) // checked by checkPath
		cfg = &ocg.Cgroup{Parent: slice, ScopePrefix: prefix, Name: name, Resources: conv, Systemd: true}
		if v2 {
			lib, err = sdcg.NewUnifiedManager(cfg, "")
		} else {
			lib, err = sdcg.NewLegacyManager(cfg, nil)
		}
	case v2:
		lib, err = fs2.NewManager(cfg, "")
	default:
		lib, err = libfs.NewManager(cfg, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("cgroups: cgroup manager for %s: %w", path, err)
	}
	paths := maps.Clone(lib.GetPaths()) // the library's own map changes on Destroy
	if len(paths) == 0 {
		return nil, fmt.Errorf("cgroups: cgroup manager for %s: no cgroup hierarchy found", path)
	}
	return &Manager{path: path, systemd: systemd, v2: v2, res: r, lib: lib, cfg: cfg, paths: paths}, nil
}

// Apply creates the cgroup (a directory in every hierarchy), sets the limits given to New,
// and then moves pid into it, so the process never runs in the cgroup unlimited. It refuses
// a cgroup that already holds processes or is frozen. If any step fails, pid is moved back
// where it was and the directories Apply made are removed again.
//
// Privileges: root.
func (m *Manager) Apply(pid int) (retErr error) {
	if pid <= 0 {
		return fmt.Errorf("cgroups: apply %s: invalid pid %d", m.path, pid)
	}
	if m.systemd {
		return m.applySystemd(pid)
	}
	created, existed, err := m.plan()
	if err != nil {
		return err
	}
	if existed {
		if err := m.checkReusable(); err != nil {
			return err
		}
	}
	defer func() {
		if retErr != nil {
			removeCreated(created, m.paths)
		}
	}()
	if err := m.lib.Apply(-1); err != nil {
		return fmt.Errorf("cgroups: create %s: %w", m.path, err)
	}
	if err := m.set(m.res); err != nil {
		return err
	}
	return m.join(pid)
}

// applySystemd is Apply for the systemd driver. systemd creates a scope unit only around
// processes it is given, so pid is in the unit (unlimited) before the limits are set: the
// container's process is kerr's, waiting for start, and runs nothing of the image before
// Apply returns. If a step fails after systemd made the unit, the unit is stopped again,
// which kills pid (the failed create kills it anyway).
func (m *Manager) applySystemd(pid int) error {
	// A unit that already holds processes (another container's, under the same
	// cgroupsPath) is refused here, before systemd is asked: stopping it on a failure
	// below would kill that container.
	if _, err := os.Stat(m.dir("devices")); err == nil {
		if err := m.checkReusable(); err != nil {
			return err
		}
	}
	if err := m.lib.Apply(pid); err != nil {
		if _, serr := os.Stat(m.dir("devices")); serr == nil {
			_ = m.lib.Destroy()
		}
		return fmt.Errorf("cgroups: create systemd unit %s: %w", m.Unit(), err)
	}
	if err := m.set(m.res); err != nil {
		_ = m.lib.Destroy()
		return err
	}
	return nil
}

// Unit is the systemd unit of the cgroup (systemd driver), "" for cgroupfs.
//
// Privileges: none.
func (m *Manager) Unit() string {
	if !m.systemd {
		return ""
	}
	_, prefix, name, _ := splitSystemdPath(m.path)
	return prefix + "-" + name + ".scope"
}

// Join moves pid into the existing cgroup (another process of a running container, for
// exec): nothing is created or set.
//
// Privileges: root.
func (m *Manager) Join(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroups: join %s: invalid pid %d", m.path, pid)
	}
	return m.join(pid)
}

// plan lists the directories Apply will create (leaves and any missing ancestors, deepest
// first) and says whether some leaf already exists.
func (m *Manager) plan() (created []string, existed bool, _ error) {
	seen := make(map[string]bool)
	for _, dir := range m.paths {
		root, ok := strings.CutSuffix(dir, m.path)
		if !ok || root == "" {
			return nil, false, fmt.Errorf("cgroups: apply %s: unexpected cgroup directory %s", m.path, dir)
		}
		if _, err := os.Stat(dir); err == nil {
			existed = true
			continue
		}
		for p := dir; p != root && !seen[p]; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			seen[p] = true
			created = append(created, p)
		}
	}
	sort.Slice(created, func(i, j int) bool { return len(created[i]) > len(created[j]) })
	return created, existed, nil
}

// checkReusable refuses an existing cgroup that holds processes or is frozen: joining it
// would mix two containers, or leave the new one stopped.
func (m *Manager) checkReusable() error {
	pids, err := m.lib.GetAllPids()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cgroups: apply %s: %w", m.path, err)
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroups: apply %s: the cgroup already holds %d process(es); is another container using this cgroupsPath?", m.path, len(pids))
	}
	if st, err := m.lib.GetFreezerState(); err == nil && st == ocg.Frozen {
		return fmt.Errorf("cgroups: apply %s: the cgroup exists and is frozen", m.path)
	}
	return nil
}

// removeCreated undoes plan's directories: leaves with their sub-cgroups, ancestors only if
// empty (another container may have started under them meanwhile).
func removeCreated(created []string, paths map[string]string) {
	leaf := make(map[string]bool)
	for _, d := range paths {
		leaf[d] = true
	}
	for _, d := range created {
		if leaf[d] {
			_ = ocg.RemovePath(d)
		} else {
			_ = unix.Rmdir(d)
		}
	}
}

// join moves pid into every directory; if one fails, it moves pid back to the cgroups it was
// in before, so that the new directories can be removed.
func (m *Manager) join(pid int) error {
	origin, err := ocg.ParseCgroupFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return fmt.Errorf("cgroups: apply %s: process %d: %w", m.path, pid, err)
	}
	var joined []string
	for key, dir := range m.paths {
		if err := ocg.WriteCgroupProc(dir, pid); err != nil {
			for _, k := range joined {
				root := strings.TrimSuffix(m.paths[k], m.path)
				back := root
				if o, ok := origin[k]; ok {
					back = filepath.Join(root, o)
				}
				_ = ocg.WriteCgroupProc(back, pid)
			}
			return fmt.Errorf("cgroups: apply %s: move process %d into %s: %w", m.path, pid, dir, err)
		}
		joined = append(joined, key)
	}
	return nil
}

// Set updates the cgroup's limits to r (nil: nothing to do), for `kerr oci update`; r is
// checked with Validate first. With the systemd driver the limits systemd knows are set
// as the unit's properties too. Fields left unset keep their current values, and an empty
// device list leaves the device rules as they are. A non-empty device list replaces the
// rules, and gets DefaultDeviceRules after it, as every container gets them at create: a
// list that allows one more device must not take /dev/null and the terminal away. On cgroup
// v1, new device rules for a running container are written by first denying all devices,
// so opening a device may fail for that moment; nothing is ever allowed that the rules do
// not allow.
//
// If the kernel refuses a limit, Set writes back every limit file it had changed before
// and returns the kernel's error: the cgroup is as it was (unless putting it back failed
// too, which the error then says). With the systemd driver the files are written first,
// and systemd is asked only once the kernel has taken them: a refused limit never becomes
// a property of the unit, which systemd would write again at its next reload.
//
// Privileges: root.
func (m *Manager) Set(r *specs.LinuxResources) error {
	if err := Validate(r); err != nil {
		return err
	}
	return m.update(r)
}

// update is Set after Validate.
func (m *Manager) update(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if len(r.Devices) > 0 {
		withDefaults := *r
		withDefaults.Devices = append(slices.Clone(r.Devices), DefaultDeviceRules()...)
		r = &withDefaults
	}
	if err := m.checkAgainstCurrent(r); err != nil {
		return err
	}
	saved := m.save(r)
	if err := m.set(r); err != nil {
		if rerr := restore(saved); rerr != nil {
			return fmt.Errorf("%w; putting the previous limits back failed too: %v", err, rerr)
		}
		return fmt.Errorf("%w (the previous limits are back in place)", err)
	}
	return nil
}

// checkAgainstCurrent refuses an update that cannot fit the limits it leaves in place. On
// cgroup v1, memory.memsw.limit_in_bytes (the spec's memory.swap: memory plus swap) may
// not be below memory.limit_in_bytes: raising memory.limit alone above the current swap
// limit only gets EINVAL from the kernel, so say what to do instead (as Docker does).
func (m *Manager) checkAgainstCurrent(r *specs.LinuxResources) error {
	if m.v2 || r.Memory == nil || deref(r.Memory.Limit) <= 0 || deref(r.Memory.Swap) != 0 {
		return nil
	}
	s, err := ocg.ReadFile(m.dir("memory"), "memory.memsw.limit_in_bytes")
	if err != nil {
		return nil // no swap accounting: no such constraint
	}
	memsw, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || *r.Memory.Limit <= memsw {
		return nil
	}
	return &fieldError{field: "memory.limit", msg: fmt.Sprintf(
		"%d is more than the container's current memory.swap limit %d (memory plus swap): set memory.swap too, at least as high",
		*r.Memory.Limit, memsw)}
}

func (m *Manager) set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	conv := toLibResources(r, m.v2, m.systemd)
	if m.systemd {
		// The kernel first, through the cgroup files: a limit it refuses then never
		// reaches systemd, which would keep it as the unit's property and write it again
		// at its next reload, after update has put the old one back.
		if err := m.setFiles(conv); err != nil {
			return fmt.Errorf("cgroups: set limits on %s: %w", m.path, err)
		}
	}
	if err := m.lib.Set(conv); err != nil {
		return fmt.Errorf("cgroups: set limits on %s: %w", m.path, err)
	}
	if !m.v2 && !m.systemd && len(r.Devices) > 0 {
		if err := setDevicesV1(m.paths["devices"], r.Devices); err != nil {
			return fmt.Errorf("cgroups: set device rules on %s: %w", m.path, err)
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit == 0 {
		// The library writes 1 for 0 (systemd's limitation); the spec says 0 is a limit.
		if err := ocg.WriteFile(m.dir("pids"), "pids.max", "0"); err != nil {
			return fmt.Errorf("cgroups: set limits on %s: %w", m.path, err)
		}
	}
	return nil
}

// setFiles writes r to the cgroup's files only, through the library's cgroupfs managers
// over the same directories (the systemd driver's first step in set).
func (m *Manager) setFiles(r *ocg.Resources) error {
	cfg := &ocg.Cgroup{Resources: r}
	if m.v2 {
		fsm, err := fs2.NewManager(cfg, m.paths[""])
		if err != nil {
			return err
		}
		return fsm.Set(r)
	}
	fsm, err := libfs.NewManager(cfg, m.paths)
	if err != nil {
		return err
	}
	return fsm.Set(r)
}

// dir is the directory of controller (the v2 directory on v2 hosts).
func (m *Manager) dir(controller string) string {
	if m.v2 {
		return m.paths[""]
	}
	return m.paths[controller]
}

// Freeze stops every process in the cgroup (pause); it returns once they are frozen.
//
// Privileges: root.
func (m *Manager) Freeze() error {
	if err := m.lib.Freeze(ocg.Frozen); err != nil {
		return fmt.Errorf("cgroups: freeze %s: %w", m.path, err)
	}
	return nil
}

// Thaw lets the processes of a frozen cgroup run again (resume).
//
// Privileges: root.
func (m *Manager) Thaw() error {
	if err := m.lib.Freeze(ocg.Thawed); err != nil {
		return fmt.Errorf("cgroups: thaw %s: %w", m.path, err)
	}
	return nil
}

// Frozen reports whether the cgroup itself is frozen (by Freeze, not by an ancestor).
//
// Privileges: root.
func (m *Manager) Frozen() (bool, error) {
	st, err := m.lib.GetFreezerState()
	if err != nil {
		return false, fmt.Errorf("cgroups: freezer state of %s: %w", m.path, err)
	}
	return st == ocg.Frozen, nil
}

// Pids lists every process in the cgroup and its sub-cgroups.
//
// Privileges: root.
func (m *Manager) Pids() ([]int, error) {
	pids, err := m.lib.GetAllPids()
	if err == nil {
		return pids, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cgroups: processes of %s: %w", m.path, err)
	}
	// The directory the library reads (devices, on v1) is gone: systemd removes those of
	// the controllers it manages when a scope's last process exits. Any other one that is
	// left holds the same processes; none left, no process.
	for _, key := range slices.Sorted(maps.Keys(m.paths)) {
		if pids, err := ocg.GetAllPids(m.paths[key]); err == nil {
			return pids, nil
		}
	}
	return nil, nil
}

// Signal sends sig to every process in the cgroup, as runc's `kill --all`. For SIGKILL the
// cgroup is frozen first, so that no process escapes by forking between listing and
// killing, and thawed afterwards so the killed processes can die; on cgroup v2 kernels with
// cgroup.kill, the kernel does all of this at once. Processes that exit meanwhile are no
// error.
//
// Privileges: root.
func (m *Manager) Signal(sig unix.Signal) (retErr error) {
	if sig == unix.SIGKILL {
		if m.v2 {
			err := ocg.WriteFile(m.paths[""], "cgroup.kill", "1")
			if err == nil {
				return nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("cgroups: kill %s: %w", m.path, err)
			}
		}
		// Frozen, no process can fork a new one past the kill. A tree that keeps forking
		// may not freeze in the library's time on a busy host: then kill in rounds until
		// the cgroup is empty, which a fork bomb cannot outrun for long either.
		if err := m.Freeze(); err != nil {
			_ = m.Thaw()
			return m.killRounds()
		}
		defer func() {
			if err := m.Thaw(); err != nil && retErr == nil {
				retErr = err
			}
		}()
	}
	pids, err := m.Pids()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("process %d: %w", pid, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cgroups: signal %s in %s: %w", unix.SignalName(sig), m.path, errors.Join(errs...))
	}
	return nil
}

// killRounds sends SIGKILL to every process in the cgroup until none is left (or a few
// seconds have passed), for a cgroup that would not freeze.
func (m *Manager) killRounds() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := m.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: kill %s: %d processes left after SIGKILL", m.path, len(pids))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Destroy removes the cgroup's directories (and any sub-cgroups the container made), and
// with the systemd driver stops its unit. It
// kills nothing: while the cgroup holds processes it waits up to a second for them to
// finish exiting, then fails (wrapping unix.EBUSY) and removes nothing. Removal itself is
// retried briefly on EBUSY. Directories already gone are fine.
//
// Privileges: root.
func (m *Manager) Destroy() error {
	deadline := time.Now().Add(time.Second)
	for {
		pids, err := m.lib.GetAllPids()
		if err != nil || len(pids) == 0 {
			break // a missing directory, or nothing left: remove what there is
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: remove %s: the cgroup still holds %d process(es): %w", m.path, len(pids), unix.EBUSY)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.systemd {
		// systemd stops the unit (a unit it already dropped is no error) and the library
		// removes the directories systemd leaves, those of controllers it does not manage.
		if err := m.lib.Destroy(); err != nil {
			return fmt.Errorf("cgroups: remove systemd unit %s: %w", m.Unit(), err)
		}
		return nil
	}
	var errs []error
	for _, dir := range m.paths {
		if err := ocg.RemovePath(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cgroups: remove %s: %w", m.path, errors.Join(errs...))
	}
	return nil
}

// Paths maps each controller (or "name=systemd", or "unified" for the cgroup v2
// directory) to the container's directory in it, for state files and debugging. On a
// unified cgroup v2 host there is just "unified".
//
// Privileges: root, like the package; this one only returns what New or Load computed.
func (m *Manager) Paths() map[string]string {
	out := make(map[string]string, len(m.paths))
	for k, v := range m.paths {
		if k == "" {
			k = unifiedKey
		}
		out[k] = v
	}
	return out
}

// Stats reads the cgroup's statistics (cpu, memory, pids, blkio/io, hugetlb...), for
// `kerr oci events --stats`.
//
// Privileges: root.
func (m *Manager) Stats() (*Stats, error) {
	st, err := m.lib.GetStats()
	if err != nil {
		return nil, fmt.Errorf("cgroups: statistics of %s: %w", m.path, err)
	}
	return st, nil
}
