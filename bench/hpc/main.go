// Command hpc benchmarks kerr's HPC mode: `kerr exec IMAGE true` run by an unprivileged
// user through the setuid starter, with a root-owned SIF (the kernel's squashfs on a loop
// device) and with a SIF the user owns (squashfuse), against `runc run` and `crun run` of
// the same root filesystem as root, and 32 concurrent `kerr exec` (a job's ranks) against
// 32 concurrent `unshare -m -p -f --mount-proc true`. Run it as root from the repository
// root:
//
//	go run ./bench/hpc [-n 30] [-conc 32] [-conc-n 5]
//
// It builds and installs kerr's committed HEAD into a scratch prefix (or measures
// -prefix), creates the account kerr-bench and removes it at the end, and runs in a
// private mount namespace of its own without the hybrid host's cgroup v2 mount (crun 1.8
// refuses hybrid cgroups). See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

type config struct {
	n        int    // sequential runs of each variant, after a warm-up round
	conc     int    // commands at once in the concurrent measurement
	concN    int    // rounds of the concurrent measurement, after a warm-up round
	prefix   string // an installed kerr to measure
	worktree bool   // build the working tree instead of HEAD
	work     string
	out      string
	keep     bool
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 30, "runs of each variant, one at a time (after a warm-up round)")
	flag.IntVar(&c.conc, "conc", 32, "commands started at once in the concurrent measurement")
	flag.IntVar(&c.concN, "conc-n", 5, "rounds of the concurrent measurement, each variant (after a warm-up round); 0 skips it")
	flag.StringVar(&c.prefix, "prefix", "", "installed kerr to measure, e.g. /usr/local (default: build and install the repository's HEAD into the scratch dir)")
	flag.BoolVar(&c.worktree, "worktree", false, "build the working tree, uncommitted changes included, instead of HEAD")
	flag.StringVar(&c.work, "work", "", "scratch directory, not under /tmp or /var/tmp (default: a new /var/lib/kerr-bench-hpc-*, removed)")
	flag.StringVar(&c.out, "o", "", "JSON report (default: bench/out/hpc.json)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory (the account is removed anyway)")
	flag.Parse()
	if c.n < 1 || c.conc < 1 || c.concN < 0 || flag.NArg() != 0 || (c.prefix != "" && c.worktree) {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/hpc: run as root: it installs a setuid starter, creates an account and runs runc and crun")
		os.Exit(1)
	}
	if os.Getenv(nsEnv) == "" {
		harness.ReexecInNamespace(nsEnv, "bench/hpc") // does not return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	failed, err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/hpc:", err)
		os.Exit(1)
	}
	if failed {
		harness.Logf("some variants failed or left something behind: see the report")
		os.Exit(1)
	}
}
