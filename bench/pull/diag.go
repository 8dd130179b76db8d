package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// diagnostics split the pull into parts, once, after the timed iterations: where does each
// pipeline spend its time, and do both outputs hold the same files?
type diagnostics struct {
	// KerrBlobsCached is `kerr pull` with every blob already in its cache (and no SIF cached):
	// flatten, tar2sqfs and the SIF, without the download.
	KerrBlobsCached measure `json:"kerr_blobs_cached"`
	// KerrVariants are cold pulls with kerr's tar2sqfs given extra options (through a
	// wrapper first in PATH): what changing kerr's tar2sqfs arguments would gain.
	KerrVariants []variant `json:"kerr_tar2sqfs_variants"`
	// Gunzip is decompressing every layer in one goroutine, as kerr's flattener reads them.
	Gunzip measure `json:"gunzip_layers"`
	// Tar2sqfs and Mksquashfs build a squashfs from the same flattened content: tar2sqfs from
	// a tar on stdin (kerr's way), mksquashfs from the unpacked directory (Singularity's).
	Tar2sqfs        measure `json:"tar2sqfs_from_tar"`
	Tar2sqfsBytes   int64   `json:"tar2sqfs_bytes"`
	Mksquashfs      measure `json:"mksquashfs_from_dir"`
	MksquashfsBytes int64   `json:"mksquashfs_bytes"`
	// Tar2sqfsLevel6 is tar2sqfs with gzip level 6 instead of the default 9 (which
	// mksquashfs uses too): what a faster kerr default would cost in size.
	Tar2sqfsLevel6      measure `json:"tar2sqfs_gzip6_from_tar"`
	Tar2sqfsLevel6Bytes int64   `json:"tar2sqfs_gzip6_bytes"`
	FlatTarBytes        int64   `json:"flat_tar_bytes"`
	Content             content `json:"content"`
}

// variant is a cold kerr pull whose tar2sqfs got Options too.
type variant struct {
	Options     string  `json:"tar2sqfs_options"`
	Run         measure `json:"run"`
	OutputBytes int64   `json:"output_bytes"`
}

// tar2sqfsVariants: a deeper queue between tar2sqfs's reader and its compressor threads
// (the default is 10 blocks per job, too few to keep 2 cores busy), and gzip level 6.
var tar2sqfsVariants = []string{"-Q 100", "-Q 100 -X level=6"}

// content compares the root filesystems of both outputs, path by path.
type content struct {
	KerrEntries     int      `json:"kerr_entries"`
	BaselineEntries int      `json:"baseline_entries"`
	OnlyKerr        []string `json:"only_kerr"`     // kerr's Singularity layout and mount points are expected here
	OnlyBaseline    []string `json:"only_baseline"` // should be empty
	// RemovedPresent lists the paths the update layer deletes that an output still has.
	RemovedPresent []string `json:"removed_present"`
}

func (b *bench) diagnose(ctx context.Context, layers []layerFile) (*diagnostics, error) {
	d := &diagnostics{}

	// kerr with its blobs cached: one cold pull fills the cache, then only the SIF goes.
	cache := filepath.Join(b.work, "kerr-cache")
	out := filepath.Join(b.work, "kerr.sif")
	if err := removeAll(cache, out); err != nil {
		return nil, err
	}
	if _, err := b.kerrPull(ctx, cache, out); err != nil {
		return nil, err
	}
	kerrList, err := sifListing(ctx, out)
	if err != nil {
		return nil, err
	}
	if err := removeAll(filepath.Join(cache, "sif"), out); err != nil {
		return nil, err
	}
	b.settle()
	if d.KerrBlobsCached, err = b.kerrPull(ctx, cache, out); err != nil {
		return nil, err
	}
	if err := removeAll(cache, out); err != nil {
		return nil, err
	}
	for i, opts := range tar2sqfsVariants {
		v, err := b.kerrVariant(ctx, filepath.Join(b.work, fmt.Sprintf("variant%d", i)), opts)
		if err != nil {
			return nil, err
		}
		d.KerrVariants = append(d.KerrVariants, v)
	}

	b.settle()
	if d.Gunzip, err = gunzipAll(layers); err != nil {
		return nil, err
	}

	// The same flattened content for both squashfs builders.
	p := b.baselinePaths()
	if err := removeAll(p.all()...); err != nil {
		return nil, err
	}
	if _, err := b.baselineUpTo(ctx, p, "unpack"); err != nil {
		return nil, err
	}
	tarPath := filepath.Join(b.work, "flat.tar")
	tsqfs := filepath.Join(b.work, "tar2sqfs.sqfs")
	defer removeAll(tarPath, tsqfs)
	if _, err := runCmd(ctx, nil, nil, "tar", "--numeric-owner", "-C", p.rootfs, "-cf", tarPath, "."); err != nil {
		return nil, err
	}
	d.FlatTarBytes = fileSize(tarPath)
	b.settle()
	cmds := b.baselineCommands(p)
	if d.Mksquashfs, err = runCmd(ctx, nil, nil, cmds["mksquashfs"][0]...); err != nil {
		return nil, err
	}
	d.MksquashfsBytes = fileSize(p.sqfs)
	b.settle()
	if d.Tar2sqfs, err = b.tar2sqfs(ctx, tarPath, tsqfs); err != nil {
		return nil, err
	}
	d.Tar2sqfsBytes = fileSize(tsqfs)
	b.settle()
	if d.Tar2sqfsLevel6, err = b.tar2sqfs(ctx, tarPath, tsqfs, "-X", "level=6"); err != nil {
		return nil, err
	}
	d.Tar2sqfsLevel6Bytes = fileSize(tsqfs)

	baseList, err := squashfsListing(ctx, p.sqfs, 0)
	if err != nil {
		return nil, err
	}
	d.Content = compare(kerrList, baseList)
	return d, removeAll(p.all()...)
}

// kerrVariant times a cold kerr pull whose tar2sqfs is a wrapper in dir adding opts.
func (b *bench) kerrVariant(ctx context.Context, dir, opts string) (variant, error) {
	bin, err := exec.LookPath("tar2sqfs")
	if err != nil {
		return variant{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return variant{}, err
	}
	defer os.RemoveAll(dir)
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", bin, opts)
	if err := os.WriteFile(filepath.Join(dir, "tar2sqfs"), []byte(script), 0o755); err != nil {
		return variant{}, err
	}
	cache := filepath.Join(dir, "cache")
	out := filepath.Join(dir, "kerr.sif")
	b.settle()
	m, err := b.kerrPull(ctx, cache, out, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err != nil {
		return variant{}, fmt.Errorf("kerr with tar2sqfs %s: %w", opts, err)
	}
	return variant{Options: opts, Run: m, OutputBytes: fileSize(out)}, nil
}

// tar2sqfs runs tar2sqfs the way kerr does, with extra options, on the tar in file.
func (b *bench) tar2sqfs(ctx context.Context, tarPath, out string, extra ...string) (measure, error) {
	tf, err := os.Open(tarPath)
	if err != nil {
		return measure{}, err
	}
	defer tf.Close()
	args := append([]string{"tar2sqfs", "-q", "-f", "-c", "gzip", "-j", strconv.Itoa(b.cpus)}, extra...)
	return runCmd(ctx, nil, tf, append(args, out)...)
}

// gunzipAll decompresses every layer file, one after the other, and discards the bytes.
func gunzipAll(layers []layerFile) (measure, error) {
	start := time.Now()
	for _, lf := range layers {
		f, err := os.Open(lf.path)
		if err != nil {
			return measure{}, err
		}
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
		if err == nil {
			_, err = io.Copy(io.Discard, zr)
		}
		f.Close()
		if err != nil {
			return measure{}, fmt.Errorf("gunzip %s: %w", lf.path, err)
		}
	}
	return measure{Wall: time.Since(start).Seconds()}, nil
}

// sifListing lists the paths in a SIF's primary squashfs partition.
func sifListing(ctx context.Context, path string) ([]string, error) {
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	desc, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	_ = f.UnloadContainer()
	if err != nil {
		return nil, fmt.Errorf("%s: no root filesystem partition: %w", path, err)
	}
	return squashfsListing(ctx, path, desc.Offset())
}

// squashfsListing lists the paths in the squashfs at offset in path, without extracting.
func squashfsListing(ctx context.Context, path string, offset int64) ([]string, error) {
	out, err := exec.CommandContext(ctx, "unsquashfs", "-o", strconv.FormatInt(offset, 10), "-l", path).Output()
	if err != nil {
		return nil, fmt.Errorf("unsquashfs -l %s: %w", path, err)
	}
	var paths []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\n")
		if rest, ok := strings.CutPrefix(line, "squashfs-root/"); ok {
			paths = append(paths, rest)
		}
	}
	slices.Sort(paths)
	return paths, nil
}

func compare(kerr, base []string) content {
	c := content{KerrEntries: len(kerr), BaselineEntries: len(base)}
	inKerr := make(map[string]bool, len(kerr))
	for _, p := range kerr {
		inKerr[p] = true
	}
	inBase := make(map[string]bool, len(base))
	for _, p := range base {
		inBase[p] = true
		if !inKerr[p] {
			c.OnlyBaseline = append(c.OnlyBaseline, p)
		}
	}
	for _, p := range kerr {
		if !inBase[p] {
			c.OnlyKerr = append(c.OnlyKerr, p)
		}
	}
	for _, p := range removedPaths {
		if inKerr[p] {
			c.RemovedPresent = append(c.RemovedPresent, "kerr: "+p)
		}
		if inBase[p] {
			c.RemovedPresent = append(c.RemovedPresent, "baseline: "+p)
		}
	}
	return c
}
