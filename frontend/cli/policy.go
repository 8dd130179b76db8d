package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
	"github.com/kerr-hpc/kerr/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:         "policy",
		Usage:        "check the admin policy (" + buildcfg.PolicyFile() + ") and explain its decisions",
		OnUsageError: usageError,
		Action:       groupAction,
		Subcommands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "validate a policy file and print the effective policy",
				ArgsUsage: "[FILE]",
				Description: `Without FILE, checks the installed policy as the starter does: the file must be
owned by root, not writable by group or others, and not a symlink (exit 5 otherwise).
With FILE, checks a draft: ownership problems are warnings. A missing file exits 4, an
invalid one 2, with FILE:LINE and the key.`,
				OnUsageError: usageError,
				Action:       policyCheck,
			},
			{
				Name:      "explain",
				Usage:     "say whether the policy allows a run, and if not which key denies it",
				ArgsUsage: "IMAGE",
				Description: `Decides as the starter will: may user U (default: you) run IMAGE (a SIF file or a
sandbox directory) with these binds, namespaces and capabilities? Prints "allowed" and
what the user gets (how the image is mounted, binds, namespaces and capabilities, and
which namespaces and capabilities the user may ask for), exit 0; or one line on stderr
naming the first denying key and where the policy file sets it, exit 5. Root is never
denied. Symlinks in IMAGE and bind sources are resolved first, as the starter does.
Flags go before IMAGE; --bind, --ns and --cap repeat or take comma lists. A missing
image or bind source exits 4, a file that is not a SIF 7, a bad flag 2. The policy is
read like 'kerr policy check' reads it: the installed file strictly, --policy FILE as a
draft.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "policy", Value: buildcfg.PolicyFile(), Usage: "the policy `FILE` to decide with"},
					&cli.StringFlag{Name: "user", Usage: "decide for user `U` (a name or uid; default: you), with the groups of its passwd and group entries"},
					&cli.StringSliceFlag{Name: "bind", Aliases: []string{"B"}, Usage: "a user bind `SPEC`: SRC[:DST[:ro|rw]]"},
					&cli.StringSliceFlag{Name: "ns", Usage: "ask for namespace `NAME`: pid, ipc, uts, net, cgroup"},
					&cli.StringSliceFlag{Name: "cap", Usage: "ask for capability `CAP` (CAP_NET_RAW or net_raw)"},
					&cli.StringFlag{Name: "mode", Value: string(policy.ModeSetuid), Usage: "run through the setuid starter (`MODE` setuid) or in a user namespace (userns)"},
				},
				OnUsageError: usageError,
				Action:       policyExplain,
			},
		},
	}
}

func policyCheck(c *cli.Context) error {
	if err := needArgs(c, 0, 1, "[FILE]"); err != nil {
		return err
	}
	path := buildcfg.PolicyFile()
	installed := true
	if c.NArg() == 1 {
		path, installed = c.Args().First(), c.Args().First() == buildcfg.PolicyFile()
	}
	var (
		p   *policy.Policy
		err error
	)
	if installed {
		p, err = policy.Load(path)
	} else {
		var warnings []string
		p, warnings, err = policy.LoadDraft(path)
		for _, w := range warnings {
			globalsOf(c).warnf("%s", w)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: ok\n", path)
	return toml.NewEncoder(c.App.Writer).Encode(p)
}

// policyExplain is `kerr policy explain`: it builds the policy.Request the starter would
// build for a run and prints policy.Decide's answer. Privileges: the caller's; it only
// reads the policy, stats the image and resolves paths.
func policyExplain(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "[flags] IMAGE"); err != nil {
		return err
	}
	p, data, err := readPolicy(c, c.String("policy"))
	if err != nil {
		return err
	}
	req, err := explainRequest(c.String("user"), c.String("mode"), c.StringSlice("bind"), c.StringSlice("ns"),
		c.StringSlice("cap"), c.Args().First())
	if err != nil {
		return err
	}
	d, err := p.Decide(req)
	var den *policy.Denial
	if errors.As(err, &den) && data != nil {
		den.Locate(c.String("policy"), data)
	}
	if err != nil {
		return err
	}
	printDecision(c.App.Writer, p, req, d)
	return nil
}

// readPolicy loads path as `policy check` does (the installed file strictly, another as a
// draft with warnings) and returns its bytes too, for the line of a denying key; nil bytes
// when they cannot be read again (the decision stands, only the line is missing).
func readPolicy(c *cli.Context, path string) (*policy.Policy, []byte, error) {
	var (
		p   *policy.Policy
		err error
	)
	if path == buildcfg.PolicyFile() {
		p, err = policy.Load(path)
	} else {
		var warnings []string
		p, warnings, err = policy.LoadDraft(path)
		for _, w := range warnings {
			globalsOf(c).warnf("%s", w)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return p, nil, nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, policy.MaxFileSize))
	if err != nil {
		return p, nil, nil
	}
	return p, data, nil
}

// explainRequest resolves the flags of `policy explain` into a Request: the user and its
// groups, the image's path, format, owner and mode, the bind sources (symlinks resolved).
func explainRequest(userSpec, mode string, binds, namespaces, caps []string, image string) (*policy.Request, error) {
	req := &policy.Request{Mode: policy.Mode(mode)}
	if req.Mode != policy.ModeSetuid && req.Mode != policy.ModeUserNS {
		return nil, fmt.Errorf("--mode %q: want %q or %q: %w", mode, policy.ModeSetuid, policy.ModeUserNS, errdefs.ErrUsage)
	}
	var err error
	if req.Caller, err = lookupCaller(userSpec); err != nil {
		return nil, err
	}
	if req.Image, err = statImage(image); err != nil {
		return nil, err
	}
	for _, b := range binds {
		bind, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		req.Binds = append(req.Binds, bind)
	}
	for _, ns := range namespaces {
		req.Namespaces = append(req.Namespaces, strings.ToLower(strings.TrimSpace(ns)))
	}
	for _, cp := range caps {
		cp = strings.ToUpper(strings.TrimSpace(cp))
		if !strings.HasPrefix(cp, "CAP_") {
			cp = "CAP_" + cp
		}
		req.Capabilities = append(req.Capabilities, cp)
	}
	return req, nil
}

// lookupCaller is the caller of `policy explain` (spec ""), with its real uid, gid and
// groups, or the user spec names (a name or a uid) with the groups of its passwd and
// group entries.
func lookupCaller(spec string) (policy.Caller, error) {
	var (
		c    policy.Caller
		gids []string
	)
	if spec == "" {
		c.UID, c.GID = uint32(os.Getuid()), uint32(os.Getgid())
		if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
			c.Name = u.Username
		}
		groups, err := os.Getgroups()
		if err != nil {
			return c, fmt.Errorf("your groups: %w", err)
		}
		gids = append(gids, strconv.FormatUint(uint64(c.GID), 10))
		for _, g := range groups {
			gids = append(gids, strconv.Itoa(g))
		}
	} else {
		u, err := lookupUser(spec)
		if err != nil {
			return c, err
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return c, fmt.Errorf("--user %s: uid %q or gid %q is not a number", spec, u.Uid, u.Gid)
		}
		c.UID, c.GID, c.Name = uint32(uid), uint32(gid), u.Username
		if gids, err = u.GroupIds(); err != nil {
			return c, fmt.Errorf("--user %s: groups: %w", spec, err)
		}
		gids = append([]string{u.Gid}, gids...)
	}
	seen := map[uint32]bool{}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil || seen[uint32(n)] {
			continue
		}
		seen[uint32(n)] = true
		c.GIDs = append(c.GIDs, uint32(n))
		if grp, err := user.LookupGroupId(g); err == nil {
			c.Groups = append(c.Groups, grp.Name)
		}
	}
	return c, nil
}

// lookupUser finds a user by name, or by uid when spec is a number.
func lookupUser(spec string) (*user.User, error) {
	var (
		u   *user.User
		err error
	)
	if _, perr := strconv.ParseUint(spec, 10, 32); perr == nil {
		u, err = user.LookupId(spec)
	} else {
		u, err = user.Lookup(spec)
	}
	var unknownName user.UnknownUserError
	var unknownID user.UnknownUserIdError
	switch {
	case errors.As(err, &unknownName) || errors.As(err, &unknownID):
		return nil, fmt.Errorf("--user %s: no such user: %w", spec, errdefs.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("--user %s: %w", spec, err)
	}
	return u, nil
}

// resolve makes path absolute and resolves its symlinks, as the starter does before the
// policy sees a path.
func resolve(what, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s %s: no such file or directory: %w", what, path, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, path, err)
	}
	return resolved, nil
}

// statImage describes the image at path: a directory is a sandbox, a regular file must be
// a SIF.
func statImage(path string) (policy.Image, error) {
	resolved, err := resolve("image", path)
	if err != nil {
		return policy.Image{}, err
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return policy.Image{}, fmt.Errorf("image %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return policy.Image{}, fmt.Errorf("image %s: no owner in its stat", path)
	}
	img := policy.Image{Path: resolved, UID: st.Uid, GID: st.Gid, Perm: st.Mode & 0o7777}
	switch {
	case fi.IsDir():
		img.Format = policy.FormatSandbox
	case fi.Mode().IsRegular():
		sif, err := sifimage.Open(resolved)
		if err != nil {
			return policy.Image{}, err
		}
		sif.Close()
		img.Format = policy.FormatSIF
	default:
		return policy.Image{}, fmt.Errorf("image %s is neither a SIF file nor a sandbox directory: %w", path, errdefs.ErrInvalidImage)
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
		img.Owner = u.Username
	}
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10)); err == nil {
		img.Group = g.Name
	}
	return img, nil
}

// parseBind reads SRC[:DST[:ro|rw]] and resolves SRC.
func parseBind(spec string) (policy.Bind, error) {
	parts := strings.Split(spec, ":")
	if len(parts) > 3 || parts[0] == "" {
		return policy.Bind{}, fmt.Errorf("--bind %q: want SRC[:DST[:ro|rw]]: %w", spec, errdefs.ErrUsage)
	}
	var b policy.Bind
	if len(parts) > 1 && parts[1] != "" {
		if !filepath.IsAbs(parts[1]) {
			return policy.Bind{}, fmt.Errorf("--bind %q: destination %q is not an absolute path: %w", spec, parts[1], errdefs.ErrUsage)
		}
		b.Dest = filepath.Clean(parts[1])
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return policy.Bind{}, fmt.Errorf("--bind %q: option %q is not ro or rw: %w", spec, parts[2], errdefs.ErrUsage)
		}
	}
	src, err := resolve("bind", parts[0])
	if err != nil {
		return policy.Bind{}, err
	}
	b.Source = src
	return b, nil
}

// printDecision writes an allowed request's summary.
func printDecision(w io.Writer, p *policy.Policy, req *policy.Request, d *policy.Decision) {
	c := &req.Caller
	fmt.Fprintf(w, "allowed: %s may run %s in %s mode\n", c.String(), req.Image.Path, req.Mode)
	groups := make([]string, len(c.GIDs))
	for i, g := range c.GIDs {
		groups[i] = strconv.FormatUint(uint64(g), 10)
		if i < len(c.Groups) && len(c.Groups) == len(c.GIDs) {
			groups[i] = c.Groups[i] + " (" + groups[i] + ")"
		}
	}
	fmt.Fprintf(w, "  groups:       %s\n", orNone(groups))
	img := &req.Image
	fmt.Fprintf(w, "  image:        %s, owner %s, group %s, mode %04o", img.Format,
		nameOr(img.Owner, img.UID), nameOr(img.Group, img.GID), img.Perm)
	switch d.Squashfs {
	case policy.SquashfsKernel:
		fmt.Fprint(w, ", mounted with the kernel's squashfs")
	case policy.SquashfsFUSE:
		fmt.Fprint(w, ", mounted with squashfuse")
	}
	fmt.Fprintln(w)
	binds := make([]string, len(req.Binds))
	for i, b := range req.Binds {
		dst, opt := b.Dest, "rw"
		if dst == "" {
			dst = b.Source
		}
		if b.ReadOnly {
			opt = "ro"
		}
		binds[i] = fmt.Sprintf("%s -> %s (%s)", b.Source, dst, opt)
	}
	fmt.Fprintf(w, "  binds:        %s\n", orNone(binds))
	nsMay, capMay := orNone(p.GrantedNamespaces(c)), orNone(p.GrantedCapabilities(c))
	if c.Root() {
		nsMay, capMay = "any (root)", "any (root)"
	}
	fmt.Fprintf(w, "  namespaces:   %s; may ask for %s\n", orNone(req.Namespaces), nsMay)
	fmt.Fprintf(w, "  capabilities: %s; may ask for %s\n", orNone(d.Capabilities), capMay)
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, ", ")
}

func nameOr(name string, id uint32) string {
	if name == "" {
		return strconv.FormatUint(uint64(id), 10)
	}
	return name
}
