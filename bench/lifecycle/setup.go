package main

import (
	"context"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// nsEnv marks the benchmark re-executed in its own mount namespace.
const nsEnv = "KERR_BENCH_LIFECYCLE_NS"

// kerrBins are the installed binaries the benchmark measures.
type kerrBins struct {
	kerr string // PREFIX/bin/kerr
	runc string // PREFIX/bin/kerr-runc
}

// install returns the kerr binaries to measure: those in -prefix, or those configured and
// installed into the scratch dir.
func install(ctx context.Context, root, work, prefix string) (kerrBins, error) {
	prefix, err := harness.Installed(ctx, root, work, prefix, "kerr")
	if err != nil {
		return kerrBins{}, err
	}
	var bins kerrBins
	if bins.kerr, err = harness.Binary(prefix, "kerr"); err != nil {
		return kerrBins{}, err
	}
	if bins.runc, err = harness.Binary(prefix, "kerr-runc"); err != nil {
		return kerrBins{}, err
	}
	return bins, nil
}

// busyboxApplets are the symlinks the bundles' rootfs needs: the processes' commands.
var busyboxApplets = []string{"sh", "true", "sleep"}
