package main

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// nsEnv marks the benchmark re-executed in its own mount namespace.
const nsEnv = "KERR_BENCH_LIFECYCLE_NS"

// unified is the cgroup v2 hierarchy of a hybrid host. crun 1.8 refuses hybrid cgroups
// ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"), so the
// benchmark unmounts it in a private mount namespace of its own, and runs all three
// runtimes there: the same cgroup view (v1 only) for each, and the host's mounts as they
// were.
const unified = "/sys/fs/cgroup/unified"

// reexecInNamespace runs this program again in a new mount namespace whose mounts are
// private (what `unshare --mount --propagation private` does: Go makes / rprivate in the
// child when Unshareflags has CLONE_NEWNS), passes signals on and exits with its status.
// Nothing the child unmounts reaches the host.
func reexecInNamespace() {
	self, err := os.Executable()
	if err == nil {
		cmd := exec.Command(self, os.Args[1:]...)
		cmd.Env = append(os.Environ(), nsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		if err = cmd.Start(); err == nil {
			forwardSignals(cmd.Process)
			err = cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(max(1, ee.ExitCode()))
			}
			if err == nil {
				os.Exit(0)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "bench/lifecycle: re-executing in a mount namespace:", err)
	os.Exit(1)
}

// inNamespace prepares the namespace the benchmark was re-executed in, and says what the
// runtimes find there.
func inNamespace() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return "a private mount namespace, the host's cgroups", nil // not a hybrid host
	}
	if err := syscall.Unmount(unified, 0); err != nil {
		return "", fmt.Errorf("umount %s in the benchmark's mount namespace: %w", unified, err)
	}
	// crun then takes the directory underneath for a named hierarchy: it makes ID/cgroup.procs
	// there and cannot remove it (a file, on the tmpfs of /sys/fs/cgroup, which is the host's
	// too, hidden under its cgroup2 mount). A tmpfs of the namespace's own takes that litter
	// and goes with the namespace.
	if err := syscall.Mount("tmpfs", unified, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=755"); err != nil {
		return "", fmt.Errorf("mount a tmpfs on %s in the benchmark's mount namespace: %w", unified, err)
	}
	harness.Logf("replaced %s by an empty tmpfs in the benchmark's private mount namespace (crun 1.8 refuses hybrid cgroups)", unified)
	return "a private mount namespace with an empty tmpfs on " + unified + " (crun 1.8 refuses hybrid cgroups): cgroup v1", nil
}

// checkScratch refuses a scratch directory that someone else could change under root.
func checkScratch(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !info.IsDir() || !ok || st.Uid != 0 || info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("scratch dir %s must be a directory owned by root and writable only by it", dir)
	}
	return nil
}

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

// checkStatic refuses a busybox that needs a dynamic loader: the rootfs has no libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: install busybox-static", path)
		}
	}
	return nil
}

// removeUnmounted removes dir unless something is still mounted under it (removing would
// reach into the mount).
func removeUnmounted(dir string) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		harness.Logf("not removing %s: %v", dir, err)
		return
	}
	for line := range strings.SplitSeq(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			harness.Logf("not removing %s: %s is still mounted", dir, f[4])
			return
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		harness.Logf("removing %s: %v", dir, err)
	}
}

// leftoverCgroups lists the cgroup directories, two levels deep in each v1 hierarchy
// (kerr's /kerr/ID, runc's and crun's /ID), whose name starts with prefix: cgroups of this
// run's containers that a delete left.
func leftoverCgroups(prefix string) []string {
	var out []string
	hiers, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hiers {
		base := filepath.Join("/sys/fs/cgroup", h.Name())
		var st unix.Statfs_t
		if unix.Statfs(base, &st) != nil || (st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC) {
			continue // not a cgroup hierarchy: the tmpfs on unified
		}
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(base, p)
			if strings.HasPrefix(d.Name(), prefix) {
				out = append(out, p)
				return fs.SkipDir
			}
			if rel != "." && strings.Count(rel, "/") >= 1 {
				return fs.SkipDir
			}
			return nil
		})
	}
	return out
}
