package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/hpcenv"
	"github.com/kerr-hpc/kerr/frontend/launch"
	"github.com/kerr-hpc/kerr/policy"
	"github.com/kerr-hpc/kerr/rpc/native"
)

// This file is HPC mode's command line: `kerr exec`, `kerr run` and `kerr shell`. Each
// builds an rpc/native.Config from its flags and the caller's environment, checks what it
// can early (the image, bind sources, the admin's policy), and then becomes the starter
// (launch.Exec): the payload keeps kerr's pid, parent, cgroup and stdio, and kerr's exit
// status is the payload's. The starter checks everything again as the authority.
// Privileges: the caller's.

// execHPC hands a checked request to the starter; it returns only on failure. Tests replace
// it to see the request.
var execHPC = func(id string, cfg *native.Config) error {
	bin, err := launch.StarterFor(cfg.UserNS)
	if err != nil {
		return err
	}
	data, err := launch.NativeConfig(id, cfg)
	if err != nil {
		return err
	}
	return launch.Exec(bin, data)
}

// hpcFlagsHelp ends each command's description: what the flags share.
const hpcFlagsHelp = `
Flags go before IMAGE: everything after IMAGE belongs to the container ('kerr exec img.sif
ls -l' runs ls -l); a '--' right after IMAGE is dropped. IMAGE is a SIF file or a sandbox
directory, or instance://NAME to run in a running instance of yours ('kerr instance').
Relative paths in IMAGE, --bind
sources, --home, --overlay, --pwd, --env-file and seccomp profiles are taken from the
current directory. --bind and --no-mount repeat or take comma lists; binds may also come
from KERR_BIND (or APPTAINER_BIND, SINGULARITY_BINDPATH, ...), before --bind's; --env repeats, and
'--env A=1,B=2' sets two variables (a comma followed by something that is not NAME= stays in
the value).

Defaults, as in Singularity and Apptainer: you are yourself inside (uid, gids and groups,
with your passwd and group entries); your home, the current directory and /tmp are bound;
the host's network, pid, ipc and uts namespaces are kept; the image's /.singularity.d
environment scripts and runscript apply. The environment passes through except HOME, PATH,
LD_LIBRARY_PATH and KERR_*/APPTAINER_*/SINGULARITY_* settings; the image's environment wins
over it. KERRENV_X=v (or APPTAINERENV_X, SINGULARITYENV_X; KERRENV_ wins), a line X=v of
--env-file, and --env X=v (each winning over the one before) set X and win over the image's.

Exit status: the payload's own (128+N when it is killed by signal N); kerr becomes the
container's starter, so the scheduler's signals reach it directly, and no terminal is
needed. Before the container starts: 2 usage, 4 a missing image, bind source or file, 5
denied by the policy (` + "`kerr policy explain`" + ` says why) or a starter-suid that is not
setuid root, 7 not a SIF file or a directory.`

func hpcFlags() []cli.Flag {
	return []cli.Flag{
		&mixableFlag{short: "B", GenericFlag: &cli.GenericFlag{Name: "bind", Value: &listFlag{commas: true},
			Usage: "`SPEC` is SRC[:DST[:ro|rw]]: bind host path SRC at DST (default SRC), read-only with ro; repeats, or a comma list"}},
		&cli.StringFlag{Name: "home", Usage: "bind `SRC[:DST]` as your home (HOME=DST) instead of your home directory"},
		&cli.BoolFlag{Name: "no-home", Usage: "do not bind your home directory"},
		&cli.BoolFlag{Name: "contain", Aliases: []string{"c"}, Usage: "no host home, /tmp or current directory: empty ones in memory"},
		&cli.BoolFlag{Name: "containall", Aliases: []string{"C"}, Usage: "--contain, --cleanenv, --pid and --ipc"},
		&cli.BoolFlag{Name: "cleanenv", Aliases: []string{"e"}, Usage: "pass only TERM and the proxy variables of your environment, LANG=C; KERRENV_X, --env and --env-file still apply"},
		&cli.GenericFlag{Name: "env", Value: &listFlag{}, Usage: "set `NAME=VALUE` in the container, over the image's environment; repeats"},
		&cli.StringFlag{Name: "env-file", Usage: "set the NAME=VALUE lines of `FILE` (# comments; no shell expansion)"},
		&cli.StringFlag{Name: "pwd", Usage: "start in `DIR` inside the container"},
		&cli.BoolFlag{Name: "writable-tmpfs", Usage: "a writable root filesystem whose changes are kept in memory and dropped at the end"},
		&cli.StringFlag{Name: "overlay", Usage: "a writable root filesystem whose changes are kept in directory `DIR` of yours (DIR/upper), through fuse-overlayfs run as you"},
		&cli.BoolFlag{Name: "pid", Aliases: []string{"p"}, Usage: "a new pid namespace"},
		&cli.BoolFlag{Name: "ipc", Aliases: []string{"i"}, Usage: "a new ipc namespace"},
		&cli.BoolFlag{Name: "uts", Usage: "a new uts namespace"},
		&cli.StringFlag{Name: "hostname", Usage: "the container's hostname `H` (implies --uts)"},
		&cli.BoolFlag{Name: "net", Aliases: []string{"n"}, Usage: "a new network namespace (the policy must allow it)"},
		&cli.StringSliceFlag{Name: "security", Usage: "`SPEC` is seccomp:PROFILE: also apply the seccomp profile (runtime-spec JSON) in file PROFILE"},
		&cli.StringSliceFlag{Name: "no-mount", Usage: "leave out `MOUNT`: proc, sys, dev, devpts, home, tmp, cwd, hostfs, or a system bind's path"},
		&cli.StringSliceFlag{Name: "add-caps", Usage: "keep `CAPS` (comma list: net_raw or CAP_NET_RAW) in the payload; the admin must grant them to you (capabilities.grant)"},
		&cli.BoolFlag{Name: "userns", Aliases: []string{"u"}, Usage: "run without setuid, in a user namespace (the policy must allow it; chosen by itself when setuid is off or not installed)"},
	}
}

// wantUserNS says whether a run goes through the unprivileged starter in a user namespace:
// asked for (--userns), or the only way left for a user: the policy turns setuid off, or
// starter-suid cannot give privileges, while it allows user namespaces. Root never needs it.
func wantUserNS(c *cli.Context) bool {
	if os.Geteuid() == 0 {
		return false
	}
	if c.Bool("userns") {
		return true
	}
	p, _, err := readPolicy(c, buildcfg.PolicyFile())
	if err != nil || !p.Access.AllowUserNamespaces {
		return false
	}
	if !p.Access.AllowSetuid {
		return true
	}
	_, err = launch.Starter()
	return err != nil
}

// listFlag collects every value of a repeated flag, as given or split at commas.
type listFlag struct {
	commas bool
	values []string
}

func (l *listFlag) Set(v string) error {
	if !l.commas {
		l.values = append(l.values, v)
		return nil
	}
	for _, s := range strings.Split(v, ",") {
		l.values = append(l.values, strings.TrimSpace(s))
	}
	return nil
}

func (l *listFlag) String() string { return "" }

// listValues is what a listFlag named name collected.
func listValues(c *cli.Context, name string) []string {
	if l, ok := c.Generic(name).(*listFlag); ok {
		return l.values
	}
	return nil
}

// mixableFlag is a flag with a one-letter alias that may be mixed with its long name in one
// command line (-B a --bind b): urfave/cli refuses both forms of an aliased flag, so the alias
// is registered here, on the same value, rather than as an alias urfave/cli knows of.
type mixableFlag struct {
	*cli.GenericFlag
	short string
}

func (f *mixableFlag) Apply(set *flag.FlagSet) error {
	if err := f.GenericFlag.Apply(set); err != nil {
		return err
	}
	set.Var(f.Value, f.short, f.Usage)
	return nil
}

// String is the help line, with the alias.
func (f *mixableFlag) String() string {
	g := *f.GenericFlag
	g.Aliases = []string{f.short}
	return g.String()
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a container",
		ArgsUsage: "IMAGE COMMAND [ARGS...]",
		Description: `Runs COMMAND with ARGS in a container of IMAGE, after the image's environment
scripts (/.singularity.d/actions/exec).
` + hpcFlagsHelp,
		Flags:        hpcFlags(),
		OnUsageError: usageError,
		Action:       hpcAction(native.ActionExec),
	}
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run the image's runscript",
		ArgsUsage: "IMAGE [ARGS...]",
		Description: `Runs the image's runscript (/.singularity.d/runscript; for an image from a
registry, its ENTRYPOINT and CMD) with ARGS, after the image's environment scripts.
` + hpcFlagsHelp,
		Flags:        hpcFlags(),
		OnUsageError: usageError,
		Action:       hpcAction(native.ActionRun),
	}
}

func shellCommand() *cli.Command {
	return &cli.Command{
		Name:      "shell",
		Usage:     "start a shell in a container",
		ArgsUsage: "IMAGE [SHELL-ARGS...]",
		Description: `Starts a shell in a container of IMAGE (the image's /bin/bash, else /bin/sh), after
the image's environment scripts; ARGS are the shell's ('kerr shell img.sif -c "id"').
` + hpcFlagsHelp,
		Flags:        hpcFlags(),
		OnUsageError: usageError,
		Action:       hpcAction(native.ActionShell),
	}
}

func hpcAction(action string) cli.ActionFunc {
	return func(c *cli.Context) error {
		cfg, req, warnings, err := hpcRequest(c, action)
		if err != nil {
			return err
		}
		if req != nil {
			if err := earlyPolicyCheck(c, req); err != nil {
				return err
			}
		}
		if !globalsOf(c).quiet {
			for _, w := range warnings {
				fmt.Fprintf(c.App.ErrWriter, "WARNING: %s\n", w)
			}
		}
		// From here a SIGINT or SIGTERM acts as it will on the payload (it ends kerr, or is
		// ignored if it was ignored when kerr started) instead of being caught by Main; one
		// caught before is honoured.
		signal.Reset(syscall.SIGINT, syscall.SIGTERM)
		if err := c.Context.Err(); err != nil {
			return fmt.Errorf("interrupted before the container started")
		}
		return execHPC(fmt.Sprintf("%s-%d", action, os.Getpid()), cfg)
	}
}

// noMountNames are the --no-mount values besides absolute paths.
var noMountNames = []string{"proc", "sys", "dev", "devpts", "home", "tmp", "cwd", "hostfs"}

// hpcRequest builds the request from the command line and the caller's environment, and the
// policy.Request the starter will decide (caller's ids, the image as the starter will see it,
// bind sources with symlinks resolved). It checks what exists; it reads no policy.
func hpcRequest(c *cli.Context, action string) (*native.Config, *policy.Request, []string, error) {
	usage := map[string]string{
		native.ActionExec:     "IMAGE COMMAND [ARGS...]",
		native.ActionRun:      "IMAGE [ARGS...]",
		native.ActionShell:    "IMAGE [SHELL-ARGS...]",
		native.ActionInstance: "IMAGE NAME [STARTSCRIPT-ARGS...]",
	}[action]
	min := 1
	if action == native.ActionExec || action == native.ActionInstance {
		min = 2
	}
	args := c.Args().Slice()
	if len(args) > 1 && args[1] == "--" {
		args = append(args[:1:1], args[2:]...)
	}
	if len(args) < min {
		return nil, nil, nil, fmt.Errorf("usage: %s [flags] %s: %w", c.Command.HelpName, usage, errdefs.ErrUsage)
	}
	image := args[0]
	joining := strings.HasPrefix(image, "instance://")
	if joining && action == native.ActionInstance {
		return nil, nil, nil, fmt.Errorf("%s: an instance starts from an image, not from another instance: %w", image, errdefs.ErrUsage)
	}
	if i := strings.Index(image, "://"); i > 0 && !joining && !strings.Contains(image[:i], "/") {
		return nil, nil, nil, fmt.Errorf("%s: kerr runs local images only: 'kerr pull' it into a SIF file first: %w", image, errdefs.ErrUsage)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the current directory: %w", err)
	}
	cwd = filepath.Clean(cwd)
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(cwd, p)
	}
	exists := func(what, p string) error {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s: no such file or directory: %w", what, p, errdefs.ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("%s %s: %w", what, p, err)
		}
		return nil
	}

	cfg := &native.Config{Action: action, Image: image, Args: args[1:], Cwd: cwd, UserNS: wantUserNS(c)}
	if !joining {
		cfg.Image = abs(image)
	}
	if action == native.ActionInstance {
		cfg.Instance, cfg.Args = args[1], args[2:]
		if err := native.ValidInstanceName(cfg.Instance); err != nil {
			return nil, nil, nil, fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
		}
	}
	req := &policy.Request{Mode: policy.ModeSetuid}
	if cfg.UserNS {
		req.Mode = policy.ModeUserNS
	}

	// Flags first, so that a usage error is reported before a missing file.
	var bindSpecs []string
	for _, spec := range append(envBinds(), listValues(c, "bind")...) {
		b, err := parseHPCBind(spec, abs)
		if err != nil {
			return nil, nil, nil, err
		}
		cfg.Binds = append(cfg.Binds, b)
		bindSpecs = append(bindSpecs, spec)
	}
	if h := c.String("home"); h != "" {
		src, dst, ok := strings.Cut(h, ":")
		if src == "" || strings.Contains(dst, ":") || (ok && dst == "") {
			return nil, nil, nil, fmt.Errorf("--home %q: want SRC[:DST]: %w", h, errdefs.ErrUsage)
		}
		cfg.HomeSource = abs(src)
		cfg.HomeDest = cfg.HomeSource
		if ok {
			if !filepath.IsAbs(dst) {
				return nil, nil, nil, fmt.Errorf("--home %q: destination %q is not an absolute path: %w", h, dst, errdefs.ErrUsage)
			}
			cfg.HomeDest = filepath.Clean(dst)
		}
	}
	cfg.NoHome = c.Bool("no-home")
	cfg.ContainAll = c.Bool("containall")
	cfg.Contain = c.Bool("contain") || cfg.ContainAll
	cfg.WritableTmpfs = c.Bool("writable-tmpfs")
	if p := c.String("pwd"); p != "" {
		cfg.Pwd = abs(p)
	}
	if o := c.String("overlay"); o != "" {
		cfg.Overlay = abs(o)
	}
	cfg.Hostname = c.String("hostname")
	if h := cfg.Hostname; len(h) > 64 || strings.ContainsAny(h, "/\x00 \t\n") {
		return nil, nil, nil, fmt.Errorf("--hostname %q: want at most 64 characters, no spaces or slashes: %w", h, errdefs.ErrUsage)
	}
	for _, ns := range []struct {
		name string
		on   bool
	}{
		{native.NamespacePID, c.Bool("pid") || cfg.ContainAll},
		{native.NamespaceIPC, c.Bool("ipc") || cfg.ContainAll},
		{native.NamespaceUTS, c.Bool("uts") || cfg.Hostname != ""},
		{native.NamespaceNet, c.Bool("net")},
	} {
		if ns.on {
			cfg.Namespaces = append(cfg.Namespaces, ns.name)
		}
	}
	for _, s := range c.StringSlice("security") {
		profile, ok := strings.CutPrefix(strings.TrimSpace(s), "seccomp:")
		if !ok || profile == "" {
			return nil, nil, nil, fmt.Errorf("--security %q: only seccomp:PROFILE is supported: %w", s, errdefs.ErrUsage)
		}
		if cfg.Seccomp != "" {
			return nil, nil, nil, fmt.Errorf("--security: one seccomp profile only: %w", errdefs.ErrUsage)
		}
		cfg.Seccomp = abs(profile)
	}
	for _, m := range c.StringSlice("no-mount") {
		m = strings.TrimSpace(m)
		switch {
		case filepath.IsAbs(m):
			m = filepath.Clean(m)
		case !slices.Contains(noMountNames, m):
			return nil, nil, nil, fmt.Errorf("--no-mount %q: want one of %s, or an absolute path: %w",
				m, strings.Join(noMountNames, ", "), errdefs.ErrUsage)
		}
		cfg.NoMount = append(cfg.NoMount, m)
	}
	for _, v := range c.StringSlice("add-caps") {
		for _, cp := range strings.Split(v, ",") {
			cp = strings.ToUpper(strings.TrimSpace(cp))
			if cp == "" {
				continue
			}
			if !strings.HasPrefix(cp, "CAP_") {
				cp = "CAP_" + cp
			}
			cfg.AddCaps = append(cfg.AddCaps, cp)
		}
	}
	var flagEnv []string
	for _, v := range listValues(c, "env") {
		kvs, err := hpcenv.SplitFlag(v)
		if err != nil {
			return nil, nil, nil, err
		}
		flagEnv = append(flagEnv, kvs...)
	}
	// The form of the whole request, before anything is looked up.
	if err := cfg.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}

	// What exists, in the order of the command line.
	if joining {
		// The instance's record and process are the starter's to check.
		req = nil
	} else if req.Image, err = statImage(cfg.Image); err != nil {
		return nil, nil, nil, err
	}
	for _, b := range cfg.Binds {
		src, err := resolve("bind source", b.Source)
		if err != nil {
			return nil, nil, nil, err
		}
		req.Binds = append(req.Binds, policy.Bind{Source: src, Dest: b.Dest, ReadOnly: b.ReadOnly})
	}
	if cfg.HomeSource != "" {
		if err := exists("--home", cfg.HomeSource); err != nil {
			return nil, nil, nil, err
		}
		// A home of the user's choosing is a bind: the policy's bind rules apply.
		if req != nil {
			src, err := resolve("--home", cfg.HomeSource)
			if err != nil {
				return nil, nil, nil, err
			}
			req.Binds = append(req.Binds, policy.Bind{Source: src, Dest: cfg.HomeDest})
		}
	}
	if cfg.Overlay != "" {
		if err := exists("--overlay", cfg.Overlay); err != nil {
			return nil, nil, nil, err
		}
		if fi, err := os.Stat(cfg.Overlay); err == nil && !fi.IsDir() {
			return nil, nil, nil, fmt.Errorf("--overlay %s is not a directory (only directory overlays are supported): %w",
				cfg.Overlay, errdefs.ErrUsage)
		}
	}
	if cfg.Seccomp != "" {
		if err := exists("seccomp profile", cfg.Seccomp); err != nil {
			return nil, nil, nil, err
		}
	}
	var fileEnv []string
	if f := c.String("env-file"); f != "" {
		if fileEnv, err = hpcenv.ParseFile(abs(f)); err != nil {
			return nil, nil, nil, err
		}
	}
	if req != nil {
		req.Namespaces = cfg.Namespaces
		req.Capabilities = cfg.AddCaps
		if req.Caller, err = lookupCaller(""); err != nil {
			return nil, nil, nil, err
		}
	}

	home := cfg.HomeDest
	if home == "" {
		home = callerHome()
	}
	var runtime []string
	for _, p := range []string{"KERR_", "APPTAINER_", "SINGULARITY_"} {
		runtime = append(runtime, p+"CONTAINER="+cfg.Image, p+"NAME="+filepath.Base(cfg.Image), p+"COMMAND="+action)
		if len(bindSpecs) > 0 {
			runtime = append(runtime, p+"BIND="+strings.Join(bindSpecs, ","))
		}
	}
	res := hpcenv.Compute(hpcenv.Options{Host: os.Environ(), Clean: c.Bool("cleanenv") || cfg.ContainAll,
		File: fileEnv, Flags: flagEnv, Home: home, Runtime: runtime})
	cfg.Env, cfg.EnvOverride = res.Env, res.Overrides
	if err := cfg.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	return cfg, req, res.Warnings, nil
}

// bindEnvVars are the variables job scripts set for binds, as Singularity and Apptainer
// read them (comma lists of SRC[:DST[:ro|rw]]); kerr's first. Their binds come before -B's.
var bindEnvVars = []string{"KERR_BIND", "APPTAINER_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BIND", "SINGULARITY_BINDPATH"}

// envBinds lists the bind specs of the first of bindEnvVars that is set and not empty.
func envBinds() []string {
	for _, name := range bindEnvVars {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		var out []string
		for _, spec := range strings.Split(v, ",") {
			if spec = strings.TrimSpace(spec); spec != "" {
				out = append(out, spec)
			}
		}
		return out
	}
	return nil
}

// parseHPCBind reads SRC[:DST[:ro|rw]]: SRC made absolute with abs, DST absolute (default
// SRC), both cleaned.
func parseHPCBind(spec string, abs func(string) string) (native.Bind, error) {
	parts := strings.Split(spec, ":")
	if len(parts) > 3 || parts[0] == "" {
		return native.Bind{}, fmt.Errorf("--bind %q: want SRC[:DST[:ro|rw]]: %w", spec, errdefs.ErrUsage)
	}
	b := native.Bind{Source: abs(parts[0])}
	b.Dest = b.Source
	if len(parts) > 1 && parts[1] != "" {
		if !filepath.IsAbs(parts[1]) {
			return native.Bind{}, fmt.Errorf("--bind %q: destination %q is not an absolute path: %w", spec, parts[1], errdefs.ErrUsage)
		}
		b.Dest = filepath.Clean(parts[1])
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return native.Bind{}, fmt.Errorf("--bind %q: option %q is not ro or rw: %w", spec, parts[2], errdefs.ErrUsage)
		}
	}
	return b, nil
}

// callerHome is HOME inside by default: the caller's passwd entry's home, else $HOME, else /.
func callerHome() string {
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil && filepath.IsAbs(u.HomeDir) {
		return filepath.Clean(u.HomeDir)
	}
	if h := os.Getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Clean(h)
	}
	return "/"
}

// earlyPolicyCheck decides req with the installed policy, to report a denial before the
// starter does (with the line of the policy that denies). A policy kerr cannot load is
// skipped: the starter loads it itself and reports what is wrong.
func earlyPolicyCheck(c *cli.Context, req *policy.Request) error {
	path := buildcfg.PolicyFile()
	p, data, err := readPolicy(c, path)
	if err != nil {
		return nil
	}
	_, err = p.Decide(req)
	var den *policy.Denial
	if errors.As(err, &den) {
		if data != nil {
			den.Locate(path, data)
		}
		return err
	}
	// A malformed request is a bug of this file's; the starter will say the same.
	return nil
}
