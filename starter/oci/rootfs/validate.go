package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountKind says how Setup makes a spec mount.
type mountKind int

const (
	kindFS      mountKind = iota // a new filesystem instance: proc, tmpfs, overlay, …
	kindBind                     // bind or rbind of a host path
	kindCgroup                   // type "cgroup": cgroup2 on a unified host, else the v1 layout
	kindCgroup2                  // type "cgroup2"
)

// plan is one spec mount, checked and parsed.
type plan struct {
	index int
	m     specs.Mount
	dest  string // the destination, cleaned; resolved inside the rootfs at setup
	kind  mountKind
	opts  mountOptions
}

func (p *plan) String() string { return fmt.Sprintf("mounts[%d] (%s)", p.index, p.m.Destination) }

// procBindTargets are the only paths inside /proc a spec may mount on: bind mounts of files
// that FUSE file systems such as lxcfs emulate per container. Anything else inside /proc could
// hide or redirect what the kernel shows (and what maskedPaths hide).
var procBindTargets = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/net/dev": true, "/proc/sys/kernel/ns_last_pid": true,
}

// Validate checks the filesystem settings of spec — root, mounts, linux.rootfsPropagation,
// linux.devices, linux.maskedPaths, linux.readonlyPaths, linux.sysctl names and
// linux.mountLabel — without touching the kernel, so that the create command can refuse a
// bad bundle with a one-line error naming the field, e.g.
// `mounts[2] (/data): unknown option "foo"`. Setup runs it again.
//
// Privileges: none; it only reads spec.
func Validate(spec *specs.Spec) error {
	_, err := validate(spec)
	return err
}

func validate(spec *specs.Spec) ([]plan, error) {
	if spec == nil {
		return nil, errors.New("no spec")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("root.path: missing")
	}
	var plans []plan
	for i, m := range spec.Mounts {
		p, err := planMount(i, m)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
		}
		plans = append(plans, p)
	}
	l := spec.Linux
	if l == nil {
		return plans, nil
	}
	if l.RootfsPropagation != "" {
		if _, ok := propagationFlags[l.RootfsPropagation]; !ok {
			return nil, fmt.Errorf("linux.rootfsPropagation: unknown value %q", l.RootfsPropagation)
		}
	}
	if l.MountLabel != "" {
		return nil, errors.New("linux.mountLabel: SELinux mount labels are not supported")
	}
	seen := map[string]int{}
	for i, d := range l.Devices {
		if err := checkDevice(d); err != nil {
			return nil, fmt.Errorf("linux.devices[%d] (%s): %w", i, d.Path, err)
		}
		p := path.Clean(d.Path)
		if j, dup := seen[p]; dup {
			return nil, fmt.Errorf("linux.devices[%d] (%s): same path as linux.devices[%d]", i, d.Path, j)
		}
		seen[p] = i
	}
	for field, paths := range map[string][]string{"linux.maskedPaths": l.MaskedPaths, "linux.readonlyPaths": l.ReadonlyPaths} {
		for i, p := range paths {
			if !path.IsAbs(p) {
				return nil, fmt.Errorf("%s[%d] (%s): not an absolute path", field, i, p)
			}
		}
	}
	for k := range l.Sysctl {
		if err := checkSysctlName(k); err != nil {
			return nil, fmt.Errorf("linux.sysctl (%s): %w", k, err)
		}
	}
	return plans, nil
}

func planMount(i int, m specs.Mount) (plan, error) {
	p := plan{index: i, m: m}
	if m.Destination == "" {
		return p, errors.New("destination is empty")
	}
	if !path.IsAbs(m.Destination) {
		return p, fmt.Errorf("destination %q is not absolute", m.Destination)
	}
	p.dest = path.Clean(m.Destination)
	if p.dest == "/" {
		return p, errors.New("cannot mount over the container's root (root.path sets it)")
	}
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		return p, errors.New("id-mapped mounts (uidMappings, gidMappings) are not supported")
	}
	opts, err := parseOptions(m.Options, m.Type == "bind")
	if err != nil {
		return p, err
	}
	p.opts = opts
	switch {
	case opts.bind:
		p.kind = kindBind
		if m.Source == "" && !opts.remount {
			return p, errors.New("bind mount without a source")
		}
	case m.Type == "":
		return p, errors.New("type is empty (only a bind mount may leave it out)")
	default:
		if err := checkFSType(m.Type); err != nil {
			return p, err
		}
		switch m.Type {
		case "cgroup":
			p.kind = kindCgroup
		case "cgroup2":
			p.kind = kindCgroup2
		default:
			p.kind = kindFS
		}
	}
	if p.kind != kindBind && p.kind != kindFS && opts.remount {
		return p, fmt.Errorf("remount of a %s mount is not supported", m.Type)
	}
	if err := checkProcDest(p.dest, p.kind, m.Type); err != nil {
		return p, err
	}
	return p, nil
}

// checkProcDest refuses mounts on /proc and inside it, except a procfs (or a bind, whose
// source Setup checks to be a procfs) at /proc itself and binds onto procBindTargets.
func checkProcDest(dest string, kind mountKind, fstype string) error {
	if dest == "/proc" {
		if kind == kindBind || fstype == "proc" {
			return nil
		}
		return fmt.Errorf("only a proc mount may go on /proc, not %q", fstype)
	}
	if strings.HasPrefix(dest, "/proc/") && !(kind == kindBind && procBindTargets[dest]) {
		return fmt.Errorf("%s is inside /proc, where only binds onto %s are allowed", dest, procTargetList())
	}
	return nil
}

func procTargetList() string {
	l := make([]string, 0, len(procBindTargets))
	for p := range procBindTargets {
		l = append(l, p)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// checkFSType accepts any name the kernel could know; Setup learns from fsopen(2) whether it
// does.
func checkFSType(t string) error {
	if len(t) > 64 {
		return fmt.Errorf("type %q is too long", t)
	}
	for _, r := range t {
		if r <= ' ' || r == 0x7f || r == '/' || r == ',' {
			return fmt.Errorf("type %q is not a filesystem type name", t)
		}
	}
	return nil
}

// Limits of dev_t as mknod(2) takes it.
const (
	maxMajor = 1<<12 - 1
	maxMinor = 1<<20 - 1
)

func checkDevice(d specs.LinuxDevice) error {
	if !path.IsAbs(d.Path) {
		return fmt.Errorf("path %q is not absolute", d.Path)
	}
	if p := path.Clean(d.Path); p == "/" || p == "/dev" {
		return fmt.Errorf("path %q cannot be a device", d.Path)
	}
	if _, err := deviceTypeBits(d.Type); err != nil {
		return err
	}
	if d.Type != "p" {
		if d.Major < 0 || d.Major > maxMajor {
			return fmt.Errorf("major %d out of range 0-%d", d.Major, maxMajor)
		}
		if d.Minor < 0 || d.Minor > maxMinor {
			return fmt.Errorf("minor %d out of range 0-%d", d.Minor, maxMinor)
		}
	}
	_, err := devicePerm(d)
	return err
}

// deviceTypeBits is the S_IF* type of a linux.devices type.
func deviceTypeBits(t string) (uint32, error) {
	switch t {
	case "c", "u":
		return unix.S_IFCHR, nil
	case "b":
		return unix.S_IFBLK, nil
	case "p":
		return unix.S_IFIFO, nil
	}
	return 0, fmt.Errorf("type %q is not one of c, b, u, p", t)
}

// devicePerm is the permission part of a device's fileMode, 0666 when unset. Generators
// such as runtime-tools write the whole st_mode (0o20666 for a char device); its type bits
// must then agree with type.
func devicePerm(d specs.LinuxDevice) (uint32, error) {
	if d.FileMode == nil {
		return 0o666, nil
	}
	mode := uint32(*d.FileMode)
	if *d.FileMode != os.FileMode(mode) {
		return 0, fmt.Errorf("fileMode %#o out of range", uint64(*d.FileMode))
	}
	typ, _ := deviceTypeBits(d.Type)
	if t := mode & unix.S_IFMT; t != 0 && t != typ {
		return 0, fmt.Errorf("fileMode %#o has file type bits that do not match type %q", mode, d.Type)
	}
	if mode&^(unix.S_IFMT|0o7777) != 0 {
		return 0, fmt.Errorf("fileMode %#o has unknown bits", mode)
	}
	return mode & 0o7777, nil
}
