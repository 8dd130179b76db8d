// Command pull benchmarks `kerr pull` against the pipeline Singularity uses to pull an image
// (copy it, unpack it to a directory, mksquashfs the directory, put it in a SIF), on the same
// machine, in the same run, with the same compressor (gzip).
//
// It generates a deterministic multi-layer image of about 200 MB, pushes it to a
// docker-registry on loopback, then alternates cold pulls of both pipelines and reports the
// median wall times and their ratio. Run it as root from the repository root:
//
//	go run ./bench/pull [-n 3]
//
// See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

type config struct {
	n        int
	kerr     string
	work     string
	out      string
	seed     uint64
	scale    float64
	stages   bool
	keep     bool
	registry string
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 3, "iterations of each pipeline")
	flag.StringVar(&c.kerr, "kerr", "", "kerr binary to measure (default: build ./cmd/kerr)")
	flag.StringVar(&c.work, "work", "", "scratch directory; outputs and caches go there (default: $TMPDIR/kerr-bench-pull-*)")
	flag.StringVar(&c.out, "o", "", "JSON report (default: bench/out/pull.json)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the generated image")
	flag.Float64Var(&c.scale, "scale", 1, "image size factor (1: about 200 MB compressed)")
	flag.BoolVar(&c.stages, "stages", true, "after the iterations, time the parts of each pipeline once and compare the outputs' contents")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	flag.StringVar(&c.registry, "registry", "/usr/bin/docker-registry", "docker-registry binary")
	flag.Parse()
	if c.n < 1 || c.scale <= 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/pull:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the baseline unpacks with ownership and drops the page cache")
	}
	for _, tool := range []string{"skopeo", "umoci", "mksquashfs", "unsquashfs", "siftool", "tar2sqfs", "tar", c.registry} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed (apt-get install skopeo umoci squashfs-tools squashfs-tools-ng siftool docker-registry): %w", tool, err)
		}
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	outDir := filepath.Join(root, "bench", "out")
	if c.out == "" {
		c.out = filepath.Join(outDir, "pull.json")
	}
	if c.work == "" {
		// Outside the source tree: `go test ./...` must not see a tree that changes under it.
		if c.work, err = os.MkdirTemp("", "kerr-bench-pull-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	if c.work, err = filepath.Abs(c.work); err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(c.work)
	}

	if c.kerr == "" {
		c.kerr = filepath.Join(c.work, "kerr")
		harness.Logf("building kerr")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", c.kerr, "./cmd/kerr")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/kerr: %w\n%s", err, out)
		}
	}
	if c.kerr, err = filepath.Abs(c.kerr); err != nil {
		return err
	}

	harness.Logf("generating the image (seed %d, scale %g)", c.seed, c.scale)
	genDir := filepath.Join(c.work, "layers")
	if err := os.MkdirAll(genDir, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	layers, err := generateLayers(ctx, genDir, c.seed, c.scale)
	if err != nil {
		return err
	}
	img, err := buildImage(layers)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	harness.Logf("generated %d layers in %.1fs, manifest %s", len(layers), time.Since(t0).Seconds(), digest)

	reg, err := startRegistry(ctx, c.registry, filepath.Join(c.work, "registry"))
	if err != nil {
		return err
	}
	defer reg.stop()
	ref := reg.addr + "/bench/pull:v1"
	t0 = time.Now()
	if err := push(ctx, ref, img); err != nil {
		return err
	}
	harness.Logf("pushed %s in %.1fs", ref, time.Since(t0).Seconds())

	policy := filepath.Join(c.work, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`+"\n"), 0o644); err != nil {
		return err
	}
	b := &bench{work: c.work, kerr: c.kerr, ref: ref, policy: policy, cpus: runtime.NumCPU(), drop: true, logf: harness.Logf}

	rep := &report{
		Date: time.Now().UTC().Format(time.RFC3339), Iterations: c.n, Compressor: "gzip",
		Host:  hostInfo(c.kerr),
		Image: imageReport(ref, digest.String(), layers),
	}
	rep.Kerr.Command = []string{"kerr", "-q", "pull", "--insecure", "OUT.sif", "docker://" + ref}
	for _, st := range baselineStages {
		for _, args := range b.baselineCommands(b.baselinePaths())[st] {
			rep.Baseline.Commands = append(rep.Baseline.Commands, strings.Join(args, " "))
		}
	}

	// Alternate, and alternate which side goes first, so that neither always runs on a
	// machine the other has just warmed or tired.
	for i := range c.n {
		kerrFirst := i%2 == 0
		for turn := range 2 {
			if (turn == 0) == kerrFirst {
				r, err := b.runKerr(ctx)
				if err != nil {
					return err
				}
				harness.Logf("iteration %d: kerr %.2fs", i+1, r.Wall)
				rep.Kerr.Runs = append(rep.Kerr.Runs, r)
			} else {
				r, err := b.runBaseline(ctx)
				if err != nil {
					return err
				}
				harness.Logf("iteration %d: baseline %.2fs (copy %.2f, unpack %.2f, mksquashfs %.2f, sif %.2f)", i+1, r.Wall,
					r.Stages["copy"].Wall, r.Stages["unpack"].Wall, r.Stages["mksquashfs"].Wall, r.Stages["sif"].Wall)
				rep.Baseline.Runs = append(rep.Baseline.Runs, r)
			}
		}
	}
	rep.DropCaches = b.drop
	rep.summarize()

	if c.stages {
		harness.Logf("timing the parts of each pipeline")
		if rep.Diagnostics, err = b.diagnose(ctx, layers); err != nil {
			return fmt.Errorf("diagnostics: %w", err)
		}
		rep.DropCaches = rep.DropCaches && b.drop
	}

	rep.printTable(os.Stdout)
	return harness.WriteReport(c.out, rep)
}
