package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// nsEnv marks the benchmark re-executed in its own mount namespace.
const nsEnv = "KERR_BENCH_LIFECYCLE_NS"

// kerrBins are the installed binaries the benchmark measures.
type kerrBins struct {
	kerr string // PREFIX/bin/kerr
	runc string // PREFIX/bin/kerr-runc
}

// install returns the kerr binaries to measure: those in -prefix, or those configured and
// installed into the scratch dir (the starter's path is fixed at build time, so the oci
// commands need an install, not a bare binary).
func install(ctx context.Context, root, work, prefix string) (kerrBins, error) {
	if prefix == "" {
		prefix = filepath.Join(work, "prefix")
		build := filepath.Join(work, "build")
		logPath := filepath.Join(work, "build.log")
		harness.Logf("building and installing kerr into %s (log: %s)", prefix, logPath)
		lf, err := os.Create(logPath)
		if err != nil {
			return kerrBins{}, err
		}
		defer lf.Close()
		for _, argv := range [][]string{
			{"./mconfig", "--prefix=" + prefix, "-b", build},
			{"make", "-C", build, "install"},
		} {
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = root
			cmd.Stdout, cmd.Stderr = lf, lf
			if err := cmd.Run(); err != nil {
				return kerrBins{}, fmt.Errorf("%s: %w (see %s)", strings.Join(argv, " "), err, logPath)
			}
		}
	}
	var bins kerrBins
	for _, b := range []struct {
		dst  *string
		name string
	}{{&bins.kerr, "kerr"}, {&bins.runc, "kerr-runc"}} {
		p, err := filepath.Abs(filepath.Join(prefix, "bin", b.name))
		if err != nil {
			return kerrBins{}, err
		}
		if _, err := os.Stat(p); err != nil {
			return kerrBins{}, fmt.Errorf("no %s in %s (make install puts kerr and kerr-runc in PREFIX/bin): %w", b.name, prefix, err)
		}
		*b.dst = p
	}
	return bins, nil
}

// busyboxApplets are the symlinks the bundles' rootfs needs: the processes' commands.
var busyboxApplets = []string{"sh", "true", "sleep"}

// makeBundle makes an OCI bundle in dir: a rootfs of the static busybox with its applets
// and the mount points of runc's default spec (the rootfs is read-only in that spec, so
// the runtimes could not make them), and the config.json of `runc spec` with args.
func makeBundle(ctx context.Context, dir, busybox, runc string, args []string) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(rootfs, "bin", "busybox")); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, runc, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "config.json")
	spec, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	if spec, err = editSpec(spec, args); err != nil {
		return err
	}
	return os.WriteFile(cfgPath, spec, 0o644)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
