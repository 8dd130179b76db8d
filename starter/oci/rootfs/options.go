package rootfs

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Parsing options needs no privileges.

// attrChange is a change of per-mount attributes in mount_setattr(2) terms: bits to set and
// bits to clear. Unlike a legacy MS_REMOUNT|MS_BIND, which replaces every per-mount flag at
// once, a change touches only the bits it names: flags of the source mount that the spec does
// not mention (nosuid, nodev, noexec, the atime mode) stay as they are, locked or not, so a
// read-only bind in a user namespace never fails with EPERM for dropping a locked flag.
type attrChange struct {
	set, clr uint64
}

// add records one option; a later option overrides an earlier one on the same bits.
func (a *attrChange) add(set, clr uint64) {
	a.set = a.set&^clr | set
	a.clr = a.clr&^set | clr
}

func (a attrChange) empty() bool { return a.set == 0 && a.clr == 0 }

// setattr is the argument mount_setattr(2) takes for this change.
func (a attrChange) setattr() *unix.MountAttr {
	return &unix.MountAttr{Attr_set: a.set, Attr_clr: a.clr}
}

// mountOptions is the parsed options list of one spec mount.
type mountOptions struct {
	// bind is set by "bind" or "rbind"; recursive by "rbind".
	bind, recursive bool
	// remount changes the mount already at the destination instead of adding one.
	remount bool
	// attrs apply to the new mount itself, rattrs (the "r" forms: rro, rnosuid, …) to it and
	// every mount below it (mount_setattr with AT_RECURSIVE).
	attrs, rattrs attrChange
	// sbFlags are options of the new filesystem instance itself (ro, sync, dirsync, mand and
	// their opposites), passed to fsconfig(2) in order. Bind mounts have none.
	sbFlags []string
	// propagation is MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE (0: unchanged), applied
	// after the mount is in place; propRecursive for the r- forms.
	propagation   uint64
	propRecursive bool
	// data are the options the filesystem parses itself ("mode=755", "newinstance", …).
	data []string
}

// Option kinds of the table below.
const (
	optAttr  = iota // a per-mount attribute of this mount
	optRAttr        // the same, recursively
	optSB           // a flag of the superblock; ro/rw are per-mount attributes too
	optProp         // mount propagation
	optBind         // bind or rbind
	optRemount
	optNoop // asks for what a new mount gets anyway
	optRefused
)

type optSpec struct {
	kind     int
	set, clr uint64
	prop     uint64
	rec      bool
	why      string // for optRefused
}

// atime sets the atime mode, which is a field rather than a bit: MOUNT_ATTR__ATIME clears the
// field and set chooses the value (MOUNT_ATTR_RELATIME is 0).
func atime(mode uint64) optSpec {
	return optSpec{kind: optAttr, set: mode, clr: unix.MOUNT_ATTR__ATIME}
}

// options maps every option kerr knows. Everything else is data for the filesystem, and an
// error on a bind mount, which has no filesystem to pass it to.
//
// The atime options follow mount(8): "atime" and "nostrictatime" mean the kernel's default
// (relatime), "norelatime" means full atime updates (strictatime).
var options = map[string]optSpec{
	"ro":          {kind: optSB, set: unix.MOUNT_ATTR_RDONLY},
	"rw":          {kind: optSB, clr: unix.MOUNT_ATTR_RDONLY},
	"nosuid":      {kind: optAttr, set: unix.MOUNT_ATTR_NOSUID},
	"suid":        {kind: optAttr, clr: unix.MOUNT_ATTR_NOSUID},
	"nodev":       {kind: optAttr, set: unix.MOUNT_ATTR_NODEV},
	"dev":         {kind: optAttr, clr: unix.MOUNT_ATTR_NODEV},
	"noexec":      {kind: optAttr, set: unix.MOUNT_ATTR_NOEXEC},
	"exec":        {kind: optAttr, clr: unix.MOUNT_ATTR_NOEXEC},
	"nodiratime":  {kind: optAttr, set: unix.MOUNT_ATTR_NODIRATIME},
	"diratime":    {kind: optAttr, clr: unix.MOUNT_ATTR_NODIRATIME},
	"nosymfollow": {kind: optAttr, set: unix.MOUNT_ATTR_NOSYMFOLLOW},
	"symfollow":   {kind: optAttr, clr: unix.MOUNT_ATTR_NOSYMFOLLOW},

	"noatime":       atime(unix.MOUNT_ATTR_NOATIME),
	"atime":         atime(unix.MOUNT_ATTR_RELATIME),
	"relatime":      atime(unix.MOUNT_ATTR_RELATIME),
	"norelatime":    atime(unix.MOUNT_ATTR_STRICTATIME),
	"strictatime":   atime(unix.MOUNT_ATTR_STRICTATIME),
	"nostrictatime": atime(unix.MOUNT_ATTR_RELATIME),

	"sync":     {kind: optSB},
	"dirsync":  {kind: optSB},
	"mand":     {kind: optSB},
	"async":    {kind: optNoop},
	"nomand":   {kind: optNoop},
	"defaults": {kind: optNoop},

	"bind":    {kind: optBind},
	"rbind":   {kind: optBind, rec: true},
	"remount": {kind: optRemount},

	"private":     {kind: optProp, prop: unix.MS_PRIVATE},
	"rprivate":    {kind: optProp, prop: unix.MS_PRIVATE, rec: true},
	"shared":      {kind: optProp, prop: unix.MS_SHARED},
	"rshared":     {kind: optProp, prop: unix.MS_SHARED, rec: true},
	"slave":       {kind: optProp, prop: unix.MS_SLAVE},
	"rslave":      {kind: optProp, prop: unix.MS_SLAVE, rec: true},
	"unbindable":  {kind: optProp, prop: unix.MS_UNBINDABLE},
	"runbindable": {kind: optProp, prop: unix.MS_UNBINDABLE, rec: true},

	"tmpcopyup": {kind: optRefused, why: "tmpcopyup is not supported (copy the content into the image, or bind it)"},
	"idmap":     {kind: optRefused, why: "id-mapped mounts are not supported"},
	"ridmap":    {kind: optRefused, why: "id-mapped mounts are not supported"},
}

// recursiveAttrs are the "r" forms of the per-mount attributes (rro, rnosuid, …), applied
// with mount_setattr(AT_RECURSIVE) to the mount and everything below it.
var recursiveAttrs = map[string]string{
	"rro": "ro", "rrw": "rw",
	"rnosuid": "nosuid", "rsuid": "suid",
	"rnodev": "nodev", "rdev": "dev",
	"rnoexec": "noexec", "rexec": "exec",
	"rnodiratime": "nodiratime", "rdiratime": "diratime",
	"rnoatime": "noatime", "ratime": "atime",
	"rrelatime": "relatime", "rnorelatime": "norelatime",
	"rstrictatime": "strictatime", "rnostrictatime": "nostrictatime",
	"rnosymfollow": "nosymfollow", "rsymfollow": "symfollow",
}

// parseOptions parses a spec mount's options. isBind says whether the mount is a bind mount
// by its type ("bind"); the options can make it one too. An option kerr does not know is
// data for a filesystem and an error for a bind mount.
func parseOptions(opts []string, isBind bool) (mountOptions, error) {
	var mo mountOptions
	mo.bind = isBind
	for _, o := range opts {
		if o == "" {
			return mo, fmt.Errorf("empty option")
		}
		if base, ok := recursiveAttrs[o]; ok {
			s := options[base]
			mo.rattrs.add(s.set, s.clr)
			continue
		}
		s, known := options[o]
		if !known {
			if err := checkData(o); err != nil {
				return mo, err
			}
			mo.data = append(mo.data, o)
			continue
		}
		switch s.kind {
		case optAttr:
			mo.attrs.add(s.set, s.clr)
		case optSB:
			mo.attrs.add(s.set, s.clr)
			mo.sbFlags = append(mo.sbFlags, o)
		case optProp:
			mo.propagation, mo.propRecursive = s.prop, s.rec
		case optBind:
			mo.bind = true
			mo.recursive = mo.recursive || s.rec
		case optRemount:
			mo.remount = true
		case optNoop:
		case optRefused:
			return mo, fmt.Errorf("option %q: %s", o, s.why)
		}
	}
	if mo.bind {
		// Filesystem options mean nothing to a bind mount; the kernel ignores them and so do
		// runc and crun (configs carry e.g. "mode=755" on binds): dropped here too.
		mo.data = nil
		// ro and rw of a bind mount are per-mount attributes only; the other superblock
		// options would have to change the source's filesystem, which a bind cannot do.
		for _, f := range mo.sbFlags {
			if f != "ro" && f != "rw" {
				return mo, fmt.Errorf("option %q changes the filesystem, which a bind mount cannot do", f)
			}
		}
		mo.sbFlags = nil
	}
	return mo, nil
}

// checkData refuses filesystem options that cannot be passed on as one fsconfig(2) key and
// value: a comma would split it in the kernel's legacy option parser.
func checkData(o string) error {
	if strings.ContainsRune(o, ',') {
		return fmt.Errorf("option %q contains a comma (give each option as its own list entry)", o)
	}
	if strings.HasPrefix(o, "=") {
		return fmt.Errorf("option %q has no name", o)
	}
	for _, r := range o {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("option %q contains a control character", o)
		}
	}
	return nil
}

// propagationFlags maps linux.rootfsPropagation values.
var propagationFlags = map[string]struct {
	prop uint64
	rec  bool
}{
	"shared": {unix.MS_SHARED, false}, "rshared": {unix.MS_SHARED, true},
	"slave": {unix.MS_SLAVE, false}, "rslave": {unix.MS_SLAVE, true},
	"private": {unix.MS_PRIVATE, false}, "rprivate": {unix.MS_PRIVATE, true},
	"unbindable": {unix.MS_UNBINDABLE, false}, "runbindable": {unix.MS_UNBINDABLE, true},
}

// KnownOptions lists the mount options kerr understands (refused ones left out), sorted:
// what `features` reports.
func KnownOptions() []string {
	var out []string
	for name, o := range options {
		if o.kind != optRefused {
			out = append(out, name)
		}
	}
	for name := range recursiveAttrs {
		out = append(out, name)
	}
	for name := range propagationFlags {
		out = append(out, name)
	}
	sort.Strings(out)
	return slices.Compact(out)
}
