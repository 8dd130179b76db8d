package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
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

// runCmd runs args with env (nil: ours) and stdin (nil: none) and measures it, its peak RSS
// with GNU time when that is installed (see harness.Cmd.PeakRSS).
func runCmd(ctx context.Context, env []string, stdin io.Reader, args ...string) (measure, error) {
	r, err := harness.Run(ctx, harness.Cmd{Args: args, Env: env, Stdin: stdin, PeakRSS: true, Tail: 15})
	return measure{Wall: r.Wall, CPU: r.CPU, MaxRSS: r.MaxRSS, Others: r.Others()}, err
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
	if err := harness.Settle(b.drop); err != nil {
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
