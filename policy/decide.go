package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kerr-hpc/kerr/errdefs"
)

// This file holds the policy's decisions: may this caller run this image, with these binds,
// namespaces and capabilities? The functions are pure: the caller of Decide looks up users
// and groups, resolves symlinks and stats the image; nothing here touches the system, so
// the starter's stage 1 (the authority), the frontend (early errors) and `kerr policy
// explain` get the same answer from the same Request.
//
// Root (uid 0, whatever its name) is never denied: the access lists, the image limits, the
// bind lists and user_binds, the namespace and capability limits are all for non-root
// callers, as the policy file says. What applies to root is the mount method (a SIF of
// root's is mounted with the kernel's squashfs driver in setuid mode, whatever
// kernel_squashfs says) and capabilities.root_keeps. A malformed Request (relative paths,
// unknown names) is refused for root too.

// Mode is how the starter gets the privileges a run needs.
type Mode string

// Modes of a Request.
const (
	// ModeSetuid: a privileged starter, starter-suid for a non-root caller (or the plain
	// starter run by root), mounts the image in the host's user namespace.
	ModeSetuid Mode = "setuid"
	// ModeUserNS: the unprivileged starter in a new user namespace.
	ModeUserNS Mode = "userns"
)

// Image formats of Image.Format, as in images.formats.
const (
	FormatSIF     = "sif"
	FormatSandbox = "sandbox"
)

// Caller is who asks. Every field is resolved by whoever builds the Request.
type Caller struct {
	UID  uint32
	Name string // user name; "" when the uid has no passwd entry (then only numeric entries match)
	GID  uint32 // primary group
	// GIDs and Groups are the caller's groups (ids, and the names of those that have one);
	// the primary group counts whether listed here or not.
	GIDs   []uint32
	Groups []string
}

// Root reports whether the caller is root (uid 0).
func (c *Caller) Root() bool { return c.UID == 0 }

// String is "alice (uid 1000)", or "uid 1000" without a name.
func (c *Caller) String() string {
	if c.Name == "" {
		return fmt.Sprintf("uid %d", c.UID)
	}
	return fmt.Sprintf("%s (uid %d)", c.Name, c.UID)
}

// Image is the image to run, as found on the host after symlinks were resolved.
type Image struct {
	Path   string // absolute path, symlinks resolved (Decide cleans it lexically, no more)
	Format string // FormatSIF or FormatSandbox
	UID    uint32 // owner
	Owner  string // owner's name, "" when the uid has none
	GID    uint32 // group
	Group  string // group's name, "" when the gid has none
	Perm   uint32 // permission bits (st_mode & 07777)
}

// Bind is one user bind (--bind SRC[:DST[:ro]]).
type Bind struct {
	Source   string // absolute host path, symlinks resolved (Decide cleans it lexically, no more)
	Dest     string // absolute path in the container; "" means Source
	ReadOnly bool
}

// Request is everything a run asks for, resolved.
type Request struct {
	Caller       Caller
	Mode         Mode
	Image        Image
	Binds        []Bind
	Namespaces   []string // "pid", "ipc", "uts", "net", "cgroup"
	Capabilities []string // CAP_* names
}

// Squashfs is how a SIF's squashfs root filesystem is mounted.
type Squashfs string

// Values of Decision.Squashfs.
const (
	SquashfsNone   Squashfs = ""           // a sandbox: nothing to mount
	SquashfsKernel Squashfs = "kernel"     // the kernel's squashfs driver on a loop device
	SquashfsFUSE   Squashfs = "squashfuse" // squashfuse, outside the kernel
)

// Decision is what an allowed Request gets.
type Decision struct {
	// Squashfs: how the image is mounted (images.kernel_squashfs).
	Squashfs Squashfs
	// Capabilities the payload keeps, in capability-number order: for root,
	// capabilities.root_keeps plus what it asked for; for anyone else, what it asked for
	// (each one granted, or Decide would have denied it).
	Capabilities []string
}

// Denial is a request the policy refuses: the policy key that refuses it, the item refused
// and why. It wraps errdefs.ErrDenied (exit code 5). Locate adds where the key is set.
type Denial struct {
	Key     string // dotted policy key: "mounts.user_bind_deny"
	Subject string // what was refused, as the message starts: "bind /etc/shadow"
	Item    string // the refused item alone: "/etc/shadow", "net", "CAP_NET_RAW", a user name
	Reason  string // the words in parentheses after the key: `"/etc/shadow"`, `false`
	File    string // the policy file, when Locate was called
	Line    int    // the key's line in File; 0 when the file does not set it (its default applies)
}

// Error is one line: `bind /etc/shadow: denied by mounts.user_bind_deny ("/etc/shadow")`,
// followed, once located, by ` at FILE:LINE` or ` (the default: FILE does not set it)`.
func (d *Denial) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: denied by %s", d.Subject, d.Key)
	if d.Reason != "" {
		fmt.Fprintf(&b, " (%s)", d.Reason)
	}
	switch {
	case d.File != "" && d.Line > 0:
		fmt.Fprintf(&b, " at %s:%d", d.File, d.Line)
	case d.File != "":
		fmt.Fprintf(&b, " (the default: %s does not set it)", d.File)
	}
	return b.String()
}

// Unwrap makes a Denial errors.Is errdefs.ErrDenied.
func (d *Denial) Unwrap() error { return errdefs.ErrDenied }

// Locate records where the denying key is set, given the policy file's name and the bytes
// it was parsed from. A key the file does not set is recorded as its default (Line 0).
func (d *Denial) Locate(file string, data []byte) {
	d.File, d.Line = file, keyLines(data)[d.Key]
}

// Decide checks req against every rule and returns what it gets, or the first rule that
// refuses it as a *Denial. The rules, in the order they are checked (each one for non-root
// callers only):
//
//  1. access.allow_setuid (ModeSetuid) or access.allow_user_namespaces (ModeUserNS) is true;
//  2. access.users, access.groups: when either is non-empty, the caller is listed (by name or
//     uid) or is a member of a listed group (by name or gid) — key "access.users", or
//     "access.groups" when only that one is set;
//  3. images.formats holds the image's format;
//  4. images.limit_owners, when non-empty, holds the image's owner (name or uid);
//  5. images.limit_groups, when non-empty, holds the image's group (name or gid);
//  6. images.limit_paths, when non-empty: the image is one of these paths or beneath one;
//  7. for each bind: mounts.user_binds is true; the source is not one of
//     mounts.user_bind_deny, nor beneath one, nor above one; when mounts.user_bind_allow is
//     non-empty, the source is one of those paths or beneath one;
//  8. each namespace is in namespaces.allow or in a namespaces.grant that names the caller or
//     one of its groups — key "namespaces.allow";
//  9. each capability is in a capabilities.grant that names the caller or one of its groups
//     — key "capabilities.grant".
//
// Each limit list is a limit of its own: an image must pass every non-empty one. Paths are
// compared component by component on cleaned paths: /etc/shadowfoo is not beneath
// /etc/shadow. A malformed request (unknown mode, format, namespace or capability; a relative
// path) is refused first, for root too, with an error wrapping errdefs.ErrUsage.
//
// Privileges: none needed; it only reads p and req.
func (p *Policy) Decide(req *Request) (*Decision, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	if err := p.CheckAccess(&req.Caller, req.Mode); err != nil {
		return nil, err
	}
	if err := p.CheckImage(&req.Caller, &req.Image); err != nil {
		return nil, err
	}
	for i := range req.Binds {
		if err := p.CheckBind(&req.Caller, &req.Binds[i]); err != nil {
			return nil, err
		}
	}
	for _, ns := range req.Namespaces {
		if err := p.CheckNamespace(&req.Caller, ns); err != nil {
			return nil, err
		}
	}
	for _, c := range req.Capabilities {
		if err := p.CheckCapability(&req.Caller, c); err != nil {
			return nil, err
		}
	}
	d := &Decision{Squashfs: p.SquashfsFor(&req.Caller, req.Mode, &req.Image)}
	want := req.Capabilities
	if req.Caller.Root() {
		want = append(slices.Clone(p.Capabilities.RootKeeps), want...)
	}
	d.Capabilities = inOrder(capabilityNames, want)
	return d, nil
}

// validate refuses a malformed request: what no policy can allow because it means nothing.
func (r *Request) validate() error {
	if r.Mode != ModeSetuid && r.Mode != ModeUserNS {
		return fmt.Errorf("request: mode %q is not %q or %q: %w", r.Mode, ModeSetuid, ModeUserNS, errdefs.ErrUsage)
	}
	if !filepath.IsAbs(r.Image.Path) {
		return fmt.Errorf("request: image path %q is not absolute: %w", r.Image.Path, errdefs.ErrUsage)
	}
	if !slices.Contains(formats, r.Image.Format) {
		return fmt.Errorf("request: image format %q is not one of %s: %w", r.Image.Format, quoteList(formats), errdefs.ErrUsage)
	}
	for _, b := range r.Binds {
		if !filepath.IsAbs(b.Source) {
			return fmt.Errorf("request: bind source %q is not absolute: %w", b.Source, errdefs.ErrUsage)
		}
		if b.Dest != "" && !filepath.IsAbs(b.Dest) {
			return fmt.Errorf("request: bind destination %q is not absolute: %w", b.Dest, errdefs.ErrUsage)
		}
	}
	for _, ns := range r.Namespaces {
		if !slices.Contains(namespaceNames, ns) {
			return fmt.Errorf("request: namespace %q is not one of %s: %w", ns, quoteList(namespaceNames), errdefs.ErrUsage)
		}
	}
	for _, c := range r.Capabilities {
		if !slices.Contains(capabilityNames, c) {
			return fmt.Errorf("request: %q is not a capability name (CAP_…): %w", c, errdefs.ErrUsage)
		}
	}
	return nil
}

// CheckAccess applies access.allow_setuid, access.allow_user_namespaces, access.users and
// access.groups (rules 1 and 2 of Decide). Root passes. mode must be valid.
func (p *Policy) CheckAccess(c *Caller, mode Mode) error {
	if c.Root() {
		return nil
	}
	switch {
	case mode == ModeSetuid && !p.Access.AllowSetuid:
		return &Denial{Key: "access.allow_setuid", Subject: "setuid run for " + c.String(), Item: string(mode), Reason: "false"}
	case mode == ModeUserNS && !p.Access.AllowUserNamespaces:
		return &Denial{Key: "access.allow_user_namespaces", Subject: "user namespace run for " + c.String(), Item: string(mode), Reason: "false"}
	}
	users, groups := p.Access.Users, p.Access.Groups
	if len(users) == 0 && len(groups) == 0 {
		return nil
	}
	if c.isUser(users) || c.inGroup(groups) {
		return nil
	}
	d := &Denial{Subject: "user " + c.String(), Item: c.Name}
	if d.Item == "" {
		d.Item = strconv.FormatUint(uint64(c.UID), 10)
	}
	switch {
	case len(groups) == 0:
		d.Key, d.Reason = "access.users", "not listed"
	case len(users) == 0:
		d.Key, d.Reason = "access.groups", "in none of "+quoteList(groups)
	default:
		d.Key, d.Reason = "access.users", "not listed, and in none of access.groups"
	}
	return d
}

// CheckImage applies images.formats, images.limit_owners, images.limit_groups and
// images.limit_paths (rules 3 to 6 of Decide). Root passes. img.Path must be absolute.
func (p *Policy) CheckImage(c *Caller, img *Image) error {
	if c.Root() {
		return nil
	}
	path := filepath.Clean(img.Path)
	subject := "image " + path
	if !slices.Contains(p.Images.Formats, img.Format) {
		reason := fmt.Sprintf("%s is not one of %s", img.Format, quoteList(p.Images.Formats))
		if len(p.Images.Formats) == 0 {
			reason = "no format allowed"
		}
		return &Denial{Key: "images.formats", Subject: subject, Item: img.Format, Reason: reason}
	}
	if l := p.Images.LimitOwners; len(l) > 0 && !matches(l, img.Owner, img.UID) {
		return &Denial{Key: "images.limit_owners", Subject: subject, Item: path,
			Reason: "owned by " + named(img.Owner, "uid", img.UID)}
	}
	if l := p.Images.LimitGroups; len(l) > 0 && !matches(l, img.Group, img.GID) {
		return &Denial{Key: "images.limit_groups", Subject: subject, Item: path,
			Reason: "group " + named(img.Group, "gid", img.GID)}
	}
	if l := p.Images.LimitPaths; len(l) > 0 && !underAny(path, l) {
		return &Denial{Key: "images.limit_paths", Subject: subject, Item: path,
			Reason: "not under " + quoteList(l)}
	}
	return nil
}

// CheckBind applies mounts.user_binds, mounts.user_bind_deny and mounts.user_bind_allow to
// one bind (rule 7 of Decide). Root passes. b.Source must be absolute.
func (p *Policy) CheckBind(c *Caller, b *Bind) error {
	if c.Root() {
		return nil
	}
	src := filepath.Clean(b.Source)
	subject := "bind " + src
	if !p.Mounts.UserBinds {
		return &Denial{Key: "mounts.user_binds", Subject: subject, Item: src, Reason: "false"}
	}
	for _, deny := range p.Mounts.UserBindDeny {
		deny = filepath.Clean(deny)
		switch {
		case beneath(src, deny):
			return &Denial{Key: "mounts.user_bind_deny", Subject: subject, Item: src, Reason: strconv.Quote(deny)}
		case beneath(deny, src):
			return &Denial{Key: "mounts.user_bind_deny", Subject: subject, Item: src,
				Reason: strconv.Quote(deny) + " lies beneath it"}
		}
	}
	if l := p.Mounts.UserBindAllow; len(l) > 0 && !underAny(src, l) {
		return &Denial{Key: "mounts.user_bind_allow", Subject: subject, Item: src, Reason: "not under " + quoteList(l)}
	}
	return nil
}

// CheckNamespace applies namespaces.allow and namespaces.grant to one namespace (rule 8 of
// Decide). Root passes.
func (p *Policy) CheckNamespace(c *Caller, ns string) error {
	if c.Root() || slices.Contains(p.GrantedNamespaces(c), ns) {
		return nil
	}
	return &Denial{Key: "namespaces.allow", Subject: "namespace " + ns, Item: ns,
		Reason: "not allowed to all, nor granted to " + c.String() + " by namespaces.grant"}
}

// CheckCapability applies capabilities.grant to one capability (rule 9 of Decide). Root
// passes.
func (p *Policy) CheckCapability(c *Caller, capName string) error {
	if c.Root() || slices.Contains(p.GrantedCapabilities(c), capName) {
		return nil
	}
	return &Denial{Key: "capabilities.grant", Subject: "capability " + capName, Item: capName,
		Reason: "not granted to " + c.String()}
}

// GrantedNamespaces is every namespace c may ask for, in the order pid, ipc, uts, net,
// cgroup: all of them for root; for anyone else namespaces.allow and every
// namespaces.grant that names c or one of its groups.
func (p *Policy) GrantedNamespaces(c *Caller) []string {
	if c.Root() {
		return slices.Clone(namespaceNames)
	}
	got := slices.Clone(p.Namespaces.Allow)
	for _, g := range p.Namespaces.Grant {
		if c.isUser(g.Users) || c.inGroup(g.Groups) {
			got = append(got, g.Namespaces...)
		}
	}
	return inOrder(namespaceNames, got)
}

// GrantedCapabilities is every capability c may ask for, in capability-number order: all of
// them for root; for anyone else those of every capabilities.grant that names c or one of
// its groups (none by default).
func (p *Policy) GrantedCapabilities(c *Caller) []string {
	if c.Root() {
		return slices.Clone(capabilityNames)
	}
	var got []string
	for _, g := range p.Capabilities.Grant {
		if c.isUser(g.Users) || c.inGroup(g.Groups) {
			got = append(got, g.Capabilities...)
		}
	}
	return inOrder(capabilityNames, got)
}

// SquashfsFor says how img is mounted (images.kernel_squashfs): nothing for a sandbox;
// squashfuse in a user namespace (the kernel's squashfs cannot be mounted there); the
// kernel's driver for root in setuid mode; for anyone else in setuid mode, the kernel's
// driver when kernel_squashfs is "always", or "root-owned" and the image is owned by root
// and not writable by group or others, squashfuse otherwise.
func (p *Policy) SquashfsFor(c *Caller, mode Mode, img *Image) Squashfs {
	switch {
	case img.Format != FormatSIF:
		return SquashfsNone
	case mode == ModeUserNS:
		return SquashfsFUSE
	case c.Root():
		return SquashfsKernel
	}
	switch p.Images.KernelSquashfs {
	case "always":
		return SquashfsKernel
	case "root-owned":
		if img.UID == 0 && img.Perm&0o022 == 0 {
			return SquashfsKernel
		}
	}
	return SquashfsFUSE
}

// isUser reports whether list names c, by name or by uid.
func (c *Caller) isUser(list []string) bool {
	return matches(list, c.Name, c.UID)
}

// inGroup reports whether list names one of c's groups, by name or by gid.
func (c *Caller) inGroup(list []string) bool {
	if len(list) == 0 {
		return false
	}
	if matches(list, "", c.GID) {
		return true
	}
	for _, gid := range c.GIDs {
		if matches(list, "", gid) {
			return true
		}
	}
	for _, g := range c.Groups {
		if g != "" && slices.Contains(list, g) {
			return true
		}
	}
	return false
}

// matches reports whether list holds name (when not "") or id in decimal.
func matches(list []string, name string, id uint32) bool {
	return (name != "" && slices.Contains(list, name)) || slices.Contains(list, strconv.FormatUint(uint64(id), 10))
}

// named is "alice (uid 1000)", or "uid 1000" without a name.
func named(name, kind string, id uint32) string {
	if name == "" {
		return fmt.Sprintf("%s %d", kind, id)
	}
	return fmt.Sprintf("%s (%s %d)", name, kind, id)
}

// beneath reports whether path is dir or lies beneath it. Both are cleaned: the comparison
// is by whole components, so /etc/shadowfoo is not beneath /etc/shadow.
func beneath(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// underAny reports whether path is one of dirs or beneath one.
func underAny(path string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return beneath(path, d) })
}

// inOrder returns the members of set that occur in v, once each, in set's order.
func inOrder(set, v []string) []string {
	out := []string{}
	for _, s := range set {
		if slices.Contains(v, s) {
			out = append(out, s)
		}
	}
	return out
}
