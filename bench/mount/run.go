package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// image is one size's inputs: the SIF and the tar of the same tree.
type image struct {
	label    string // e.g. "200MB"
	sif, tar string
	tree     treeInfo
	sifBytes int64
	tarBytes int64
}

// imageMeta is kept next to a built image, so that a later run with -work reuses it.
type imageMeta struct {
	Target int64    `json:"target_bytes"`
	Seed   uint64   `json:"seed"`
	Tree   treeInfo `json:"tree"`
}

func label(size int64) string {
	if size >= 1e9 && size%1e8 == 0 {
		return strconv.FormatFloat(float64(size)/1e9, 'f', -1, 64) + "GB"
	}
	return strconv.FormatInt(size/1e6, 10) + "MB"
}

// prepare generates the tree for a SIF of about size bytes, tars it and builds the SIF with
// `kerr build`, unless the scratch dir holds them from an earlier run with the same seed.
// The tree itself is removed: the benchmark only needs its tar and its SIF.
func prepare(ctx context.Context, work, kerr string, size int64, seed uint64) (*image, error) {
	im := &image{label: label(size)}
	base := filepath.Join(work, "image-"+im.label)
	im.sif, im.tar = base+".sif", base+".tar"
	metaPath := base + ".json"
	var meta imageMeta
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &meta) == nil && meta.Target == size && meta.Seed == seed {
		if st, err := os.Stat(im.sif); err == nil {
			if tt, err := os.Stat(im.tar); err == nil {
				im.tree, im.sifBytes, im.tarBytes = meta.Tree, st.Size(), tt.Size()
				harness.Logf("%s: reusing %s and %s", im.label, im.sif, im.tar)
				return im, nil
			}
		}
	}
	for _, p := range []string{metaPath, im.sif, im.tar} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}

	tree := base + ".tree"
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tree)
	t0 := time.Now()
	info, err := generateTree(ctx, tree, int64(float64(size)/squashRatio), seed)
	if err != nil {
		return nil, fmt.Errorf("generating %s: %w", tree, err)
	}
	harness.Logf("%s: generated %d files, %.0f MB in %.1fs", im.label, info.Files, float64(info.FileBytes)/1e6, time.Since(t0).Seconds())
	t0 = time.Now()
	if out, err := exec.CommandContext(ctx, "tar", "-C", tree, "-cf", im.tar, ".").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tar -cf %s: %w\n%s", im.tar, err, out)
	}
	harness.Logf("%s: tar in %.1fs", im.label, time.Since(t0).Seconds())
	t0 = time.Now()
	if out, err := exec.CommandContext(ctx, kerr, "-q", "build", im.sif, tree).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kerr build %s: %w\n%s", im.sif, err, out)
	}
	harness.Logf("%s: kerr build in %.1fs", im.label, time.Since(t0).Seconds())

	st, err := os.Stat(im.sif)
	if err != nil {
		return nil, err
	}
	tt, err := os.Stat(im.tar)
	if err != nil {
		return nil, err
	}
	im.tree, im.sifBytes, im.tarBytes = info, st.Size(), tt.Size()
	b, err := json.Marshal(imageMeta{Target: size, Seed: seed, Tree: info})
	if err != nil {
		return nil, err
	}
	return im, os.WriteFile(metaPath, b, 0o644)
}

// measure is what one command cost: wall time, CPU time of it and what it waited for, and
// the share of the machine's CPUs that other processes used meanwhile (from /proc/stat;
// well above a few percent, the machine was busy and the wall time is inflated).
type measure struct {
	Wall   float64 `json:"wall_s"`
	CPU    float64 `json:"cpu_s"`
	Others float64 `json:"others_cpu_share"`
}

// runCmd runs args and measures it.
func runCmd(ctx context.Context, args ...string) (measure, error) {
	r, err := harness.Run(ctx, harness.Cmd{Args: args})
	m := measure{Wall: r.Wall, CPU: r.CPU}
	// A few milliseconds are below /proc/stat's resolution; only longer runs say something.
	if m.Wall > 0.05 {
		m.Others = r.Others()
	}
	return m, err
}

// pair is one iteration of one side: making the root filesystem (mount, or tar -xf) and
// getting rid of it (umount, or rm -rf).
type pair struct {
	First  measure `json:"make"`
	Second measure `json:"remove"`
	// Sync is the writeback of what tar -xf left dirty, which it does not wait for; it is
	// not part of the tar side's time (tools that unpack do not sync either).
	Sync float64 `json:"sync_s,omitempty"`
}

func (p pair) total() float64 { return p.First.Wall + p.Second.Wall }

// bench holds what every iteration needs.
type bench struct {
	work, runDir string
	kerr         string
	drop         bool // drop_caches works here
	mounted      []string
}

// settle writes dirty pages back and empties the page cache, so that each measurement
// starts cold: the SIF's header and superblock, the tar and the tools come from disk.
func (b *bench) settle() {
	if err := harness.Settle(b.drop); err != nil {
		b.drop = false
		harness.Logf("cannot drop the page cache (%v): the measurements after the first read warm data", err)
	}
}

// kerrOnce mounts im's SIF as a new bundle, checks the bundle and unmounts it.
func (b *bench) kerrOnce(ctx context.Context, im *image, i int) (pair, error) {
	bundle := filepath.Join(b.runDir, fmt.Sprintf("bundle-%s-%d", im.label, i))
	b.settle()
	var p pair
	var err error
	if p.First, err = runCmd(ctx, b.kerr, "-q", "oci", "mount", im.sif, bundle); err != nil {
		return p, err
	}
	b.mounted = append(b.mounted, bundle)
	// Not timed: the bundle is usable (its rootfs shows the tree).
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "data", "part000.bin")); err != nil {
		return p, fmt.Errorf("the bundle's rootfs does not show the image: %w", err)
	}
	if p.Second, err = runCmd(ctx, b.kerr, "-q", "oci", "umount", bundle); err != nil {
		return p, err
	}
	b.mounted = b.mounted[:len(b.mounted)-1]
	if _, err := os.Lstat(bundle); !errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("kerr oci umount left %s (%v)", bundle, err)
	}
	return p, nil
}

// tarOnce extracts im's tar into a fresh directory and removes it.
func (b *bench) tarOnce(ctx context.Context, im *image, i int) (pair, error) {
	dir := filepath.Join(b.runDir, fmt.Sprintf("rootfs-%s-%d", im.label, i))
	b.settle()
	var p pair
	var err error
	if err := os.Mkdir(dir, 0o755); err != nil {
		return p, err
	}
	if p.First, err = runCmd(ctx, "tar", "-xf", im.tar, "-C", dir); err != nil {
		return p, err
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "part000.bin")); err != nil {
		return p, fmt.Errorf("tar -xf did not unpack the tree: %w", err)
	}
	t0 := time.Now()
	syscall.Sync()
	p.Sync = time.Since(t0).Seconds()
	if p.Second, err = runCmd(ctx, "rm", "-rf", dir); err != nil {
		return p, err
	}
	return p, nil
}

// cleanup unmounts what an interrupted run left mounted.
func (b *bench) cleanup() {
	for _, bundle := range b.mounted {
		if out, err := exec.Command(b.kerr, "-q", "oci", "umount", "--force", bundle).CombinedOutput(); err != nil {
			harness.Logf("cleaning up %s: %v: %s", bundle, err, out)
		}
	}
	harness.RemoveUnmounted(b.runDir)
}
