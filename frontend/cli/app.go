// Package cli is kerr's command line (urfave/cli/v2): one file per command group. It runs
// with the caller's privileges, parses and checks arguments, calls the packages that do the
// work, and maps their errors to one line on stderr and a documented exit code.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
	"github.com/kerr-hpc/kerr/frontend/launch"
)

// globals are the flags every command sees, read once from the context.
type globals struct {
	debug bool
	quiet bool
}

func globalsOf(c *cli.Context) globals {
	return globals{debug: c.Bool("debug"), quiet: c.Bool("quiet")}
}

func (g globals) progress() *progress.Reporter { return progress.New(g.quiet) }

// warnf prints a warning on stderr unless quiet.
func (g globals) warnf(format string, args ...any) {
	if !g.quiet {
		fmt.Fprintf(os.Stderr, "WARNING: "+format+"\n", args...)
	}
}

// NewApp builds the command tree; stdout and stderr are parameters so tests can read them.
func NewApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "kerr",
		Usage:     "containers for HPC, from SIF images",
		Version:   buildcfg.Version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "print details of what kerr does"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
		},
		Commands: []*cli.Command{
			execCommand(), runCommand(), shellCommand(), instanceCommand(),
			pullCommand(),
			buildCommand(),
			inspectCommand(),
			sifCommand(),
			cacheCommand(),
			ociCommand(),
			policyCommand(),
		},
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		OnUsageError:         usageError,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main prints errors itself
		Description: `kerr runs containers from SIF images. 'kerr exec', 'kerr run' and 'kerr shell' run
a command, the image's runscript or a shell in a container of a SIF file or sandbox
directory, as yourself, with your home, current directory and environment, Singularity
style (HPC mode: the payload's exit status is kerr's). kerr also pulls and builds images
(registries, OCI layouts and archives, Docker archives, directories), inspects SIF files,
and, for root, turns SIF files into OCI bundles and runs OCI containers ('kerr oci').

Exit codes: 0 success, 1 failure, 2 usage, 3 output exists, 4 not found, 5 access denied,
6 registry unreachable, 7 invalid image, 8 disk full (docs/exit-codes.md).`,
	}
}

func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
}

// Main runs kerr with args and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	app := NewApp(os.Stdout, os.Stderr)
	err := runApp(ctx, app, args)
	if err == nil {
		return errdefs.ExitOK
	}
	if launch.Silent(err) {
		return launch.ExitCode(err)
	}
	fmt.Fprintln(os.Stderr, "kerr: "+oneLine(err))
	if ctx.Err() != nil {
		return 128 + int(syscall.SIGINT)
	}
	return launch.ExitCode(err)
}

func runApp(ctx context.Context, app *cli.App, args []string) error {
	// urfave/cli runs the app's action for an unknown command; kerr's global flags take no
	// values, so the first argument that is not a flag is the command.
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") {
			continue
		}
		if a != "help" && app.Command(a) == nil {
			return fmt.Errorf("unknown command %q: see 'kerr --help': %w", a, errdefs.ErrUsage)
		}
		break
	}
	return app.RunContext(ctx, args)
}

// groupAction is the action of a command group (`kerr sif`, `kerr cache`): reached only
// without a known subcommand, which is a usage error.
func groupAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unknown command %q for 'kerr %s': see 'kerr %s --help': %w",
			c.Args().First(), c.Command.Name, c.Command.Name, errdefs.ErrUsage)
	}
	_ = cli.ShowSubcommandHelp(c)
	return fmt.Errorf("'kerr %s' needs a command: %w", c.Command.Name, errdefs.ErrUsage)
}

// oneLine flattens an error message to one line (errdefs.OneLine).
func oneLine(err error) string { return errdefs.OneLine(err) }

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int, usage string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return fmt.Errorf("usage: %s %s: %w", c.Command.HelpName, usage, errdefs.ErrUsage)
	}
	return nil
}
