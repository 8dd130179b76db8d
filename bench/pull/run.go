package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measure is what one command cost. CPU and MaxRSS come from wait4, so they cover the
// command and every descendant it waited for (tar2sqfs under kerr): CPU is their sum,
// MaxRSS the largest single process.
//
// Others is the share of the machine's CPU capacity that other processes used meanwhile
// (from /proc/stat, less what this command used; kernel threads writing back this command's
// output count too, a few percent): well above that, someone else was busy on the machine
// and the wall time is inflated.
type measure struct {
	Wall   float64 `json:"wall_s"`
	CPU    float64 `json:"cpu_s"`
	MaxRSS int64   `json:"max_rss_kib"`
	Others float64 `json:"others_cpu_share"`
}

// add appends o, a later part of the same run, to m.
func (m *measure) add(o measure) {
	if w := m.Wall + o.Wall; w > 0 {
		m.Others = (m.Others*m.Wall + o.Others*o.Wall) / w
	}
	m.Wall += o.Wall
	m.CPU += o.CPU
	m.MaxRSS = max(m.MaxRSS, o.MaxRSS)
}

// busyCPU returns the CPU seconds the machine has spent on anything but idle and iowait.
func busyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return float64(ticks) / 100 // USER_HZ
}

// runCmd runs args with env (nil: ours) and stdin (nil: none) and measures it.
//
// The peak RSS comes from GNU time when it is installed: Go starts commands with vfork, and
// the kernel carries the parent's peak RSS over to the child at exec, so the wait4 figure of a
// command started from here is never below this process's own peak. time forks for real.
func runCmd(ctx context.Context, env []string, stdin io.Reader, args ...string) (measure, error) {
	shown := strings.Join(args, " ")
	var rssFile string
	if tb, err := exec.LookPath("time"); err == nil && filepath.IsAbs(tb) {
		f, err := os.CreateTemp("", "bench-rss-")
		if err != nil {
			return measure{}, err
		}
		rssFile = f.Name()
		f.Close()
		defer os.Remove(rssFile)
		args = append([]string{tb, "-f", "%M", "-o", rssFile}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	busy0 := busyCPU()
	start := time.Now()
	err := cmd.Run()
	m := measure{Wall: time.Since(start).Seconds()}
	busy := busyCPU() - busy0
	if ps := cmd.ProcessState; ps != nil {
		m.CPU = (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			m.MaxRSS = ru.Maxrss
		}
	}
	if rssFile != "" {
		b, _ := os.ReadFile(rssFile)
		// On failure time writes "Command exited with non-zero status N" first.
		last := lastLines(string(b), 1)
		if kib, perr := strconv.ParseInt(strings.TrimSpace(last), 10, 64); perr == nil {
			m.MaxRSS = kib
		}
	}
	m.Others = max(0, busy-m.CPU) / (m.Wall * float64(runtime.NumCPU()))
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", shown, err, lastLines(out.String(), 15))
	}
	return m, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// bench holds what every iteration needs.
type bench struct {
	work   string // scratch directory, on the disk the outputs would go to
	kerr   string // kerr binary
	ref    string // HOST:PORT/REPO:TAG
	policy string // containers-policy.json for skopeo
	cpus   int
	drop   bool // drop_caches works here
	logf   func(format string, args ...any)
}

// settle writes dirty pages back and empties the page cache, so that every iteration starts
// cold: the registry's blobs, the tools' binaries and the previous outputs come from disk.
func (b *bench) settle() {
	syscall.Sync()
	if !b.drop {
		return
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.drop = false
		b.logf("cannot drop the page cache (%v): iterations after the first run warm", err)
	}
}

// kerrRun is one cold `kerr pull`: an empty cache, no output.
type kerrRun struct {
	measure
	OutputBytes int64 `json:"output_bytes"`
}

func (b *bench) kerrPull(ctx context.Context, cache, out string, env ...string) (measure, error) {
	env = append(append(os.Environ(), "KERR_CACHEDIR="+cache), env...)
	return runCmd(ctx, env, nil, b.kerr, "-q", "pull", "--insecure", out, "docker://"+b.ref)
}

func (b *bench) runKerr(ctx context.Context) (kerrRun, error) {
	cache := filepath.Join(b.work, "kerr-cache")
	out := filepath.Join(b.work, "kerr.sif")
	if err := removeAll(cache, out); err != nil {
		return kerrRun{}, err
	}
	b.settle()
	m, err := b.kerrPull(ctx, cache, out)
	if err != nil {
		return kerrRun{}, err
	}
	r := kerrRun{measure: m, OutputBytes: fileSize(out)}
	return r, removeAll(cache, out)
}

// baselineRun is one run of Singularity's pipeline, stage by stage.
type baselineRun struct {
	measure
	Stages      map[string]measure `json:"stages"`
	OutputBytes int64              `json:"output_bytes"`
	SquashBytes int64              `json:"squashfs_bytes"`
}

// baselineStages are the stages of Singularity's pull, in order.
var baselineStages = []string{"copy", "unpack", "mksquashfs", "sif"}

// baselinePaths are the baseline's scratch paths in work.
type baselinePaths struct{ oci, rootfs, sqfs, sif string }

func (b *bench) baselinePaths() baselinePaths {
	return baselinePaths{
		oci:    filepath.Join(b.work, "oci"),
		rootfs: filepath.Join(b.work, "rootfs"),
		sqfs:   filepath.Join(b.work, "baseline.sqfs"),
		sif:    filepath.Join(b.work, "baseline.sif"),
	}
}

func (p baselinePaths) all() []string { return []string{p.oci, p.rootfs, p.sqfs, p.sif} }

// baselineCommands are the commands of each stage. The copy and the unpack are what
// Singularity does through containers/image and umoci's library: an OCI layout, then the
// layers applied one by one into a directory (raw unpack: no runtime config, no mtree
// manifest). mksquashfs gets Singularity's arguments: its default compressor, gzip, and no
// -processors, so every core, as kerr's tar2sqfs -j gets. The SIF gets the squashfs as its primary partition.
func (b *bench) baselineCommands(p baselinePaths) map[string][][]string {
	tag := b.ref[strings.LastIndexByte(b.ref, ':')+1:]
	return map[string][][]string{
		"copy": {{"skopeo", "--policy", b.policy, "copy", "--quiet", "--src-tls-verify=false",
			"docker://" + b.ref, "oci:" + p.oci + ":" + tag}},
		"unpack":     {{"umoci", "raw", "unpack", "--image", p.oci + ":" + tag, p.rootfs}},
		"mksquashfs": {{"mksquashfs", p.rootfs, p.sqfs, "-comp", "gzip", "-noappend", "-no-progress", "-quiet"}},
		"sif": {
			{"siftool", "new", p.sif},
			{"siftool", "add", p.sif, p.sqfs, "--datatype", "4", "--parttype", "2", "--partfs", "1",
				"--partarch", sifArch()},
		},
	}
}

func (b *bench) runBaseline(ctx context.Context) (baselineRun, error) {
	p := b.baselinePaths()
	if err := removeAll(p.all()...); err != nil {
		return baselineRun{}, err
	}
	b.settle()
	r, err := b.baselineUpTo(ctx, p, "sif")
	if err != nil {
		return r, err
	}
	r.OutputBytes, r.SquashBytes = fileSize(p.sif), fileSize(p.sqfs)
	return r, removeAll(p.all()...)
}

// baselineUpTo runs the baseline's stages up to and including last.
func (b *bench) baselineUpTo(ctx context.Context, p baselinePaths, last string) (baselineRun, error) {
	cmds := b.baselineCommands(p)
	r := baselineRun{Stages: map[string]measure{}}
	start := time.Now()
	for _, st := range baselineStages {
		var sm measure
		for _, args := range cmds[st] {
			m, err := runCmd(ctx, nil, nil, args...)
			if err != nil {
				return r, fmt.Errorf("baseline %s: %w", st, err)
			}
			sm.add(m)
		}
		r.Stages[st] = sm
		r.add(sm)
		if st == last {
			break
		}
	}
	// The whole, gaps between the commands included.
	r.Wall = time.Since(start).Seconds()
	return r, nil
}

// sifArch is siftool's --partarch number for this machine.
func sifArch() string {
	switch runtime.GOARCH {
	case "386":
		return "1"
	case "arm":
		return "3"
	case "arm64":
		return "4"
	case "ppc64":
		return "5"
	case "ppc64le":
		return "6"
	case "s390x":
		return "11"
	case "riscv64":
		return "12"
	}
	return "2" // amd64
}

func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
