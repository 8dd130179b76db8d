// Package ocicli is the command line of kerr's OCI runtime: the lifecycle commands of
// `kerr oci` (create, run, start, state, kill, delete, exec), which kerr-runc, the lean
// runc-compatible binary for containerd, podman and the like, serves too. Each command
// checks its arguments and runs the action in this process (starter/oci.Do), as root; a
// container's processes are the starter's. It imports nothing of kerr's image handling, so
// that kerr-runc starts fast.
package ocicli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/rpc/envelope"
	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
	"github.com/kerr-hpc/kerr/starter/oci"
)

// Commands returns the lifecycle commands.
func Commands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "create",
			Usage:     "create a container from a bundle; its process waits for 'start'",
			ArgsUsage: "ID",
			Description: `Sets up the container described by BUNDLE/config.json (namespaces, root filesystem,
cgroup, ...) and leaves its process waiting for 'kerr oci start ID'. By default a kerr
monitor stays as the container's parent: it records the exit status (see 'state') and
serves the control socket. With --no-monitor nothing of kerr stays: the container's process
is the caller's child, as with runc.`,
			Flags: append(bundleFlags(),
				&cli.StringFlag{Name: "log-path", Usage: "write the container's stdout and stderr to this file (needs the monitor)"},
				&cli.StringFlag{Name: "log-format", Value: ocicfg.LogKubernetes, Usage: "format of the log: kubernetes (the CRI log format), basic or json"},
				&cli.StringFlag{Name: "sync-socket", Usage: "unix socket to send the state JSON to at each change (created, running, stopped)"},
				&cli.BoolFlag{Name: "no-monitor", Usage: "no kerr process stays: the container's process is the caller's child (as runc)"},
			),
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				id, cfg, err := bundleConfig(c, ocicfg.ActionCreate)
				if err != nil {
					return err
				}
				cfg.Monitor, cfg.LogFormat = !lineageBool(c, "no-monitor"), c.String("log-format")
				if cfg.LogPath, err = absOrEmpty(c.String("log-path")); err != nil {
					return err
				}
				if cfg.SyncSocket, err = absOrEmpty(c.String("sync-socket")); err != nil {
					return err
				}
				return runOCI(c, id, cfg)
			},
		},
		{
			Name:      "run",
			Usage:     "create, start and attach to a container, then delete it; exit with its status",
			ArgsUsage: "ID",
			Description: `Creates the container from BUNDLE/config.json, starts it, connects your stdio to
it, and deletes it once it has exited; kerr exits with the container's status (128+N when
signal N killed it), so it fits in a script. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2
and SIGCONT are passed on to the container's process.

By default the kerr monitor holds the container (as with create): its output is also
logged (--log-path, --log-format; the state dir's container.log otherwise), stdout and
stderr stay apart, the end of your stdin ends the container's, and with process.terminal
your terminal goes raw and its size follows yours. When your stdin is a terminal, the
detach keys (--detach-keys, default ctrl-p,ctrl-q) leave the container running: reattach
with 'attach', remove it with 'delete'.

With --no-monitor (kerr-runc's default), as runc run: kerr itself stays the container's
parent and the container gets your stdio; with process.terminal and no --console-socket
its terminal is connected to yours.`,
			Flags: append(bundleFlags(),
				&cli.StringFlag{Name: "log-path", Usage: "also write the container's stdout and stderr to this file (monitor mode)"},
				&cli.StringFlag{Name: "log-format", Value: ocicfg.LogKubernetes, Usage: "format of the log: kubernetes (the CRI log format), basic or json"},
				&cli.StringFlag{Name: "detach-keys", Value: ocicfg.DefaultDetachKeys, Usage: "keys that detach, leaving the container running (ctrl-X and single characters, comma separated; none: off)"},
				&cli.BoolFlag{Name: "no-stdin", Usage: "do not pass stdin on (monitor mode)"},
				&cli.BoolFlag{Name: "no-monitor", Usage: "no monitor: kerr stays the container's parent and gives it its stdio (as runc run)"},
			),
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				id, cfg, err := bundleConfig(c, ocicfg.ActionRun)
				if err != nil {
					return err
				}
				cfg.Monitor, cfg.LogFormat = !lineageBool(c, "no-monitor"), c.String("log-format")
				if cfg.LogPath, err = absOrEmpty(c.String("log-path")); err != nil {
					return err
				}
				cfg.DetachKeys, cfg.NoStdin = c.String("detach-keys"), c.Bool("no-stdin")
				if _, err := ocicfg.ParseDetachKeys(cfg.DetachKeys); err != nil {
					return UsageError(c, err, true)
				}
				return runOCI(c, id, cfg)
			},
		},
		{
			Name:         "start",
			Usage:        "start the payload of a created container",
			ArgsUsage:    "ID",
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionStart}, nil
			}),
		},
		{
			Name:      "state",
			Usage:     "print a container's state as JSON",
			ArgsUsage: "ID",
			Description: `Prints the runtime spec's state (ociVersion, id, status, pid, bundle, annotations)
with createdAt (ns since the epoch), created, rootfs, the monitor's control socket and, once
stopped, exitStatus (the exit code, or 128+signal) when the monitor recorded it.`,
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionState}, nil
			}),
		},
		{
			Name:      "kill",
			Usage:     "send a signal to a container's process",
			ArgsUsage: "ID [SIGNAL]",
			Description: `SIGNAL is a name (TERM, SIGTERM) or a number; SIGTERM by default. With --all every
process in the container's cgroup gets it, also once the container's own process has
exited (what it left behind, as containerd's shim expects); a stopped container is no error.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Usage: "the signal (name or number)"},
				&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "signal every process of the container"},
			},
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				if err := needArgs(c, 1, 2, "ID [SIGNAL]"); err != nil {
					return err
				}
				if err := needRoot(c); err != nil {
					return err
				}
				id := c.Args().Get(0)
				if err := envelope.ValidateID(id); err != nil {
					return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
				}
				name := c.String("signal")
				if a := c.Args().Get(1); a != "" {
					if name != "" && name != a {
						return fmt.Errorf("two signals given (%s and %s): %w", name, a, errdefs.ErrUsage)
					}
					name = a
				}
				if name == "" {
					name = "TERM"
				}
				sig, err := parseSignal(name)
				if err != nil {
					return err
				}
				return runOCI(c, id, ocicfg.Config{Action: ocicfg.ActionKill, Signal: sig, All: c.Bool("all")})
			},
		},
		{
			Name:      "delete",
			Usage:     "remove a stopped container",
			ArgsUsage: "ID",
			Description: `Runs the poststop hooks, removes the cgroup and the state. A running container is
refused unless --force, which kills it first; with --force an unknown ID is no error.`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill a running container first"},
			},
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionDelete, Force: c.Bool("force")}, nil
			}),
		},
		{
			Name:      "attach",
			Usage:     "connect your terminal or stdio to a container's (monitor mode)",
			ArgsUsage: "ID",
			Description: `Connects to the monitor's attach socket: you see the container's output from now
on (stdout and stderr apart) and what you type goes to its stdin, or to its terminal; then
yours goes raw and the container's terminal takes your size, now and when you resize.
Several clients may attach at once. It ends when the container's output does (it exited);
when your stdin is a terminal, the detach keys (default ctrl-p,ctrl-q) end it and leave
the container running. The end of your stdin does not end the container's: others may
still type.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "detach-keys", Value: ocicfg.DefaultDetachKeys, Usage: "keys that detach (ctrl-X and single characters, comma separated; none: off)"},
				&cli.BoolFlag{Name: "no-stdin", Usage: "only watch: do not pass stdin on"},
			},
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				cfg := ocicfg.Config{Action: ocicfg.ActionAttach, DetachKeys: c.String("detach-keys"), NoStdin: c.Bool("no-stdin")}
				if _, err := ocicfg.ParseDetachKeys(cfg.DetachKeys); err != nil {
					return cfg, UsageError(c, err, true)
				}
				return cfg, nil
			}),
		},
		{
			Name:      "logs",
			Usage:     "print a container's output, as the monitor logged it",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the container stops"},
				&cli.BoolFlag{Name: "reopen", Usage: "print nothing: have the monitor reopen the log file (after log rotation)"},
			},
			Description: `Prints the log the monitor writes (create/run --log-path, else container.log in the
state dir) as it is: one record per line in the chosen format. For log rotation, rename
the file and run 'logs --reopen ID': the monitor starts a new file at the same path.`,
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				cfg := ocicfg.Config{Action: ocicfg.ActionLogs, Follow: c.Bool("follow"), Reopen: c.Bool("reopen")}
				if cfg.Follow && cfg.Reopen {
					return cfg, UsageError(c, fmt.Errorf("--follow and --reopen do not go together"), true)
				}
				return cfg, nil
			}),
		},
		{
			Name:  "list",
			Usage: "list the containers of the state root",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "accepted for runc compatibility"},
			},
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				if err := needArgs(c, 0, 0, ""); err != nil {
					return err
				}
				if err := needRoot(c); err != nil {
					return err
				}
				if f := c.String("format"); f != "table" && f != "json" {
					return fmt.Errorf("--format %q: table or json: %w", f, errdefs.ErrUsage)
				}
				root, err := filepath.Abs(ociRoot(c))
				if err != nil {
					return err
				}
				return oci.List(root, c.String("format"))
			},
		},
		{
			Name:         "features",
			Usage:        "print what this runtime implements (the runtime spec's features JSON)",
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				if err := needArgs(c, 0, 0, ""); err != nil {
					return err
				}
				return oci.Features()
			},
		},
		{
			Name:      "ps",
			Usage:     "list the host pids of a container's processes",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
			},
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				if f := c.String("format"); f != "table" && f != "json" {
					return ocicfg.Config{}, fmt.Errorf("--format %q: table or json: %w", f, errdefs.ErrUsage)
				}
				return ocicfg.Config{Action: ocicfg.ActionPs, Format: c.String("format")}, nil
			}),
		},
		{
			Name:      "events",
			Usage:     "print a container's cgroup statistics as JSON",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "stats", Usage: "print the statistics once and exit (the only mode so far)"},
			},
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionEvents}, nil
			}),
		},
		{
			Name:         "pause",
			Usage:        "freeze every process of a running container",
			ArgsUsage:    "ID",
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionPause}, nil
			}),
		},
		{
			Name:         "resume",
			Usage:        "thaw a paused container",
			ArgsUsage:    "ID",
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				return ocicfg.Config{Action: ocicfg.ActionResume}, nil
			}),
		},
		{
			Name:      "update",
			Usage:     "change the resource limits of a container",
			ArgsUsage: "ID",
			Description: `Sets new cgroup limits: the linux.resources JSON in --from-file FILE ("-": stdin;
--resources is runc's name for it), and/or the flags, which override it. Unset limits stay
as they are.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "from-file", Aliases: []string{"resources", "r"}, Usage: "a runtime-spec linux.resources JSON file, - for stdin"},
				&cli.Int64Flag{Name: "memory", Usage: "memory limit in bytes (-1: none)"},
				&cli.Int64Flag{Name: "pids-limit", Usage: "most processes (-1: none)"},
				&cli.Int64Flag{Name: "cpu-quota", Usage: "CPU time in microseconds per period (-1: none)"},
				&cli.Uint64Flag{Name: "cpu-period", Usage: "the CPU period in microseconds"},
				&cli.Uint64Flag{Name: "cpu-shares", Usage: "relative CPU weight"},
			},
			OnUsageError: UsageError,
			Action: withID(func(c *cli.Context) (ocicfg.Config, error) {
				r, err := updateResources(c)
				return ocicfg.Config{Action: ocicfg.ActionUpdate, Resources: r}, err
			}),
		},
		{
			Name:      "exec",
			Usage:     "run another process in a running container",
			ArgsUsage: "ID [COMMAND [ARG...]]",
			Description: `Runs COMMAND in the container's namespaces and cgroup, with the container's
process settings (env, user, capabilities, ...) changed by the flags, or the process
described by --process FILE (runtime-spec JSON). kerr exits with the command's status.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "a runtime-spec process JSON file"},
				&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "add NAME=VALUE to the environment"},
				&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
				&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID] to run as"},
				&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal (kerr connects it to yours unless --console-socket)"},
				&cli.StringFlag{Name: "console-socket", Usage: "unix socket to send the terminal's pty master to"},
				&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "do not wait for the process"},
				&cli.StringFlag{Name: "pid-file", Usage: "write the process's pid to this file"},
				&cli.IntFlag{Name: "preserve-fds", Usage: "pass the caller's fds 3 .. 3+N-1 to the process"},
			},
			OnUsageError: UsageError,
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return fmt.Errorf("usage: %s ID [COMMAND [ARG...]]: %w", c.Command.HelpName, errdefs.ErrUsage)
				}
				if err := needRoot(c); err != nil {
					return err
				}
				id := c.Args().First()
				if err := envelope.ValidateID(id); err != nil {
					return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
				}
				cfg := ocicfg.Config{Action: ocicfg.ActionExec, Detach: c.Bool("detach"), Tty: c.Bool("tty"),
					PreserveFDs: c.Int("preserve-fds")}
				var err error
				if cfg.PidFile, err = absOrEmpty(c.String("pid-file")); err != nil {
					return err
				}
				if f := c.String("process"); f != "" {
					if c.NArg() > 1 {
						return fmt.Errorf("give either --process or a command, not both: %w", errdefs.ErrUsage)
					}
					if cfg.Process, err = readProcess(f); err != nil {
						return err
					}
				} else {
					if c.NArg() < 2 {
						return fmt.Errorf("usage: %s ID COMMAND [ARG...] (or --process FILE): %w", c.Command.HelpName, errdefs.ErrUsage)
					}
					cfg.ExecArgs = c.Args().Slice()[1:]
					cfg.ExecEnv = c.StringSlice("env")
					cfg.ExecCwd = c.String("cwd")
					cfg.ExecUser = c.String("user")
				}
				if cfg.ConsoleSocket, err = absOrEmpty(c.String("console-socket")); err != nil {
					return err
				}
				return runOCI(c, id, cfg)
			},
		},
	}
}

// updateResources reads update's --resources file and lays its flags over it.
func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{}
	if f := c.String("from-file"); f != "" {
		if err := readJSONInput("--from-file", f, r); err != nil {
			return nil, err
		}
	}
	set := false
	if c.IsSet("memory") {
		v := c.Int64("memory")
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		r.Memory.Limit, set = &v, true
	}
	if c.IsSet("pids-limit") {
		v := c.Int64("pids-limit")
		r.Pids, set = &specs.LinuxPids{Limit: &v}, true
	}
	for _, name := range []string{"cpu-quota", "cpu-period", "cpu-shares"} {
		if !c.IsSet(name) {
			continue
		}
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		switch name {
		case "cpu-quota":
			v := c.Int64(name)
			r.CPU.Quota = &v
		case "cpu-period":
			v := c.Uint64(name)
			r.CPU.Period = &v
		case "cpu-shares":
			v := c.Uint64(name)
			r.CPU.Shares = &v
		}
		set = true
	}
	if !set && c.String("from-file") == "" {
		return nil, fmt.Errorf("update needs --from-file (or --resources) or a limit flag: %w", errdefs.ErrUsage)
	}
	return r, nil
}

// bundleFlags are the flags create and run share.
func bundleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "the bundle directory (config.json and the rootfs)"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the container process's pid to this file"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket to send the pty master to, for process.terminal without the monitor"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "enter the rootfs with MS_MOVE and chroot instead of pivot_root"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility: kerr does not create session keyrings"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass the caller's fds 3 .. 3+N-1 to the container's process"},
	}
}

// bundleConfig reads the id and bundleFlags into a request for action.
func bundleConfig(c *cli.Context, action string) (string, ocicfg.Config, error) {
	id, err := ociID(c)
	if err != nil {
		return "", ocicfg.Config{}, err
	}
	b, err := filepath.Abs(c.String("bundle"))
	if err != nil {
		return "", ocicfg.Config{}, err
	}
	if _, err := os.Stat(filepath.Join(b, "config.json")); err != nil {
		return "", ocicfg.Config{}, fmt.Errorf("bundle %s has no config.json: %w", b, errdefs.ErrNotFound)
	}
	cfg := ocicfg.Config{Action: action, Bundle: b, NoPivot: c.Bool("no-pivot"),
		NoNewKeyring: c.Bool("no-new-keyring"), PreserveFDs: c.Int("preserve-fds")}
	if cfg.PidFile, err = absOrEmpty(c.String("pid-file")); err != nil {
		return "", cfg, err
	}
	if cfg.ConsoleSocket, err = absOrEmpty(c.String("console-socket")); err != nil {
		return "", cfg, err
	}
	return id, cfg, nil
}

// withID is the action of a command that takes one container ID: the ID and root are
// checked, build makes the request from the flags, and it runs.
func withID(build func(c *cli.Context) (ocicfg.Config, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := ociID(c)
		if err != nil {
			return err
		}
		cfg, err := build(c)
		if err != nil {
			return err
		}
		return runOCI(c, id, cfg)
	}
}

// ociID checks for exactly one argument, an acceptable container id, and root.
func ociID(c *cli.Context) (string, error) {
	if err := needArgs(c, 1, 1, "ID"); err != nil {
		return "", err
	}
	if err := needRoot(c); err != nil {
		return "", err
	}
	id := c.Args().First()
	if err := envelope.ValidateID(id); err != nil {
		return "", fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	return id, nil
}

// runOCI fills in the state root and hands over to the starter.
func runOCI(c *cli.Context, id string, cfg ocicfg.Config) error {
	root, err := filepath.Abs(ociRoot(c))
	if err != nil {
		return err
	}
	cfg.Root = root
	cfg.SystemdCgroup = lineageBool(c, "systemd-cgroup")
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	return oci.Do(id, &cfg)
}

// ociRoot is the oci group's --root, wherever on the command line it was given.
func ociRoot(c *cli.Context) string {
	for _, l := range c.Lineage() {
		if l.IsSet("root") {
			return l.String("root")
		}
	}
	return ocicfg.DefaultRoot
}

// lineageBool is a bool flag set on the command or on its group; unset, the default of
// the application's own flag of that name (kerr-runc's hidden --no-monitor is true), else
// false.
func lineageBool(c *cli.Context, name string) bool {
	for _, l := range c.Lineage() {
		if l.IsSet(name) {
			return l.Bool(name)
		}
	}
	for _, f := range c.App.Flags {
		if b, ok := f.(*cli.BoolFlag); ok && b.Name == name {
			return b.Value
		}
	}
	return false
}

func absOrEmpty(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

// readProcess reads a runtime-spec process from a file ("-": stdin), strictly.
func readProcess(path string) (*specs.Process, error) {
	var p specs.Process
	if err := readJSONInput("--process", path, &p); err != nil {
		return nil, err
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("--process %s: args is empty: %w", path, errdefs.ErrUsage)
	}
	return &p, nil
}

// readJSONInput decodes the one JSON value of file path ("-": stdin), given with flag, into
// v: unknown fields, anything after the value and a missing or empty file are refused
// (exit 2, or 4 for a file that does not exist).
func readJSONInput(flag, path string, v any) error {
	var b []byte
	var err error
	if path == "-" {
		b, err = readAllLimited(os.Stdin, 1<<20)
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			b, err = readAllLimited(f, 1<<20)
			f.Close()
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %v: %w", flag, path, err, errdefs.ErrNotFound)
		}
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s %s: %v: %w", flag, path, err, errdefs.ErrUsage)
	}
	// One value and nothing else: what follows it would otherwise go unread, and unseen.
	var rest json.RawMessage
	if err := dec.Decode(&rest); err != io.EOF {
		return fmt.Errorf("%s %s: data after the JSON value: %w", flag, path, errdefs.ErrUsage)
	}
	return nil
}

func readAllLimited(f *os.File, max int64) ([]byte, error) {
	st, err := f.Stat()
	if err == nil && st.Mode().IsRegular() && st.Size() > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	b := make([]byte, 0, 4096)
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if int64(len(b)) > max {
			return nil, fmt.Errorf("larger than %d bytes", max)
		}
		if err != nil || n == 0 {
			return b, nil
		}
	}
}

// parseSignal accepts TERM, SIGTERM, sigterm, 15, RTMIN+3.
func parseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d is out of range: %w", n, errdefs.ErrUsage)
		}
		return n, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 34+n <= 64 {
			return 34 + n, nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMAX-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 64-n >= 34 {
			return 64 - n, nil
		}
	}
	switch name {
	case "SIGRTMIN":
		return 34, nil
	case "SIGRTMAX":
		return 64, nil
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return int(sig), nil
	}
	return 0, fmt.Errorf("unknown signal %q: %w", s, errdefs.ErrUsage)
}

// UsageError marks a flag or argument error as a usage error (exit 2).
func UsageError(_ *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int, usage string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return fmt.Errorf("usage: %s %s: %w", c.Command.HelpName, usage, errdefs.ErrUsage)
	}
	return nil
}

// needRoot refuses anyone but root: these commands run containers for root only.
func needRoot(c *cli.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("'%s' needs root: %w", c.Command.HelpName, errdefs.ErrDenied)
	}
	return nil
}
