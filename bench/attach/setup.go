package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// install returns PREFIX/bin/kerr: that of -prefix, or of kerr configured and installed
// into the scratch dir (the starter's path is fixed at build time, so the oci commands
// need an install, not a bare binary), as bench/lifecycle does.
func install(ctx context.Context, root, work, prefix string) (string, error) {
	if prefix == "" {
		prefix = filepath.Join(work, "prefix")
		build := filepath.Join(work, "build")
		logPath := filepath.Join(work, "build.log")
		harness.Logf("building and installing kerr into %s (log: %s)", prefix, logPath)
		lf, err := os.Create(logPath)
		if err != nil {
			return "", err
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
				return "", fmt.Errorf("%s: %w (see %s)", strings.Join(argv, " "), err, logPath)
			}
		}
	}
	p, err := filepath.Abs(filepath.Join(prefix, "bin", "kerr"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no kerr in %s/bin: %w", prefix, err)
	}
	return p, nil
}

// busyboxApplets are the symlinks the bundles' rootfs needs: the processes' commands.
var busyboxApplets = []string{"sh", "head", "dd", "yes", "sleep", "true"}

// makeBundle makes an OCI bundle in dir as bench/lifecycle makes its own: a rootfs of the
// static busybox with its applets and the mount points of runc's default spec (the rootfs
// is read-only in that spec), and the config.json of `runc spec` with args and no
// terminal.
func makeBundle(ctx context.Context, dir, busybox, runc string, args []string) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), b, 0o755); err != nil {
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

// editSpec sets process.args and process.terminal=false in the config.json of `runc
// spec`, leaving the rest as it is (generic JSON: no field is lost).
func editSpec(spec []byte, args []string) ([]byte, error) {
	var c map[string]any
	d := json.NewDecoder(bytes.NewReader(spec))
	d.UseNumber()
	if err := d.Decode(&c); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	p, ok := c["process"].(map[string]any)
	if !ok {
		return nil, errors.New("config.json has no process object")
	}
	p["terminal"] = false
	p["args"] = args
	return json.MarshalIndent(c, "", "\t")
}
