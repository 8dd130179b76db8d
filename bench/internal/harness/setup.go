package harness

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// What the benchmarks that run containers share: checks of their inputs, a private mount
// namespace where crun accepts this hybrid host, and the leak checks after them.

// CheckScratch refuses a scratch directory that someone else could change under root.
func CheckScratch(dir string) error {
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

// CheckStatic refuses a busybox that needs a dynamic loader: the rootfs has no libraries.
func CheckStatic(path string) error {
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

// MountsUnder lists the mount points at or under dir in this mount namespace, innermost
// (latest) first.
func MountsUnder(dir string) []string {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append([]string{f[4]}, out...)
		}
	}
	return out
}

// RemoveUnmounted removes dir unless something is still mounted under it (removing would
// reach into the mount).
func RemoveUnmounted(dir string) {
	if ms := MountsUnder(dir); len(ms) > 0 {
		Logf("not removing %s: %s is still mounted", dir, ms[0])
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		Logf("removing %s: %v", dir, err)
	}
}

// LeftoverCgroups lists the cgroup directories, two levels deep in each hierarchy (where
// runtimes put containers), whose names start with prefix.
func LeftoverCgroups(prefix string) []string {
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

// ForwardSignals passes SIGINT and SIGTERM on to p.
func ForwardSignals(p *os.Process) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range ch {
			_ = p.Signal(s)
		}
	}()
}

// ReexecInNamespace runs this program again, with envVar=1, in a new mount namespace whose
// mounts are private (what `unshare --mount --propagation private` does: Go makes / rprivate
// in the child when Unshareflags has CLONE_NEWNS), passes signals on and exits with its
// status. Nothing the child unmounts reaches the host. name is the benchmark's, for errors.
func ReexecInNamespace(envVar, name string) {
	self, err := os.Executable()
	if err == nil {
		cmd := exec.Command(self, os.Args[1:]...)
		cmd.Env = append(os.Environ(), envVar+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		if err = cmd.Start(); err == nil {
			ForwardSignals(cmd.Process)
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
	fmt.Fprintf(os.Stderr, "%s: re-executing in a mount namespace: %v\n", name, err)
	os.Exit(1)
}

// unified is the cgroup v2 hierarchy of a hybrid host. crun 1.8 refuses hybrid cgroups
// ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"), so the
// benchmarks unmount it in a private mount namespace of their own, and run every runtime
// there: the same cgroup view (v1 only) for each, and the host's mounts as they were.
const unified = "/sys/fs/cgroup/unified"

// PrepareNamespace prepares the namespace a benchmark was re-executed in (see
// ReexecInNamespace), and says what the runtimes find there.
func PrepareNamespace() (string, error) {
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
	Logf("replaced %s by an empty tmpfs in the benchmark's private mount namespace (crun 1.8 refuses hybrid cgroups)", unified)
	return "a private mount namespace with an empty tmpfs on " + unified + " (crun 1.8 refuses hybrid cgroups): cgroup v1", nil
}
