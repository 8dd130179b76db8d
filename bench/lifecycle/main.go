// Command lifecycle benchmarks the OCI container lifecycle of `kerr oci` (create, start,
// state, kill, delete; with kerr's monitor and with --no-monitor; and `kerr oci run`) and of
// kerr-runc (kerr's runtime with runc's command line: its four commands and its `run`)
// against runc and crun on the same bundle: a static busybox rootfs and the config.json of
// `runc spec`, running /bin/true. It measures a `run` (create + start + wait for the exit +
// delete, and each runtime's own `run`), each command apart, 50 containers at once, and the
// peak RSS of every command and of kerr's monitor. Run it as root from the repository root:
//
//	go run ./bench/lifecycle [-n 20]
//
// It runs in a private mount namespace of its own, without the hybrid host's cgroup v2
// mount (crun 1.8 refuses hybrid cgroups). See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

type config struct {
	n, concN, rssN int
	conc           int
	prefix         string
	work           string
	out            string
	keep           bool
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 20, "repetitions of the run and per-command measurements, each variant")
	flag.IntVar(&c.concN, "conc-n", 5, "repetitions of the concurrent measurement")
	flag.IntVar(&c.conc, "conc", 50, "containers at once in the concurrent measurement")
	flag.IntVar(&c.rssN, "rss-n", 5, "repetitions of the peak RSS measurement")
	flag.StringVar(&c.prefix, "prefix", "", "installed kerr to measure (default: ./mconfig and make install into the scratch dir)")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a new $TMPDIR/kerr-bench-lifecycle-*, removed)")
	flag.StringVar(&c.out, "o", "", "JSON report (default: bench/out/lifecycle.json)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	flag.Parse()
	if c.n < 1 || c.concN < 0 || c.conc < 1 || c.rssN < 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/lifecycle: run as root: the oci commands of all three runtimes are root only here")
		os.Exit(1)
	}
	if os.Getenv(nsEnv) == "" {
		harness.ReexecInNamespace(nsEnv, "bench/lifecycle") // does not return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	failed, err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/lifecycle:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// bench holds what every measurement needs.
type bench struct {
	tmp      string // scratch for pid files and outputs
	time     string // GNU time
	devNull  *os.File
	reaper   *reaper
	idPrefix string // of every container ID of this run
	ids      atomic.Int64
	runtimes []*ociRuntime
	// monitorGone counts waits that found kerr's monitor gone and read the exit status
	// from state.json instead.
	monitorGone atomic.Int64
	logMu       sync.Mutex
}

func (b *bench) logf(format string, args ...any) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	harness.Logf(format, args...)
}

// run sets up, measures and reports. failed says that some variant failed (the report
// says which, with the error) although the benchmark ran.
func run(ctx context.Context, c config) (failed bool, err error) {
	nsInfo, err := harness.PrepareNamespace()
	if err != nil {
		return false, err
	}
	tools, err := harness.LookTools([]string{"runc", "crun", "time", "unshare", "make", "true"},
		"Debian: runc crun time util-linux make")
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
		c.out = filepath.Join(root, "bench", "out", "lifecycle.json")
	}
	var done func()
	if c.work, done, err = harness.ScratchDir(c.work, "", "kerr-bench-lifecycle-", c.keep); err != nil {
		return false, err
	}
	defer done()
	kerr, err := install(ctx, root, c.work, c.prefix)
	if err != nil {
		return false, err
	}

	// A fresh run directory: bundles, state roots, outputs.
	runDir := filepath.Join(c.work, "run")
	if err := os.RemoveAll(runDir); err != nil {
		return false, err
	}
	b := &bench{tmp: filepath.Join(runDir, "tmp"), time: tools["time"], idPrefix: fmt.Sprintf("kbl%d", os.Getpid())}
	for _, d := range []string{runDir, b.tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return false, err
		}
	}
	if !c.keep {
		defer harness.RemoveUnmounted(runDir)
	}
	bundles := map[string]string{"true": filepath.Join(runDir, "bundle-true"), "sleep": filepath.Join(runDir, "bundle-sleep")}
	if err := harness.MakeBundle(ctx, bundles["true"], busybox, tools["runc"], busyboxApplets, []string{"/bin/true"}); err != nil {
		return false, err
	}
	// Runs until killed: for kill, a running state and the monitor's RSS while it waits.
	if err := harness.MakeBundle(ctx, bundles["sleep"], busybox, tools["runc"], busyboxApplets, []string{"/bin/sleep", "3600"}); err != nil {
		return false, err
	}
	rep := newReport(c, hostInfo(kerr, tools, busybox))
	rep.Namespace = nsInfo + ", cgroupfs"
	if rep.Spec, err = describeSpec(filepath.Join(bundles["true"], "config.json")); err != nil {
		return false, err
	}

	// From here on, every process is started and reaped by the bench (see proc.go): no
	// os/exec.
	if b.devNull, err = os.Open(os.DevNull); err != nil {
		return false, err
	}
	defer b.devNull.Close()
	if b.reaper, err = startReaper(); err != nil {
		return false, err
	}
	b.runtimes = []*ociRuntime{
		{name: "runc", bin: tools["runc"], root: filepath.Join(runDir, "root-runc")},
		{name: "crun", bin: tools["crun"], root: filepath.Join(runDir, "root-crun")},
		{name: "kerr", bin: kerr.kerr, root: filepath.Join(runDir, "root-kerr")},
		{name: "kerr-runc", bin: kerr.runc, root: filepath.Join(runDir, "root-kerr-runc")},
	}
	defer b.cleanup()
	variants := makeVariants(b.runtimes[0], b.runtimes[1], b.runtimes[2], b.runtimes[3])
	// Reference points: starting the process, and starting it in the spec's namespaces.
	bbox := filepath.Join(bundles["true"], "rootfs", "bin", "busybox")
	refs := []*variant{
		{Key: "exec-true", Name: "exec true", ref: true, argv: []string{bbox, "true"}, shown: "ROOTFS/bin/busybox true"},
		{Key: "unshare-true", Name: "unshare -fpnium true", ref: true,
			argv:  []string{tools["unshare"], "--fork", "--pid", "--net", "--ipc", "--uts", "--mount", bbox, "true"},
			shown: "unshare --fork --pid --net --ipc --uts --mount ROOTFS/bin/busybox true"},
	}
	for _, v := range append(append([]*variant(nil), variants...), refs...) {
		rep.Variants = append(rep.Variants, variantInfo{Key: v.Key, Name: v.Name, Commands: v.shownCommands()})
	}
	var seqs []*variant // the variants with separate commands
	for _, v := range variants {
		if !v.run {
			seqs = append(seqs, v)
		}
	}

	m := &measurer{b: b, rep: rep}
	t0 := time.Now()
	if err := m.runs(ctx, append(append([]*variant(nil), variants...), refs...), bundles["true"], c.n); err != nil {
		return false, err
	}
	if err := m.steps(ctx, seqs, bundles["true"], c.n); err != nil {
		return false, err
	}
	if err := m.concurrent(ctx, variants, bundles["true"], c.conc, c.concN); err != nil {
		return false, err
	}
	if err := m.rss(ctx, variants, bundles, tools["true"], c.rssN); err != nil {
		return false, err
	}
	rep.Seconds = time.Since(t0).Seconds()
	rep.MonitorGone = b.monitorGone.Load()
	rep.summarize()
	rep.printTable(os.Stdout)
	if err := harness.WriteReport(c.out, rep); err != nil {
		return false, err
	}
	return len(rep.Errors) > 0, nil
}

// makeVariants is what the benchmark compares, in the tables' order: runc's and crun's
// `run` and four commands; kerr's four commands with its monitor and without, its `run`;
// kerr-runc's four commands and its `run`.
func makeVariants(runc, crun, k, kr *ociRuntime) []*variant {
	return []*variant{
		{Key: "runc-run", Name: "runc run", rt: runc, run: true},
		{Key: "runc", Name: "runc", rt: runc},
		{Key: "crun-run", Name: "crun run", rt: crun, run: true},
		{Key: "crun", Name: "crun", rt: crun},
		{Key: "kerr", Name: "kerr", rt: k},
		{Key: "kerr-nomon", Name: "kerr --no-monitor", rt: k, noMonitor: true},
		{Key: "kerr-run", Name: "kerr run", rt: k, run: true},
		{Key: "kerr-runc", Name: "kerr-runc", rt: kr},
		{Key: "kerr-runc-run", Name: "kerr-runc run", rt: kr, run: true},
	}
}

// cleanup deletes every container this run left (with --force, by the runtime that made
// it; a delete that failed or an interrupted run leaves some), and reports the state
// directories and cgroups it could not remove.
func (b *bench) cleanup() {
	w, err := newWorker(b.tmp)
	if err != nil {
		harness.Logf("cleaning up: %v", err)
		return
	}
	defer w.close()
	for _, rt := range b.runtimes {
		ents, err := os.ReadDir(rt.root)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				harness.Logf("cleaning up %s: %v", rt.root, err)
			}
			continue
		}
		v := &variant{rt: rt}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			harness.Logf("cleaning up: %s container %s was left; deleting it", rt.name, e.Name())
			if _, err := b.exec(w, false, v.cmd("delete", "--force", e.Name())...); err != nil {
				harness.Logf("cleaning up: %v", err)
			}
		}
		if ents, _ := os.ReadDir(rt.root); len(ents) > 0 {
			harness.Logf("cleaning up: %s still holds %d entries", rt.root, len(ents))
		}
	}
	for _, cg := range harness.LeftoverCgroups(b.idPrefix) {
		harness.Logf("cleaning up: cgroup %s was left; removing it", cg)
		if err := os.Remove(cg); err != nil {
			harness.Logf("cleaning up: %v", err)
		}
	}
}
