package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/frontend/image/cache"
	"github.com/kerr-hpc/kerr/frontend/image/progress"
)

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:         "cache",
		Usage:        "list or clean the image cache ($KERR_CACHEDIR, default ~/.cache/kerr)",
		OnUsageError: usageError,
		Action:       groupAction,
		Subcommands: []*cli.Command{
			{
				Name:         "list",
				Usage:        "list cached layers and SIF files",
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, ""); err != nil {
						return err
					}
					ch, err := openCache()
					if err != nil {
						return err
					}
					entries, err := ch.List()
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "KIND\tNAME\tSIZE")
					var total int64
					for _, e := range entries {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Kind, e.Name, progress.HumanSize(e.Size))
						total += e.Size
					}
					fmt.Fprintf(tw, "total\t%d objects in %s\t%s\n", len(entries), ch.Root(), progress.HumanSize(total))
					return tw.Flush()
				},
			},
			{
				Name:         "clean",
				Usage:        "remove every cached layer and SIF file",
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, ""); err != nil {
						return err
					}
					ch, err := openCache()
					if err != nil {
						return err
					}
					freed, err := ch.Clean()
					if err != nil {
						return err
					}
					if !globalsOf(c).quiet {
						fmt.Fprintf(c.App.Writer, "Removed %s from %s\n", progress.HumanSize(freed), ch.Root())
					}
					return nil
				},
			},
		},
	}
}

func openCache() (*cache.Cache, error) {
	dir, err := cache.DefaultDir()
	if err != nil {
		return nil, err
	}
	return cache.Open(dir)
}
