package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/launch"
	"github.com/kerr-hpc/kerr/frontend/ocicli"
	"github.com/kerr-hpc/kerr/rpc/bundle"
)

func ociCommand() *cli.Command {
	return &cli.Command{
		Name:  "oci",
		Usage: "OCI bundles from SIF images, and OCI runtime-spec containers (root only)",
		Description: `The oci group is for root: cluster admins and OCI tooling. 'mount' turns a SIF
into an OCI bundle directory (config.json, rootfs/, overlay/) and 'umount' undoes it.
The other commands run containers from a bundle per the OCI runtime spec, with runc's
command line (create, start, state, exec, kill, delete, run, pause, resume, update, ps,
events, list, features), plus the monitor's attach and logs. kerr-runc is the same
runtime as a binary of its own.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: bundle.DefaultStateRoot, Usage: "directory of container state (as runc's --root); give it before the command"},
			&cli.BoolFlag{Name: "no-monitor", Usage: "create containers without the kerr monitor, as runc does (see 'create --help')"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "have systemd make each new container's cgroup, a scope unit (runc's flag; linux.cgroupsPath is then slice:prefix:name); cgroupfs by default"},
		},
		OnUsageError: usageError,
		Action:       groupAction,
		Subcommands: append([]*cli.Command{
			{
				Name:      "mount",
				Usage:     "make an OCI bundle from a SIF image",
				ArgsUsage: "IMAGE.sif BUNDLE",
				Description: `Attaches the SIF's squashfs root filesystem to a loop device (shared with other
bundles of the same SIF), mounts it read-only, and mounts an overlay at BUNDLE/rootfs whose
writes land in BUNDLE/overlay/upper, never in the SIF. Writes BUNDLE/config.json from the
image's OCI config. BUNDLE must not exist or be an empty directory.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "read-only", Usage: "no overlay: rootfs is the image itself, read-only (root.readonly in config.json)"},
				},
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, 2, "IMAGE.sif BUNDLE"); err != nil {
						return err
					}
					if err := needRoot(c); err != nil {
						return err
					}
					img, err := cleanAbs(c.Args().Get(0))
					if err != nil {
						return err
					}
					if _, err := os.Stat(img); err != nil {
						return fmt.Errorf("image %s: no such file: %w", img, errdefs.ErrNotFound)
					}
					dir, err := cleanAbs(c.Args().Get(1))
					if err != nil {
						return err
					}
					return runBundle(c, bundle.Config{Action: bundle.ActionMount, Image: img, Bundle: dir, ReadOnly: c.Bool("read-only")})
				},
			},
			{
				Name:      "umount",
				Usage:     "undo 'kerr oci mount': unmount and remove what it made",
				ArgsUsage: "BUNDLE",
				Description: `Unmounts the overlay and the image, lets the loop device go, and removes
config.json, rootfs/ and overlay/, leaving BUNDLE as it was before the mount.
It refuses while a container created from BUNDLE exists (state in 'kerr oci --root').
With --force it also unmounts busy mounts (lazily) and cleans a bundle that an
interrupted mount left half made.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "unmount even if busy; clean up after an interrupted mount"},
					&cli.BoolFlag{Name: "keep-overlay", Usage: "keep BUNDLE/overlay/upper (the container's writes)"},
				},
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1, "BUNDLE"); err != nil {
						return err
					}
					if err := needRoot(c); err != nil {
						return err
					}
					dir, err := cleanAbs(c.Args().Get(0))
					if err != nil {
						return err
					}
					root, err := cleanAbs(c.String("root"))
					if err != nil {
						return err
					}
					return runBundle(c, bundle.Config{Action: bundle.ActionUmount, Bundle: dir,
						Force: c.Bool("force"), KeepOverlay: c.Bool("keep-overlay"), StateRoot: root})
				},
			},
		}, ocicli.Commands()...),
	}
}

// runBundle hands cfg to the starter's root-only bundle engine.
func runBundle(c *cli.Context, cfg bundle.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrUsage)
	}
	return launch.Run(bundle.EngineName, bundle.ID(cfg.Bundle), cfg, launch.Options{CaptureStderr: true})
}

func needRoot(c *cli.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("'%s' needs root (it mounts filesystems): %w", c.Command.HelpName, errdefs.ErrDenied)
	}
	return nil
}

func cleanAbs(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if a == "/" {
		return "", fmt.Errorf("%q cannot be a bundle or an image: %w", p, errdefs.ErrUsage)
	}
	return a, nil
}
