package native

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/policy"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	rpcnative "github.com/kerr-hpc/kerr/rpc/native"
	"github.com/kerr-hpc/kerr/rpc/procstat"
	"github.com/kerr-hpc/kerr/starter/oci/seccomp"
)

// stage1 turns the caller's request into a plan for stage 2, or refuses it. Everything the
// request names is opened here, as the caller, so that the kernel checks the caller's
// rights; the policy is loaded here from its compile-time path. Privileges: the caller's
// ids only (real, effective and saved); nothing here can take root back.
func (e Engine) stage1(env *envelope.Envelope) error {
	var req rpcnative.Config
	if err := envelope.DecodeConfig(env.Config, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w: %v", envelope.ErrInvalid, err)
	}
	pol, err := policy.Load(e.PolicyFile)
	if err != nil {
		return err
	}
	mode := policy.ModeSetuid
	if e.UserNS {
		mode = policy.ModeUserNS
	}
	b := &planBuilder{req: &req, pol: pol, mode: mode}
	defer b.closeAll()
	if err := b.build(e); err != nil {
		return err
	}
	data, err := encodePlan(env.ID, b.plan)
	if err != nil {
		return err
	}
	return sendPlan(e.Stage1FD, hpcPreamble(b.plan), data, b.files)
}

// planBuilder collects the plan and the files it names.
type planBuilder struct {
	req    *rpcnative.Config
	pol    *policy.Policy
	plan   *Plan
	files  []*os.File
	caller policy.Caller
	mode   policy.Mode
}

func (b *planBuilder) closeAll() {
	for _, f := range b.files {
		f.Close()
	}
}

// addFile keeps f to send and returns its index.
func (b *planBuilder) addFile(f *os.File) int {
	b.files = append(b.files, f)
	return len(b.files) - 1
}

func (b *planBuilder) build(e Engine) error {
	req, pol := b.req, b.pol
	c, err := currentCaller()
	if err != nil {
		return err
	}
	b.caller = policy.Caller{UID: c.UID, Name: c.Name, GID: c.GID, GIDs: c.Groups, Groups: groupNames(c.Groups)}
	if err := pol.CheckAccess(&b.caller, b.mode); err != nil {
		return err
	}
	if name, ok := strings.CutPrefix(req.Image, "instance://"); ok {
		return b.join(e, c, name)
	}
	p := &Plan{
		UserNS: b.mode == policy.ModeUserNS,
		Caller: c, Action: req.Action, Instance: req.Instance, Args: req.Args, Env: req.Env, EnvOverride: req.EnvOverride,
		Proc: pol.Mounts.Proc, Sys: pol.Mounts.Sys, Dev: pol.Mounts.Dev, Devpts: pol.Mounts.Devpts,
		Passwd: pol.Mounts.Passwd, Group: pol.Mounts.Group, ResolvConf: pol.Mounts.ResolvConf,
		SystemBinds: pol.Mounts.SystemBinds, WritableTmpfs: req.WritableTmpfs, Hostname: req.Hostname,
		NoNewPrivs: pol.Security.NoNewPrivs || c.UID != 0,
	}
	b.plan = p
	if p.SessionSize, err = policy.ParseSize(pol.Mounts.SessionSize); err != nil {
		return err
	}
	if p.TmpSize, err = policy.ParseSize(pol.Mounts.TmpSize); err != nil {
		return err
	}
	for _, m := range req.NoMount {
		switch m {
		case "proc":
			p.Proc = false
		case "sys":
			p.Sys = false
		case "dev":
			p.Dev = policy.DevNo
		case "devpts":
			p.Devpts = false
		case "home", "tmp", "cwd", "hostfs":
		default:
			p.SystemBinds = slices.DeleteFunc(p.SystemBinds, func(s string) bool { return s == m })
		}
	}
	img, err := b.openImage()
	if err != nil {
		return err
	}
	preq := &policy.Request{Caller: b.caller, Mode: b.mode, Image: img}
	for _, bind := range req.Binds {
		pb, err := b.openBind(bind.Source, bind.Dest, bind.ReadOnly, "bind")
		if err != nil {
			return err
		}
		preq.Binds = append(preq.Binds, policy.Bind{Source: pb.Source, Dest: pb.Dest, ReadOnly: pb.ReadOnly})
	}
	// --home SRC is a bind of the user's choosing too: the same rules apply to it.
	if req.HomeSource != "" {
		real, err := filepath.EvalSymlinks(req.HomeSource)
		if err != nil {
			return openErr("--home", req.HomeSource, err)
		}
		preq.Binds = append(preq.Binds, policy.Bind{Source: real, Dest: req.HomeDest})
	}
	userBinds := p.Binds
	p.Binds = nil
	p.Namespaces = slices.Clone(req.Namespaces)
	if req.ContainAll {
		for _, ns := range []string{rpcnative.NamespacePID, rpcnative.NamespaceIPC} {
			if !slices.Contains(p.Namespaces, ns) {
				p.Namespaces = append(p.Namespaces, ns)
			}
		}
	}
	// An instance has a pid namespace of its own: its init keeps it alive, and exec
	// instance:// joins it.
	if req.Action == rpcnative.ActionInstance && !slices.Contains(p.Namespaces, rpcnative.NamespacePID) {
		p.Namespaces = append(p.Namespaces, rpcnative.NamespacePID)
	}
	if req.Hostname != "" && !slices.Contains(p.Namespaces, rpcnative.NamespaceUTS) {
		p.Namespaces = append(p.Namespaces, rpcnative.NamespaceUTS)
	}
	preq.Namespaces = p.Namespaces
	preq.Capabilities = req.AddCaps
	dec, err := pol.Decide(preq)
	if err != nil {
		return err
	}
	p.Image.FUSE = dec.Squashfs == policy.SquashfsFUSE
	p.Capabilities = dec.Capabilities
	if req.Overlay != "" {
		if err := b.overlayDir(req.Overlay); err != nil {
			return err
		}
	}
	if pol.Mounts.Hostfs && !slices.Contains(req.NoMount, "hostfs") {
		b.hostfs()
	}
	if err := b.standardMounts(); err != nil {
		return err
	}
	p.Binds = append(p.Binds, userBinds...)
	return b.seccompProfiles(e)
}

// seccompProfiles puts the policy's seccomp profile and the caller's in the plan.
func (b *planBuilder) seccompProfiles(e Engine) error {
	path, user, err := b.seccomp(e)
	if err != nil {
		return err
	}
	b.plan.UserSeccomp = user
	if path == "" {
		return nil
	}
	data, err := readAdminFile(path)
	if err != nil {
		return fmt.Errorf("seccomp profile %s (security.seccomp_profile): %w", path, err)
	}
	b.plan.Seccomp, b.plan.SeccompPath = data, path
	return nil
}

// readAdminFile reads a file the admin controls: it must be root-owned and not writable by
// group or others, and not a symlink, as the policy file.
func readAdminFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a root-owned file that only root may write (uid %d, mode %04o): %w", st.Uid, st.Mode&0o7777, errdefs.ErrDenied)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProfile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxProfile {
		return nil, fmt.Errorf("over %d bytes", maxProfile)
	}
	return data, nil
}

// join plans an exec into the caller's running instance name: the record is the caller's
// own file, read as the caller; C checks the process it names before joining it.
func (b *planBuilder) join(e Engine, c Caller, name string) error {
	if err := b.pol.CheckAccess(&b.caller, b.mode); err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	rec, err := rpcnative.ReadInstance(rpcnative.InstanceDir(c.Home, host), name)
	if err != nil {
		return err
	}
	if rec.UID != int(c.UID) {
		return fmt.Errorf("instance %s is not yours: %w", name, errdefs.ErrDenied)
	}
	if st, err := procstat.StartTime(rec.PID); err != nil || st != rec.StartTime {
		return fmt.Errorf("instance %s is not running (its process %d has ended): %w", name, rec.PID, errdefs.ErrNotFound)
	}
	req := b.req
	b.plan = &Plan{
		UserNS: b.mode == policy.ModeUserNS,
		Caller: c, Action: req.Action, Args: req.Args, Env: req.Env, EnvOverride: req.EnvOverride,
		Image: PlanImage{Path: rec.Image}, Home: c.Home, Cwd: req.Cwd,
		NoNewPrivs: b.pol.Security.NoNewPrivs || c.UID != 0,
		Join:       &PlanJoin{PID: rec.PID, StartTime: rec.StartTime, Namespaces: rec.Namespaces, User: b.mode == policy.ModeUserNS},
	}
	if req.Pwd != "" {
		b.plan.Cwd = req.Pwd
	}
	return b.seccompProfiles(e)
}

// currentCaller is the caller as the kernel sees this process, with its passwd entry.
func currentCaller() (Caller, error) {
	c := Caller{UID: uint32(unix.Getuid()), GID: uint32(unix.Getgid())}
	gids, err := unix.Getgroups()
	if err != nil {
		return c, fmt.Errorf("getgroups: %w", err)
	}
	for _, g := range gids {
		c.Groups = append(c.Groups, uint32(g))
	}
	u, err := user.LookupId(strconv.Itoa(int(c.UID)))
	if err != nil {
		return c, fmt.Errorf("uid %d has no passwd entry (HPC mode needs one: the container gets it): %w", c.UID, errdefs.ErrDenied)
	}
	c.Name, c.Home, c.Gecos = u.Username, u.HomeDir, u.Name
	c.Shell = loginShell(c.Name)
	if g, err := user.LookupGroupId(strconv.Itoa(int(c.GID))); err == nil {
		c.GroupName = g.Name
	}
	return c, nil
}

// loginShell reads the caller's shell from /etc/passwd (os/user does not say it); empty
// when not found.
func loginShell(name string) string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}

func groupNames(gids []uint32) []string {
	var names []string
	for _, g := range gids {
		if gr, err := user.LookupGroupId(strconv.Itoa(int(g))); err == nil {
			names = append(names, gr.Name)
		}
	}
	return names
}

// realPath is the path the kernel resolved for an open fd.
func realPath(f *os.File) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", f.Name(), err)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("resolve %s: it is not reachable from the root (%s)", f.Name(), p)
	}
	return p, nil
}

func openErr(what, path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s %s: no such file or directory: %w", what, path, errdefs.ErrNotFound)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s %s: permission denied: %w", what, path, errdefs.ErrDenied)
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}

// openImage opens the image as the caller and says what it is.
func (b *planBuilder) openImage() (policy.Image, error) {
	path := b.req.Image
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return policy.Image{}, openErr("image", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	idx := b.addFile(f)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return policy.Image{}, fmt.Errorf("image %s: %w", path, err)
	}
	real, err := realPath(f)
	if err != nil {
		return policy.Image{}, err
	}
	img := policy.Image{Path: real, UID: st.Uid, GID: st.Gid, Perm: st.Mode & 0o7777}
	if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
		img.Owner = u.Username
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err == nil {
		img.Group = g.Name
	}
	pi := PlanImage{FD: idx, Path: real, SharedLoop: b.pol.Images.SharedLoopDevices, MaxLoop: b.pol.Images.MaxLoopDevices}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		img.Format, pi.Format = policy.FormatSandbox, policy.FormatSandbox
	case unix.S_IFREG:
		img.Format, pi.Format = policy.FormatSIF, policy.FormatSIF
		if err := unix.SetNonblock(fd, false); err != nil {
			return img, fmt.Errorf("image %s: %w", path, err)
		}
		si, err := sifimage.OpenFile(f)
		if err != nil {
			return img, err
		}
		d, err := si.RootFS()
		if err != nil {
			_ = si.UnloadContainer()
			return img, err
		}
		pi.Offset, pi.Size = d.Offset(), d.Size()
		_ = si.UnloadContainer()
		if pi.Size <= 0 {
			return img, fmt.Errorf("image %s: empty root filesystem: %w", path, errdefs.ErrInvalidImage)
		}
	default:
		return img, fmt.Errorf("image %s is neither a SIF file nor a directory: %w", path, errdefs.ErrInvalidImage)
	}
	b.plan.Image = pi
	return img, nil
}

// openBind opens a host path as the caller (O_PATH: it must be reachable, not readable) and
// adds it to the plan's binds.
func (b *planBuilder) openBind(src, dest string, ro bool, what string) (*PlanBind, error) {
	fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr(what+" source", src, err)
	}
	f := os.NewFile(uintptr(fd), src)
	idx := b.addFile(f)
	real, err := realPath(f)
	if err != nil {
		return nil, err
	}
	pb := PlanBind{FD: idx, Source: real, Dest: dest, ReadOnly: ro, What: what}
	if pb.Dest == "" {
		pb.Dest = src
	}
	b.plan.Binds = append(b.plan.Binds, pb)
	return &b.plan.Binds[len(b.plan.Binds)-1], nil
}

// overlayDir checks the caller's --overlay DIR: a directory of the caller's, where the
// changes go (DIR/upper) with fuse-overlayfs's work dir (DIR/work), both made here as the
// caller if missing. fuse-overlayfs, run as the caller, is the only thing that writes there:
// a user-writable overlay never meets a kernel filesystem driver as root (CVE-2023-30549).
func (b *planBuilder) overlayDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return openErr("--overlay", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != b.plan.Caller.UID {
		return fmt.Errorf("--overlay %s: want a directory of yours: %w", dir, errdefs.ErrDenied)
	}
	for _, sub := range []string{"upper", "work"} {
		p := filepath.Join(dir, sub)
		if err := unix.Mkdir(p, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return openErr("--overlay", p, err)
		}
		if err := unix.Lstat(p, &st); err != nil {
			return openErr("--overlay", p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != b.plan.Caller.UID {
			return fmt.Errorf("--overlay %s: %s is not a directory of yours: %w", dir, sub, errdefs.ErrDenied)
		}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return openErr("--overlay", dir, err)
	}
	// The path goes into fuse-overlayfs's option string, where these separate options.
	if strings.ContainsAny(real, ",:=\\") {
		return fmt.Errorf("--overlay %s: a path with ',', ':', '=' or '\\' cannot be given to fuse-overlayfs: %w", real, errdefs.ErrUsage)
	}
	b.plan.Overlay = real
	return nil
}

// systemDirs are where a cwd is not bound: they are the image's own.
var systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var"}

func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// standardMounts adds home, /tmp and the cwd as Singularity does, and decides where the
// payload starts.
func (b *planBuilder) standardMounts() error {
	req, p, pol := b.req, b.plan, b.pol
	contain := req.Contain || req.ContainAll
	home := p.Caller.Home
	homeSrc := home
	if req.HomeSource != "" {
		homeSrc, home = req.HomeSource, req.HomeDest
	}
	p.Home = home
	// /tmp and /var/tmp first: a home (or cwd) beneath them must not be hidden by them.
	tmpBound := false
	if pol.Mounts.Tmp && !slices.Contains(req.NoMount, "tmp") {
		for _, d := range []string{"/tmp", "/var/tmp"} {
			if contain {
				p.Tmpfs = append(p.Tmpfs, PlanTmpfs{Dest: d, Size: p.TmpSize, Mode: 0o1777})
				continue
			}
			if _, err := b.openBind(d, d, false, "tmp"); err != nil {
				return err
			}
			tmpBound = true
		}
	}
	homeBound := false
	switch {
	case req.NoHome || !pol.Mounts.Home || slices.Contains(req.NoMount, "home"):
	case contain && req.HomeSource == "":
		p.Tmpfs = append(p.Tmpfs, PlanTmpfs{Dest: home, Size: p.TmpSize, Mode: 0o700, Owned: true})
	case req.HomeSource != "":
		if _, err := b.openBind(homeSrc, home, false, "home"); err != nil {
			return err
		}
		homeBound = true
	default:
		// A passwd home that is missing (nobody's /nonexistent) or not the caller's to
		// reach is left out with a warning, as Apptainer does; --home is an error.
		if _, err := b.openBind(homeSrc, home, false, "home"); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("not binding your home: %v", errdefs.OneLine(err)))
		} else {
			homeBound = true
		}
	}
	cwd := req.Cwd
	p.Cwd = home
	switch {
	case req.Pwd != "":
		p.Cwd = req.Pwd
	case contain:
	case homeBound && under(cwd, home), tmpBound && (under(cwd, "/tmp") || under(cwd, "/var/tmp")):
		p.Cwd = cwd
	case slices.ContainsFunc(systemDirs, func(d string) bool { return cwd == d || (d != "/" && under(cwd, d) && !under(cwd, "/var/tmp")) }):
		// The image has its own: enter it there if it exists (stage 2 falls back to $HOME).
		p.Cwd = cwd
	case slices.Contains(req.NoMount, "cwd"):
		p.Cwd = cwd
	case b.cwdDenied(cwd):
		p.Warnings = append(p.Warnings, fmt.Sprintf("not binding the current directory %s: the policy's mounts.user_bind_deny covers it", cwd))
		p.Cwd = cwd
	default:
		if _, err := b.openBind(cwd, cwd, false, "cwd"); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("not binding the current directory: %v", errdefs.OneLine(err)))
		} else {
			p.Cwd = cwd
		}
	}
	return nil
}

// hostfs adds a bind of every host filesystem's mount point (mounts.hostfs), as the caller
// can reach it, except the kernel's own trees (/proc, /sys, /dev, /run) and the root, and
// what the policy's deny list covers. Those the caller cannot reach are left out.
func (b *planBuilder) hostfs() {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.plan.Warnings = append(b.plan.Warnings, fmt.Sprintf("mounts.hostfs: %v", err))
		return
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == "/" || seen[mp] || !filepath.IsAbs(mp) ||
			slices.ContainsFunc([]string{"/proc", "/sys", "/dev", "/run"}, func(d string) bool { return under(mp, d) }) {
			continue
		}
		seen[mp] = true
		if b.cwdDenied(mp) || len(b.files) >= maxPlanFiles {
			continue
		}
		if _, err := b.openBind(mp, mp, false, "hostfs"); err != nil {
			continue
		}
	}
}

// maxPlanFiles keeps room for the caller's own binds under the starter's limit of fds.
const maxPlanFiles = 48

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// cwdDenied says whether the admin's deny list covers the current directory: it is then
// not bound (the image's own, if any, is entered), as for any bind the user asks for.
func (b *planBuilder) cwdDenied(cwd string) bool {
	real, err := filepath.EvalSymlinks(cwd)
	if err != nil {
		return false // not reachable: openBind says so
	}
	var den *policy.Denial
	err = b.pol.CheckBind(&b.caller, &policy.Bind{Source: real})
	return errors.As(err, &den) && den.Key == "mounts.user_bind_deny"
}

// maxProfile bounds a seccomp profile read here.
const maxProfile = 4 << 20

// seccomp returns the policy's profile path and the caller's own profile, read and checked
// as the caller.
func (b *planBuilder) seccomp(e Engine) (string, json.RawMessage, error) {
	prof := ""
	switch sp := b.pol.Security.SeccompProfile; sp {
	case "none":
	case "default", "":
		prof = e.SeccompFile
	default:
		prof = sp
	}
	if b.req.Seccomp == "" {
		return prof, nil, nil
	}
	f, err := os.Open(b.req.Seccomp)
	if err != nil {
		return "", nil, openErr("seccomp profile", b.req.Seccomp, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfile+1))
	if err != nil {
		return "", nil, fmt.Errorf("seccomp profile %s: %w", b.req.Seccomp, err)
	}
	if len(data) > maxProfile {
		return "", nil, fmt.Errorf("seccomp profile %s is over %d bytes: %w", b.req.Seccomp, maxProfile, errdefs.ErrUsage)
	}
	var s specs.LinuxSeccomp
	if err := json.Unmarshal(data, &s); err != nil {
		return "", nil, fmt.Errorf("seccomp profile %s: %v: %w", b.req.Seccomp, err, errdefs.ErrUsage)
	}
	if err := seccomp.Validate(&s); err != nil {
		return "", nil, fmt.Errorf("seccomp profile %s: %v: %w", b.req.Seccomp, err, errdefs.ErrUsage)
	}
	return prof, data, nil
}

// HPC preamble (starter-c/starter.h): magic, mode, unshare flags, pid and start time of an
// instance to join, its namespaces to join.
const (
	hpcPlanMagic = "KERRHP1\n"
	hpcRun       = 0
	hpcInstance  = 1
)

// nsFlags maps namespace names to CLONE_NEW* flags; the mount namespace is always there.
func nsFlags(names []string) uint32 {
	flags := uint32(unix.CLONE_NEWNS)
	for _, ns := range names {
		switch ns {
		case rpcnative.NamespacePID:
			flags |= unix.CLONE_NEWPID
		case rpcnative.NamespaceIPC:
			flags |= unix.CLONE_NEWIPC
		case rpcnative.NamespaceUTS:
			flags |= unix.CLONE_NEWUTS
		case rpcnative.NamespaceNet:
			flags |= unix.CLONE_NEWNET
		}
	}
	return flags
}

// hpcPreamble is what C applies before stage 2: new namespaces, or those of the instance
// to join.
func hpcPreamble(p *Plan) []byte {
	b := []byte(hpcPlanMagic)
	mode := uint32(hpcRun)
	if p.Instance != "" {
		mode = hpcInstance
	}
	b = binary.NativeEndian.AppendUint32(b, mode)
	if p.Join != nil {
		b = binary.NativeEndian.AppendUint32(b, 0)
		b = binary.NativeEndian.AppendUint32(b, uint32(p.Join.PID))
		b = binary.NativeEndian.AppendUint64(b, p.Join.StartTime)
		flags := nsFlags(p.Join.Namespaces)
		if p.Join.User {
			flags |= unix.CLONE_NEWUSER
		}
		return binary.NativeEndian.AppendUint32(b, flags)
	}
	b = binary.NativeEndian.AppendUint32(b, nsFlags(p.Namespaces))
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint64(b, 0)
	return binary.NativeEndian.AppendUint32(b, 0)
}

// sendPlan sends the preamble and plan with the files on fd, then closes it: EOF tells
// stage 2 the plan is whole.
func sendPlan(fd int, preamble, data []byte, files []*os.File) error {
	if fd < 0 {
		return fmt.Errorf("stage 1 has no channel to stage 2")
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	msg := append(preamble, data...)
	n, err := unix.SendmsgN(fd, msg, unix.UnixRights(fds...), nil, 0)
	for err == nil && n < len(msg) {
		msg = msg[n:]
		n, err = unix.Write(fd, msg)
	}
	if err != nil {
		return fmt.Errorf("send the plan to stage 2: %w", err)
	}
	return unix.Close(fd)
}
