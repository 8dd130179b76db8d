// Package cli is kerr's command line (urfave/cli/v2): one file per command group. It runs
// with the caller's privileges, parses and checks arguments, calls the packages that do the
// work, and maps their errors to one line on stderr and a documented exit code.
package cli

import (
	"context"
	"errors"
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
			pullCommand(),
			buildCommand(),
			inspectCommand(),
			sifCommand(),
			cacheCommand(),
		},
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		OnUsageError:         usageError,
		CommandNotFound: func(c *cli.Context, name string) {
			// Reported through the returned error by Main.
		},
		ExitErrHandler: func(*cli.Context, error) {}, // Main prints errors itself
		Description: `kerr runs containers from SIF images. This build pulls and builds images
(registries, OCI layouts and archives, Docker archives, directories), and inspects SIF files.

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
	fmt.Fprintln(os.Stderr, "kerr: "+oneLine(err))
	if ctx.Err() != nil {
		return 128 + int(syscall.SIGINT)
	}
	return errdefs.ExitCode(err)
}

func runApp(ctx context.Context, app *cli.App, args []string) error {
	if len(args) > 1 {
		if cmd := args[1]; !strings.HasPrefix(cmd, "-") && app.Command(cmd) == nil {
			return fmt.Errorf("unknown command %q: see 'kerr --help': %w", cmd, errdefs.ErrUsage)
		}
	}
	return app.RunContext(ctx, args)
}

// oneLine flattens an error message so that the user always sees exactly one line, without
// the sentinel's text repeated at the end.
func oneLine(err error) string {
	msg := err.Error()
	for _, s := range []error{errdefs.ErrUsage, errdefs.ErrExists, errdefs.ErrNotFound, errdefs.ErrDenied,
		errdefs.ErrUnavailable, errdefs.ErrInvalidImage, errdefs.ErrNoSpace} {
		if errors.Is(err, s) {
			msg = strings.TrimSuffix(msg, ": "+s.Error())
		}
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int, usage string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return fmt.Errorf("usage: kerr %s %s: %w", c.Command.FullName(), usage, errdefs.ErrUsage)
	}
	return nil
}
