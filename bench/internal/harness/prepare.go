package harness

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
)

// What the benchmarks do before they measure: find their tools, make their scratch
// directory, build and install kerr there, make OCI bundles.

// LookTools finds each of tools on PATH; hint says what installs them.
func LookTools(tools []string, hint string) (map[string]string, error) {
	paths := make(map[string]string, len(tools))
	for _, t := range tools {
		p, err := exec.LookPath(t)
		if err != nil {
			return nil, fmt.Errorf("%s is needed (%s): %w", t, hint, err)
		}
		paths[t] = p
	}
	return paths, nil
}

// StaticBusybox returns the busybox on PATH, refusing one that is dynamically linked (a
// bundle's rootfs has no libraries).
func StaticBusybox() (string, error) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox is needed (Debian: busybox-static): %w", err)
	}
	if err := CheckStatic(busybox); err != nil {
		return "", err
	}
	return busybox, nil
}

// ScratchDir returns the benchmark's scratch directory as an absolute path: dir, made
// (0700) if it is missing, or when dir is "" a new one under parent (the system's temp dir
// when "") named after pattern, outside the source tree so that `go test ./...` does not
// see a tree that changes under it. Either way CheckScratch must accept it. done removes
// a directory ScratchDir made, unless keep, and what is still mounted in it; it does
// nothing for one given.
func ScratchDir(dir, parent, pattern string, keep bool) (path string, done func(), err error) {
	done = func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp(parent, pattern); err != nil {
			return "", nil, err
		}
		if !keep {
			made := dir
			done = func() { RemoveUnmounted(made) }
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	if path, err = filepath.Abs(dir); err == nil {
		err = CheckScratch(path)
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return path, done, nil
}

// Installed returns the prefix of the kerr to measure: prefix (-prefix) as it is, or when
// it is "" work/prefix, where the kerr source tree src is configured and installed
// (./mconfig, make install), built in work/build with its log in work/build.log; what
// says what is built, for the log line. The starter's path is fixed at build time, so the
// benchmarks need an install, not bare binaries.
func Installed(ctx context.Context, src, work, prefix, what string) (string, error) {
	if prefix != "" {
		return prefix, nil
	}
	prefix = filepath.Join(work, "prefix")
	build := filepath.Join(work, "build")
	logPath := filepath.Join(work, "build.log")
	Logf("building %s and installing it into %s (log: %s)", what, prefix, logPath)
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
		cmd.Dir = src
		cmd.Stdout, cmd.Stderr = lf, lf
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s: %w (see %s)", strings.Join(argv, " "), err, logPath)
		}
	}
	return prefix, nil
}

// Binary returns PREFIX/bin/name as an absolute path, refusing one that is missing.
func Binary(prefix, name string) (string, error) {
	p, err := filepath.Abs(filepath.Join(prefix, "bin", name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s in %s/bin (make install puts kerr and kerr-runc there): %w", name, prefix, err)
	}
	return p, nil
}

// MakeBundle makes an OCI bundle in dir: a rootfs of the static busybox with applets
// (symlinks to it) and the mount points of runc's default spec (the rootfs is read-only
// in that spec, so the runtimes could not make them), and the config.json of `runc spec`
// with args and no terminal (EditSpec).
func MakeBundle(ctx context.Context, dir, busybox, runc string, applets, args []string) error {
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
	for _, a := range applets {
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
	if spec, err = EditSpec(spec, args); err != nil {
		return err
	}
	return os.WriteFile(cfgPath, spec, 0o644)
}

// EditSpec turns the config.json that `runc spec` wrote into a benchmark's: no terminal,
// args as given, everything else as runc made it (decoded as generic JSON, so that no
// field the spec types here do not know is lost, and numbers keep their digits).
func EditSpec(spec []byte, args []string) ([]byte, error) {
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
