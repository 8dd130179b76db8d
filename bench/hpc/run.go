package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// run sets up, measures, cleans up and reports. failed says that a variant failed or
// something was left behind (the report says what) although the benchmark ran.
func run(ctx context.Context, c config) (failed bool, err error) {
	nsInfo, err := harness.PrepareNamespace()
	if err != nil {
		return false, err
	}
	tools, err := harness.LookTools([]string{"runc", "crun", "unshare", "true", "make", "git", "tar", "useradd", "usermod", "userdel"},
		"Debian: runc crun util-linux coreutils make git tar passwd")
	if err != nil {
		return false, err
	}
	busybox, err := harness.StaticBusybox()
	if err != nil {
		return false, err
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return false, err
	}
	if c.out == "" {
		c.out = filepath.Join(root, "bench", "out", "hpc.json")
	}
	var done func()
	if c.work, done, err = harness.ScratchDir(c.work, defaultWorkParent, "kerr-bench-hpc-", c.keep); err != nil {
		return false, err
	}
	defer done()
	// The account reaches kerr, its home and the images through it.
	if err := os.Chmod(c.work, 0o755); err != nil {
		return false, err
	}
	for _, d := range []string{os.TempDir(), "/tmp", "/var/tmp"} {
		if c.work == d || strings.HasPrefix(c.work, d+"/") {
			harness.Logf("WARNING: the scratch directory %s is under %s, which kerr exec binds into the container with what is mounted below it: "+
				"the starter's session mounts under PREFIX/var too, which makes each run mount more than an install elsewhere would", c.work, d)
		}
	}
	loadBefore := loadavg()
	kerr, source, err := install(ctx, root, c.work, c)
	if err != nil {
		return false, err
	}

	// A fresh run directory: the account's home, the images, the bundle, the runtimes'
	// roots, the commands' output.
	runDir := filepath.Join(c.work, "run")
	if err := os.RemoveAll(runDir); err != nil {
		return false, err
	}
	for _, d := range []string{runDir, filepath.Join(runDir, "home"), filepath.Join(runDir, "img")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return false, err
		}
	}
	if !c.keep {
		defer harness.RemoveUnmounted(runDir)
	}
	rep := newReport(c)
	rep.Kerr, rep.Namespace, rep.LoadBefore = source, nsInfo, loadBefore
	cl := &cleaner{work: c.work, kerr: kerr, rep: rep}
	defer cl.run() // on an early return; the normal path runs it before the report

	acct, err := makeAccount(filepath.Join(runDir, "home"))
	cl.acct = acct
	if err != nil {
		return false, err
	}
	rep.Account = fmt.Sprintf("%s (uid %d, gid %d)", acct.name, acct.uid, acct.gid)
	rootfs := filepath.Join(runDir, "rootfs")
	if err := makeRootfs(rootfs, busybox); err != nil {
		return false, err
	}
	rootSIF, userSIF, bundleSIF, err := makeImages(ctx, kerr, filepath.Join(runDir, "img"), rootfs, acct)
	if err != nil {
		return false, err
	}
	if rep.Policy, err = readPolicy(ctx, kerr, acct.name, rootSIF, userSIF); err != nil {
		return false, err
	}
	bundle := filepath.Join(runDir, "bundle")
	cl.bundle = bundle
	if rep.Spec, err = makeBundle(ctx, kerr, bundleSIF, bundle); err != nil {
		return false, err
	}
	rep.Host = harness.HostInfo(map[string][]string{
		"kerr":    {kerr, "--version"},
		"runc":    {tools["runc"], "--version"},
		"crun":    {tools["crun"], "--version"},
		"unshare": {tools["unshare"], "--version"},
		"busybox": {busybox, "--help"},
	})

	path := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	b := &bench{
		acct: acct, runDir: runDir, rep: rep, failed: map[string]bool{},
		idPrefix: fmt.Sprintf("kbh%d", os.Getpid()),
		userEnv:  []string{path, "HOME=" + acct.home, "USER=" + acct.name, "LOGNAME=" + acct.name, "LANG=C.UTF-8"},
		rootEnv:  []string{path, "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"},
	}
	cl.idPrefix = b.idPrefix
	runcRoot, crunRoot := filepath.Join(runDir, "root-runc"), filepath.Join(runDir, "root-crun")
	cl.runtimes = map[string][]string{
		"runc": {tools["runc"], "--root", runcRoot},
		"crun": {tools["crun"], "--root", crunRoot, "--cgroup-manager=cgroupfs"},
	}
	fixed := func(argv ...string) func() []string { return func() []string { return argv } }
	ociRun := func(key string) func() []string {
		return func() []string {
			return append(append([]string(nil), cl.runtimes[key]...), "run", "--bundle", bundle, b.newID(key))
		}
	}
	vs := map[string]*variant{
		"true": {Key: "true", Name: "/bin/true", user: true, argv: fixed(tools["true"]), shown: "true"},
		"kerr-root": {Key: "kerr-root", Name: "kerr exec, root-owned SIF", user: true, kerr: true, sif: rootSIF,
			argv: fixed(kerr, "exec", rootSIF, "true"), shown: "kerr exec ROOT.sif true"},
		"kerr-user": {Key: "kerr-user", Name: "kerr exec, user-owned SIF", user: true, kerr: true, sif: userSIF,
			argv: fixed(kerr, "exec", userSIF, "true"), shown: "kerr exec USER.sif true"},
		"runc": {Key: "runc", Name: "runc run", argv: ociRun("runc"),
			shown: "runc --root ROOT run --bundle BUNDLE ID"},
		"crun": {Key: "crun", Name: "crun run", argv: ociRun("crun"),
			shown: "crun --root ROOT --cgroup-manager=cgroupfs run --bundle BUNDLE ID"},
		"unshare": {Key: "unshare", Name: "unshare -mpf --mount-proc", argv: fixed(tools["unshare"], "-m", "-p", "-f", "--mount-proc", "true"),
			shown: "unshare -m -p -f --mount-proc true"},
	}
	seqKeys := []string{"true", "kerr-root", "kerr-user", "runc", "crun", "unshare"}
	concKeys := []string{"kerr-root", "kerr-user", "unshare", "true"}
	for _, k := range seqKeys {
		v := vs[k]
		as := "root"
		if v.user {
			as = acct.name
		}
		rep.Variants = append(rep.Variants, variantInfo{Key: k, Name: v.Name, As: as, Command: v.shown})
	}
	if err := b.check(ctx, kerr, rootSIF, userSIF); err != nil {
		return false, err
	}

	t0 := time.Now()
	var seq, conc []*variant
	for _, k := range seqKeys {
		seq = append(seq, vs[k])
	}
	for _, k := range concKeys {
		conc = append(conc, vs[k])
	}
	if err := b.sequential(ctx, seq, c.n); err != nil {
		return false, err
	}
	if c.concN > 0 {
		if err := b.concurrent(ctx, conc, c.conc, c.concN); err != nil {
			return false, err
		}
	}
	rep.Seconds = time.Since(t0).Seconds()
	cl.run()
	rep.LoadAfter = loadavg()
	rep.summarize()
	rep.printTable(os.Stdout)
	if err := harness.WriteReport(c.out, rep); err != nil {
		return false, err
	}
	return len(rep.Errors) > 0 || len(rep.Leaks) > 0, nil
}

// check runs, untimed, what the variants rely on: the payload runs as the account from
// either image, and the bundle runs under runc and crun.
func (b *bench) check(ctx context.Context, kerr, rootSIF, userSIF string) error {
	out, err := b.outFile()
	if err != nil {
		return err
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	for _, sif := range []string{rootSIF, userSIF} {
		v := &variant{Key: "check", Name: "check", user: true, kerr: true, argv: func() []string { return []string{kerr, "exec", sif, "id", "-u"} }}
		if _, err := b.exec(v, out); err != nil {
			return fmt.Errorf("kerr exec as %s: %w", b.acct.name, err)
		}
		if got, want := readAll(out), strconv.FormatUint(uint64(b.acct.uid), 10); got != want {
			return fmt.Errorf("kerr exec %s id -u as %s printed %q, want %q", sif, b.acct.name, got, want)
		}
		if _, err := b.settle(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// defaultWorkParent holds the default scratch directory. Not $TMPDIR: kerr exec binds the
// host's /tmp and /var/tmp into the container recursively (the default policy), and with
// the install's session directory (PREFIX/var/lib/kerr/mnt/session) under /tmp each run's
// own session mounts would be bound in again, 26 more mounts than an install in /usr/local
// makes. /var/lib is root's, searchable by all (the account reaches kerr, its home and the
// images through the scratch directory) and, here, not mounted nosuid.
const defaultWorkParent = "/var/lib"

// cleaner undoes the setup, once, and records in the report whatever the run left
// behind: containers in the runtimes' roots, their cgroups, processes of the account,
// loop devices of the images, mounts under the scratch directory, files of the account in
// /tmp, /var/tmp and /dev/shm. It removes the account last.
type cleaner struct {
	done     bool
	work     string
	kerr     string
	rep      *report
	acct     *account
	bundle   string
	idPrefix string
	runtimes map[string][]string // runc and crun with their --root (and crun's cgroup manager)
}

func (cl *cleaner) leak(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	harness.Logf("cleaning up: %s", msg)
	cl.rep.Leaks = append(cl.rep.Leaks, msg)
}

func (cl *cleaner) run() {
	if cl.done {
		return
	}
	cl.done = true
	for name, argv := range cl.runtimes {
		root := argv[2]
		ents, err := os.ReadDir(root)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			harness.Logf("cleaning up %s: %v", root, err)
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			cl.leak("%s container %s was left; deleting it", name, e.Name())
			del := append(append([]string(nil), argv...), "delete", "--force", e.Name())
			if out, err := exec.Command(del[0], del[1:]...).CombinedOutput(); err != nil {
				harness.Logf("cleaning up: %s: %v: %s", strings.Join(del, " "), err, out)
			}
		}
	}
	if cl.idPrefix != "" {
		for _, cg := range harness.LeftoverCgroups(cl.idPrefix) {
			cl.leak("cgroup %s was left; removing it", cg)
			if err := os.Remove(cg); err != nil {
				harness.Logf("cleaning up: %v", err)
			}
		}
	}
	if cl.bundle != "" {
		if _, err := os.Lstat(cl.bundle); err == nil {
			if out, err := exec.Command(cl.kerr, "-q", "oci", "umount", cl.bundle).CombinedOutput(); err != nil {
				cl.leak("kerr oci umount %s: %v: %s; trying --force", cl.bundle, err, strings.TrimSpace(string(out)))
				if out, err := exec.Command(cl.kerr, "-q", "oci", "umount", "--force", cl.bundle).CombinedOutput(); err != nil {
					harness.Logf("cleaning up: kerr oci umount --force %s: %v: %s", cl.bundle, err, out)
				}
			}
			if ents, err := os.ReadDir(cl.bundle); err == nil {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				cl.leak("kerr oci umount left %s with %v", cl.bundle, names)
			}
		}
	}
	if cl.acct != nil && cl.acct.uid != 0 {
		if procs := processesOf(cl.acct.uid); len(procs) > 0 {
			cl.leak("processes of %s still running: %s; killing them", cl.acct.name, strings.Join(procs, "; "))
			killProcessesOf(cl.acct.uid)
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, dev := range loopsWhere(func(backing string) bool { return strings.HasPrefix(backing, cl.work+"/") }) {
		backing, _ := os.ReadFile(filepath.Join("/sys/block", dev, "loop", "backing_file"))
		cl.leak("loop device /dev/%s still attached to %s; detaching it", dev, strings.TrimSpace(string(backing)))
		if out, err := exec.Command("losetup", "-d", "/dev/"+dev).CombinedOutput(); err != nil {
			harness.Logf("cleaning up: losetup -d /dev/%s: %v: %s", dev, err, out)
		}
	}
	for _, m := range harness.MountsUnder(cl.work) {
		cl.leak("%s is still mounted; detaching it", m)
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if cl.acct != nil && cl.acct.uid != 0 {
		for _, dir := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				p := filepath.Join(dir, e.Name())
				var st unix.Stat_t
				if unix.Lstat(p, &st) == nil && st.Uid == cl.acct.uid {
					cl.leak("%s, owned by %s, was left; removing it", p, cl.acct.name)
					_ = os.RemoveAll(p)
				}
			}
		}
	}
	if cl.acct != nil {
		if err := cl.acct.remove(); err != nil {
			harness.Logf("cleaning up: %v", err)
		}
	}
}
