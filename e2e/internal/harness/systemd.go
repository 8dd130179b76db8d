package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SystemdBinary is the init a Systemd boots (Debian's package systemd).
const SystemdBinary = "/lib/systemd/systemd"

// Systemd is a real systemd booted as the init of new pid, mount and cgroup namespaces,
// for tests of kerr's systemd cgroup driver on a host that does not run systemd (the
// reference VM and CI). It runs as systemd runs in a container: its cgroups are a subtree
// of the host's (NAME under the root of every hierarchy), which it mounts as its own
// /sys/fs/cgroup; its /run is a tmpfs of its own, where it makes /run/systemd/system and
// its private D-Bus socket; it starts a target that pulls in nothing. Commands run in it
// through Argv, from the cgroup NAME/tests, as a process outside systemd's units would on
// a systemd host.
type Systemd struct {
	name  string   // the subtree under each hierarchy
	roots []string // host mountpoints of the hierarchies
	fs    []cgroupFS
	boot  *exec.Cmd
	pid   int // systemd's pid, as the host sees it
	log   string
	enter string // the script Argv runs
}

// BootSystemd boots systemd with its log in dir/systemd.log and waits until its target is
// active. Close undoes it all.
func BootSystemd(dir string) (*Systemd, error) {
	if _, err := os.Stat(SystemdBinary); err != nil {
		return nil, fmt.Errorf("no systemd to boot (install Debian's package systemd): %w", err)
	}
	sd := &Systemd{name: fmt.Sprintf("kerr-e2e-systemd-%d", os.Getpid()), log: filepath.Join(dir, "systemd.log"),
		enter: filepath.Join(dir, "enter")}
	var err error
	if sd.fs, err = cgroupMounts(); err != nil {
		return nil, err
	}
	for _, m := range sd.fs {
		sd.roots = append(sd.roots, m.point)
	}
	ok := false
	defer func() {
		if !ok {
			_ = sd.Close()
		}
	}()
	if err := sd.mkdirs(sd.name); err != nil {
		return nil, err
	}
	unit := filepath.Join(dir, "kerr-e2e.target")
	if err := os.WriteFile(unit, []byte("[Unit]\nDescription=kerr e2e\nDefaultDependencies=no\n"), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(sd.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The shell joins NAME (the namespace's root cgroup) before unshare makes the cgroup
	// namespace; unshare forks systemd's pid 1, which gets cgroup filesystems mounted in
	// that namespace (so rooted at NAME: the inherited ones show the host's root, where
	// systemd would make its units), a /run of its own and the unit.
	inner := sd.mountScript() + `mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/systemd/system /run/lock && ` +
		`cp "$1" /run/systemd/system/ && exec env -i container=kerr-e2e PATH=/usr/sbin:/usr/bin:/sbin:/bin ` +
		SystemdBinary + ` --unit=kerr-e2e.target --log-target=console --log-level=info`
	script := sd.joinScript(sd.name) + `exec unshare --cgroup --pid --fork --mount --propagation private --mount-proc sh -c '` + inner + `' sh "$1"`
	sd.boot = exec.Command("/bin/sh", "-c", script, "sh", unit)
	sd.boot.Stdout, sd.boot.Stderr = logf, logf
	sd.boot.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := sd.boot.Start(); err != nil {
		return nil, fmt.Errorf("boot systemd: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sd.pid == 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("systemd did not start:\n%s", sd.Log())
		}
		sd.pid = childOf(sd.boot.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	// NAME/tests is made again as needed: systemd removes empty cgroups it does not know
	// of (when it starts, and when it prunes a hierarchy after a unit stops).
	var enter strings.Builder
	enter.WriteString("join() { mkdir -p \"$1/tests\" || return 1\n" +
		"  if [ -f \"$1/cpuset.cpus\" ] && [ -z \"$(cat \"$1/tests/cpuset.cpus\")\" ]; then\n" +
		"    cat \"$1/cpuset.cpus\" > \"$1/tests/cpuset.cpus\" && cat \"$1/cpuset.mems\" > \"$1/tests/cpuset.mems\" || return 1; fi\n" +
		"  echo $$ > \"$1/tests/cgroup.procs\"; }\n")
	for _, root := range sd.roots {
		fmt.Fprintf(&enter, "join %s 2>/dev/null || join %s || exit 125\n", filepath.Join(root, sd.name), filepath.Join(root, sd.name))
	}
	fmt.Fprintf(&enter, "exec nsenter -t %d -m -p -C -- \"$@\"\n", sd.pid)
	if err := os.WriteFile(sd.enter, []byte(enter.String()), 0o755); err != nil {
		return nil, err
	}

	for {
		isActive := sd.Argv("systemctl", "is-active", "kerr-e2e.target")
		out, err := exec.Command(isActive[0], isActive[1:]...).CombinedOutput()
		if strings.TrimSpace(string(out)) == "active" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("systemd's target is not active after 30s (systemctl is-active: %q, %v); its log:\n%s", out, err, sd.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ok = true
	return sd, nil
}

// Argv is the command line that runs argv in systemd's namespaces (argv[0] looked up in
// $PATH there), from the cgroup NAME/tests.
func (sd *Systemd) Argv(argv ...string) []string {
	return append([]string{"/bin/sh", sd.enter}, argv...)
}

// Properties returns systemd's properties props of unit (`systemctl show -p`).
func (sd *Systemd) Properties(unit string, props ...string) (map[string]string, error) {
	argv := sd.Argv("systemctl", "show", unit)
	for _, p := range props {
		argv = append(argv, "-p", p)
	}
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	m := map[string]string{}
	for l := range strings.SplitSeq(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// CgroupDir is the host path of cgroup (as systemd names it: "/system.slice/x.scope") in
// the hierarchy mounted at /sys/fs/cgroup/HIER ("" for a unified cgroup v2 host).
func (sd *Systemd) CgroupDir(hier, cgroup string) string {
	return filepath.Join("/sys/fs/cgroup", hier, sd.name, cgroup)
}

// Hierarchies lists the host mountpoints of the cgroup hierarchies.
func (sd *Systemd) Hierarchies() []string { return slices.Clone(sd.roots) }

// Name is the cgroup subtree systemd runs in, under the root of every hierarchy.
func (sd *Systemd) Name() string { return sd.name }

// Log is what systemd has printed.
func (sd *Systemd) Log() string {
	b, _ := os.ReadFile(sd.log)
	return string(b)
}

// Close kills systemd and everything in its pid namespace, and removes its cgroups.
func (sd *Systemd) Close() error {
	if sd.pid > 0 {
		_ = syscall.Kill(sd.pid, syscall.SIGKILL)
	}
	if sd.boot != nil && sd.boot.Process != nil {
		_ = sd.boot.Process.Kill()
		_ = sd.boot.Wait()
	}
	var errs []error
	for _, root := range sd.roots {
		if err := removeTree(filepath.Join(root, sd.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// joinScript is shell that moves the shell into cgroup sub of every hierarchy.
func (sd *Systemd) joinScript(sub string) string {
	var b strings.Builder
	for _, root := range sd.roots {
		fmt.Fprintf(&b, "echo $$ > %s || exit 125; ", filepath.Join(root, sub, "cgroup.procs"))
	}
	return b.String()
}

// mkdirs makes cgroup sub in every hierarchy (cpuset's with the parent's CPUs and nodes,
// which a new v1 cpuset lacks).
func (sd *Systemd) mkdirs(sub string) error {
	for _, root := range sd.roots {
		dir := filepath.Join(root, sub)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("%s/%s: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

// mountScript is shell that mounts the hierarchies again, as the host has them, over a
// new tmpfs at /sys/fs/cgroup (or cgroup2 alone there on a unified host).
func (sd *Systemd) mountScript() string {
	var b strings.Builder
	if len(sd.fs) != 1 || sd.fs[0].point != "/sys/fs/cgroup" {
		b.WriteString("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && ")
	}
	for _, m := range sd.fs {
		fmt.Fprintf(&b, "mkdir -p %s && mount -t %s -o %s cgroup %s && ", m.point, m.fstype, m.options, m.point)
	}
	return b.String()
}

// cgroupFS is one cgroup hierarchy the host has mounted.
type cgroupFS struct {
	point, fstype, options string
}

// cgroupMounts lists the host's cgroup mounts under /sys/fs/cgroup (v1 hierarchies and
// cgroup2), with their filesystem options.
func cgroupMounts() ([]cgroupFS, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupFS
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+3 >= len(fields) || len(fields) < 5 {
			continue
		}
		t, point := fields[sep+1], fields[4]
		if (t != "cgroup" && t != "cgroup2") || !strings.HasPrefix(point, "/sys/fs/cgroup") ||
			slices.ContainsFunc(out, func(m cgroupFS) bool { return m.point == point }) {
			continue
		}
		out = append(out, cgroupFS{point: point, fstype: t, options: fields[sep+3]})
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	return out, sc.Err()
}

// childOf returns the first child of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// removeTree removes a cgroup and its descendants, deepest first, retrying while the
// killed processes finish leaving them.
func removeTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for _, d := range dirs {
		var err error
		for i := 0; i < 100; i++ {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}
