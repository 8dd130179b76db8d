package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kerr-hpc/kerr/errdefs"
	"github.com/kerr-hpc/kerr/frontend/image/sifimage"
)

// envFiles are shown by inspect --environment, in the order they are sourced.
var envFiles = []string{"/.singularity.d/env/10-docker2singularity.sh", "/.singularity.d/env/90-environment.sh"}

// inspection is what `kerr inspect --json` prints.
type inspection struct {
	Labels      map[string]string `json:"labels"`
	Runscript   string            `json:"runscript"`
	Environment string            `json:"environment"`
	Config      json.RawMessage   `json:"config"`
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an image's labels, runscript, environment and OCI config",
		ArgsUsage: "IMAGE.sif",
		Description: `Without a selection flag every section is shown. It reads the SIF without
mounting it, so it needs no privilege.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object with keys labels, runscript, environment, config"},
			&cli.BoolFlag{Name: "labels", Aliases: []string{"l"}, Usage: "show the labels"},
			&cli.BoolFlag{Name: "runscript", Aliases: []string{"r"}, Usage: "show the runscript"},
			&cli.BoolFlag{Name: "environment", Aliases: []string{"e"}, Usage: "show the environment scripts"},
			&cli.BoolFlag{Name: "config", Usage: "show the OCI image config"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "IMAGE.sif"); err != nil {
				return err
			}
			ins, err := inspectSIF(c.Args().First())
			if err != nil {
				return err
			}
			w := c.App.Writer
			if c.Bool("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(ins)
			}
			all := !c.Bool("labels") && !c.Bool("runscript") && !c.Bool("environment") && !c.Bool("config")
			if all || c.Bool("labels") {
				printLabels(w, ins.Labels)
			}
			if all || c.Bool("runscript") {
				fmt.Fprintf(w, "== runscript ==\n%s\n", strings.TrimRight(ins.Runscript, "\n"))
			}
			if all || c.Bool("environment") {
				fmt.Fprintf(w, "== environment ==\n%s\n", strings.TrimRight(ins.Environment, "\n"))
			}
			if all || c.Bool("config") {
				fmt.Fprintln(w, "== OCI config ==")
				if string(ins.Config) == "null" {
					fmt.Fprintln(w, "(none)")
				} else {
					var v any
					_ = json.Unmarshal(ins.Config, &v)
					b, _ := json.MarshalIndent(v, "", "  ")
					fmt.Fprintf(w, "%s\n", b)
				}
			}
			return nil
		},
	}
}

func printLabels(w io.Writer, labels map[string]string) {
	fmt.Fprintln(w, "== labels ==")
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, labels[k])
	}
}

func inspectSIF(path string) (*inspection, error) {
	img, err := sifimage.Open(path)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if _, err := img.RootFS(); err != nil {
		return nil, err
	}
	ins := &inspection{Config: json.RawMessage("null")}
	if ins.Labels, err = img.Labels(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := img.OCIConfig()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg != nil {
		if !json.Valid(cfg) {
			return nil, fmt.Errorf("%s: OCI config is not valid JSON: %w", path, errdefs.ErrInvalidImage)
		}
		ins.Config = cfg
	}
	rs, err := img.ReadRootFile("/.singularity.d/runscript")
	if err != nil && !sifimage.IsNotExist(err) {
		return nil, err
	}
	ins.Runscript = string(rs)
	var env strings.Builder
	for _, f := range envFiles {
		b, err := img.ReadRootFile(f)
		if sifimage.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&env, "=== %s ===\n%s\n", f, strings.TrimRight(string(b), "\n"))
	}
	ins.Environment = env.String()
	return ins, nil
}
