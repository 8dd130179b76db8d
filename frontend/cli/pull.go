package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
)

// sourceFlags are shared by pull and build.
func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"F"}, Usage: "replace the output if it exists"},
		&cli.StringFlag{Name: "arch", Usage: "architecture to pull from a multi-platform image (GOARCH name, e.g. arm64)"},
		&cli.BoolFlag{Name: "insecure", Usage: "allow plain http and unverified TLS for the registry"},
		&cli.StringFlag{Name: "username", Usage: "registry user name (default: ~/.docker/config.json)"},
		&cli.BoolFlag{Name: "password-stdin", Usage: "read the registry password from standard input"},
	}
}

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "download an image and make a SIF file of it",
		ArgsUsage: "[OUT.sif] SOURCE",
		Description: `SOURCE is one of
   docker://[HOST/]REPO[:TAG|@DIGEST]   an OCI distribution registry (Docker Hub by default)
   oci:DIR[:TAG]                        an OCI image layout directory
   oci-archive:FILE[:TAG]               a tar of an OCI image layout
   docker-archive:FILE                  a 'docker save' archive
OUT.sif defaults to NAME_TAG.sif in the current directory. Layers are cached in
$KERR_CACHEDIR (default ~/.cache/kerr): pulling the same image again downloads nothing.`,
		Flags:        sourceFlags(),
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2, "[OUT.sif] SOURCE"); err != nil {
				return err
			}
			src, out := c.Args().Get(0), ""
			if c.NArg() == 2 {
				out, src = c.Args().Get(0), c.Args().Get(1)
			}
			return runBuild(c, src, out, false, false)
		},
	}
}

func buildCommand() *cli.Command {
	flags := append(sourceFlags(), &cli.BoolFlag{Name: "sandbox", Aliases: []string{"s"}, Usage: "write a directory instead of a SIF file"})
	return &cli.Command{
		Name:      "build",
		Usage:     "build a SIF file (or a sandbox directory) from an image or a directory",
		ArgsUsage: "OUT SOURCE",
		Description: `SOURCE is any source 'kerr pull' takes, or a local root filesystem directory.
With --sandbox, OUT is a directory holding the root filesystem.`,
		Flags:        flags,
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "OUT SOURCE"); err != nil {
				return err
			}
			return runBuild(c, c.Args().Get(1), c.Args().Get(0), true, c.Bool("sandbox"))
		},
	}
}

func runBuild(c *cli.Context, src, out string, allowDir, sandbox bool) error {
	g := globalsOf(c)
	opts := image.Options{
		Source: src, Output: out, AllowDir: allowDir, Sandbox: sandbox,
		Force: c.Bool("force"), Arch: c.String("arch"), Insecure: c.Bool("insecure"),
		Username: c.String("username"), Progress: g.progress(),
	}
	if c.Bool("password-stdin") {
		pw, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && pw == "" {
			return fmt.Errorf("read password from standard input: %v: %w", err, errdefs.ErrUsage)
		}
		opts.Password = strings.TrimRight(pw, "\r\n")
	}
	var skipped atomic.Int64 // Warn is called from the flattener and the sandbox writer
	opts.Warn = func(format string, args ...any) {
		if g.debug {
			g.warnf(format, args...)
		}
		skipped.Add(1)
	}
	if opts.Output == "" {
		s, err := image.ParseSource(opts)
		if err != nil {
			return err
		}
		opts.Output = s.DefaultOutput()
	}
	res, err := image.Build(c.Context, opts)
	if err != nil {
		return err
	}
	if n := skipped.Load(); n > 0 && !g.debug {
		g.warnf("%d entries of the image were left out (run with --debug to list them)", n)
	}
	if !g.quiet {
		what := "Wrote"
		if res.Cached {
			what = "Wrote (from cache)"
		}
		if sandbox {
			fmt.Fprintf(os.Stderr, "INFO:    %s sandbox %s\n", what, res.Output)
		} else {
			fmt.Fprintf(os.Stderr, "INFO:    %s %s (%s)\n", what, res.Output, progress.HumanSize(res.Size))
		}
	}
	return nil
}
