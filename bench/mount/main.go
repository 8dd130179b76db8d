// Command mount benchmarks `kerr oci mount` + `kerr oci umount` (a SIF becomes an OCI bundle
// through a loop device, a squashfs mount and an overlay, whatever its size) against what
// tools that unpack images do to get a root filesystem: `tar -xf` of the same tree into a
// fresh directory, then `rm -rf` of it. It builds SIFs of about 10 MB, 200 MB and 1 GB with
// `kerr build` from generated trees, and checks that mounting the largest costs at most 1.5
// times mounting the smallest. Run it as root from the repository root:
//
//	go run ./bench/mount [-n 5]
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

type config struct {
	n      int
	sizes  []int64 // target SIF sizes in bytes
	prefix string
	work   string
	out    string
	seed   uint64
	keep   bool
}

// maxRatio is the criterion: mount(largest) / mount(smallest), medians.
const maxRatio = 1.5

func main() {
	var c config
	var sizes string
	flag.IntVar(&c.n, "n", 5, "iterations of each side for each size")
	flag.StringVar(&sizes, "sizes", "10,200,1000", "target SIF sizes in MB, comma separated, smallest first")
	flag.StringVar(&c.prefix, "prefix", "", "installed kerr to measure (default: ./mconfig and make install into the scratch dir)")
	flag.StringVar(&c.work, "work", "", "scratch directory; images built there are reused by later runs (default: a new $TMPDIR/kerr-bench-mount-*, removed)")
	flag.StringVar(&c.out, "o", "", "JSON report (default: bench/out/mount.json)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the generated trees")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	flag.Parse()
	var err error
	if c.sizes, err = parseSizes(sizes); err != nil || c.n < 1 || flag.NArg() != 0 {
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/mount:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/mount:", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]int64, error) {
	var out []int64
	for f := range strings.SplitSeq(s, ",") {
		mb, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || mb < 1 {
			return nil, fmt.Errorf("-sizes: %q is not a size in MB", f)
		}
		if len(out) > 0 && mb*1e6 <= out[len(out)-1] {
			return nil, errors.New("-sizes: list them smallest first")
		}
		out = append(out, mb*1e6)
	}
	if len(out) < 2 {
		return nil, errors.New("-sizes: at least two sizes, to compare")
	}
	return out, nil
}

func run(ctx context.Context, c config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: kerr oci mount is root only, and the page cache is dropped between iterations")
	}
	for _, tool := range []string{"tar", "rm", "tar2sqfs", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed (scripts/install-deps.sh installs kerr's build and runtime dependencies): %w", tool, err)
		}
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	if c.out == "" {
		c.out = filepath.Join(root, "bench", "out", "mount.json")
	}
	var done func()
	if c.work, done, err = harness.ScratchDir(c.work, "", "kerr-bench-mount-", c.keep); err != nil {
		return err
	}
	defer done()

	prefix, err := harness.Installed(ctx, root, c.work, c.prefix, "kerr")
	if err != nil {
		return err
	}
	kerr, err := harness.Binary(prefix, "kerr")
	if err != nil {
		return err
	}
	b := &bench{work: c.work, kerr: kerr, drop: true}
	// Bundles and extractions of this run; anything left there at the end is reported.
	b.runDir = filepath.Join(c.work, "run")
	if err := os.RemoveAll(b.runDir); err != nil {
		return err
	}
	if err := os.Mkdir(b.runDir, 0o700); err != nil {
		return err
	}
	defer b.cleanup()

	rep := &report{Date: time.Now().UTC().Format(time.RFC3339), Iterations: c.n, Host: hostInfo(kerr), MaxRatio: maxRatio}
	rep.Commands.Kerr = []string{"kerr -q oci mount IMAGE.sif BUNDLE", "kerr -q oci umount BUNDLE"}
	rep.Commands.Tar = []string{"tar -xf IMAGE.tar -C DIR", "rm -rf DIR"}
	var images []*image
	for _, size := range c.sizes {
		im, err := prepare(ctx, c.work, kerr, size, c.seed)
		if err != nil {
			return err
		}
		images = append(images, im)
		rep.Sizes = append(rep.Sizes, &sizeReport{Label: im.label, Tree: im.tree, SIFBytes: im.sifBytes, TarBytes: im.tarBytes})
	}

	// Every iteration measures every size, so that a slow spell of the machine touches all
	// sizes alike; within one size the side that goes first alternates.
	for i := range c.n {
		for j, im := range images {
			sr := rep.Sizes[j]
			for turn := range 2 {
				if (turn == 0) == (i%2 == 0) {
					r, err := b.kerrOnce(ctx, im, i)
					if err != nil {
						return err
					}
					sr.Kerr = append(sr.Kerr, r)
				} else {
					r, err := b.tarOnce(ctx, im, i)
					if err != nil {
						return err
					}
					sr.Tar = append(sr.Tar, r)
				}
			}
			k, t := sr.Kerr[len(sr.Kerr)-1], sr.Tar[len(sr.Tar)-1]
			harness.Logf("iteration %d, %s: kerr mount %.3fs umount %.3fs; tar -xf %.2fs rm -rf %.2fs", i+1, im.label,
				k.First.Wall, k.Second.Wall, t.First.Wall, t.Second.Wall)
		}
	}
	rep.DropCaches = b.drop
	rep.summarize()
	rep.printTable(os.Stdout)

	return harness.WriteReport(c.out, rep)
}
