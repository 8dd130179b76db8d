package cli

import (
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/buildcfg"
	"github.com/kerr-hpc/kerr/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:         "policy",
		Usage:        "check the admin policy (" + buildcfg.PolicyFile() + ")",
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
