package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/sylabs/sif/v2/pkg/sif"
	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
)

func sifCommand() *cli.Command {
	return &cli.Command{
		Name:         "sif",
		Usage:        "look at the objects inside a SIF file",
		OnUsageError: usageError,
		Action:       groupAction,
		Subcommands: []*cli.Command{
			{
				Name:         "list",
				Usage:        "list a SIF's data objects",
				ArgsUsage:    "IMAGE.sif",
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1, "IMAGE.sif"); err != nil {
						return err
					}
					return withSIF(c.Args().First(), func(img *sifimage.Image) error { return sifList(c.App.Writer, img) })
				},
			},
			{
				Name:         "info",
				Usage:        "show every field of one data object",
				ArgsUsage:    "ID IMAGE.sif",
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, 2, "ID IMAGE.sif"); err != nil {
						return err
					}
					return withDescriptor(c, func(img *sifimage.Image, d sif.Descriptor) error { return sifInfo(c.App.Writer, d) })
				},
			},
			{
				Name:         "dump",
				Usage:        "write one data object's bytes to standard output",
				ArgsUsage:    "ID IMAGE.sif",
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, 2, "ID IMAGE.sif"); err != nil {
						return err
					}
					return withDescriptor(c, func(img *sifimage.Image, d sif.Descriptor) error {
						if _, err := io.Copy(c.App.Writer, d.GetReader()); err != nil {
							return fmt.Errorf("dump object %d: %w", d.ID(), err)
						}
						return nil
					})
				},
			},
		},
	}
}

func withSIF(path string, fn func(*sifimage.Image) error) error {
	img, err := sifimage.Open(path)
	if err != nil {
		return err
	}
	defer img.Close()
	return fn(img)
}

func withDescriptor(c *cli.Context, fn func(*sifimage.Image, sif.Descriptor) error) error {
	id, err := strconv.ParseUint(c.Args().Get(0), 10, 32)
	if err != nil || id == 0 {
		return fmt.Errorf("%q is not an object ID (a number from 'kerr sif list'): %w", c.Args().Get(0), errdefs.ErrUsage)
	}
	return withSIF(c.Args().Get(1), func(img *sifimage.Image) error {
		d, err := img.GetDescriptor(sif.WithID(uint32(id)))
		if err != nil {
			return fmt.Errorf("%s has no object %d: %w", c.Args().Get(1), id, errdefs.ErrNotFound)
		}
		return fn(img, d)
	})
}

func sifList(w io.Writer, img *sifimage.Image) error {
	fmt.Fprintf(w, "SIF %s, version %s, arch %s, %d/%d descriptors used\n", img.ID(), img.Version(), img.PrimaryArch(),
		img.DescriptorsTotal()-img.DescriptorsFree(), img.DescriptorsTotal())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tNAME\tOFFSET\tSIZE\tDETAILS")
	img.WithDescriptors(func(d sif.Descriptor) bool {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.ID(), d.DataType(), d.Name(), d.Offset(), d.Size(), details(d))
		return false
	})
	return tw.Flush()
}

func details(d sif.Descriptor) string {
	if d.DataType() != sif.DataPartition {
		return ""
	}
	fs, pt, arch, err := d.PartitionMetadata()
	if err != nil {
		return "unreadable partition metadata"
	}
	return fmt.Sprintf("%s|%s|%s", fs, pt, arch)
}

func sifInfo(w io.Writer, d sif.Descriptor) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	link, isGroup := d.LinkedID()
	linkStr := "none"
	if link != 0 {
		linkStr = strconv.FormatUint(uint64(link), 10)
		if isGroup {
			linkStr = "group " + linkStr
		}
	}
	fmt.Fprintf(tw, "ID:\t%d\n", d.ID())
	fmt.Fprintf(tw, "Type:\t%s\n", d.DataType())
	fmt.Fprintf(tw, "Name:\t%s\n", d.Name())
	fmt.Fprintf(tw, "Group:\t%d\n", d.GroupID())
	fmt.Fprintf(tw, "Link:\t%s\n", linkStr)
	fmt.Fprintf(tw, "Offset:\t%d\n", d.Offset())
	fmt.Fprintf(tw, "Size:\t%d\n", d.Size())
	fmt.Fprintf(tw, "Created:\t%s\n", d.CreatedAt().UTC().Format("2006-01-02 15:04:05 MST"))
	if d.DataType() == sif.DataPartition {
		fs, pt, arch, err := d.PartitionMetadata()
		if err == nil {
			fmt.Fprintf(tw, "Filesystem:\t%s\nPartition:\t%s\nArch:\t%s\n", fs, pt, arch)
		}
	}
	return tw.Flush()
}
