package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// report is what bench/out/pull.json holds.
type report struct {
	Date        string       `json:"date"`
	Host        harness.Host `json:"host"`
	Image       imageInfo    `json:"image"`
	Compressor  string       `json:"compressor"`
	Iterations  int          `json:"iterations"`
	DropCaches  bool         `json:"drop_caches"` // page cache dropped before every iteration
	Kerr        kerrSide     `json:"kerr"`
	Baseline    baseSide     `json:"baseline"`
	Ratio       float64      `json:"ratio_baseline_over_kerr"` // > 1: kerr is faster
	CPURatio    float64      `json:"cpu_ratio_baseline_over_kerr"`
	Diagnostics *diagnostics `json:"diagnostics,omitempty"`
}

type imageInfo struct {
	Ref               string      `json:"ref"`
	Digest            string      `json:"digest"`
	CompressedBytes   int64       `json:"compressed_bytes"`
	UncompressedBytes int64       `json:"file_bytes"` // sum of the layers' file contents
	Files             int         `json:"files"`      // regular files in all layers
	Layers            []layerInfo `json:"layers"`
}

type layerInfo struct {
	Name            string `json:"name"`
	CompressedBytes int64  `json:"compressed_bytes"`
	FileBytes       int64  `json:"file_bytes"`
	Files           int    `json:"files"`
	Whiteouts       int    `json:"whiteouts"`
}

type kerrSide struct {
	Command     []string  `json:"command"`
	Runs        []kerrRun `json:"runs"`
	MedianWall  float64   `json:"median_wall_s"`
	MedianCPU   float64   `json:"median_cpu_s"`
	MaxRSS      int64     `json:"max_rss_kib"` // largest over the runs
	OutputBytes int64     `json:"output_bytes"`
}

type baseSide struct {
	Commands     []string           `json:"commands"`
	Runs         []baselineRun      `json:"runs"`
	MedianWall   float64            `json:"median_wall_s"`
	MedianCPU    float64            `json:"median_cpu_s"`
	MedianStages map[string]float64 `json:"median_stage_wall_s"`
	MaxRSS       int64              `json:"max_rss_kib"`
	OutputBytes  int64              `json:"output_bytes"`
}

func imageReport(ref, digest string, layers []layerFile) imageInfo {
	im := imageInfo{Ref: ref, Digest: digest}
	for _, l := range layers {
		im.CompressedBytes += l.compressedBytes
		im.UncompressedBytes += l.uncompressedBytes
		im.Files += l.files
		im.Layers = append(im.Layers, layerInfo{Name: l.name, CompressedBytes: l.compressedBytes,
			FileBytes: l.uncompressedBytes, Files: l.files, Whiteouts: l.whiteouts})
	}
	return im
}

func hostInfo(kerr string) harness.Host {
	return harness.HostInfo(map[string][]string{
		"kerr":            {kerr, "--version"},
		"skopeo":          {"skopeo", "--version"},
		"umoci":           {"umoci", "--version"},
		"mksquashfs":      {"mksquashfs", "-version"},
		"tar2sqfs":        {"tar2sqfs", "--version"},
		"siftool":         {"siftool", "version"},
		"docker-registry": {"docker-registry", "--version"},
	})
}

func (r *report) summarize() {
	var kw, kc, bw, bc []float64
	for _, k := range r.Kerr.Runs {
		kw, kc = append(kw, k.Wall), append(kc, k.CPU)
		r.Kerr.MaxRSS = max(r.Kerr.MaxRSS, k.MaxRSS)
		r.Kerr.OutputBytes = k.OutputBytes
	}
	stages := map[string][]float64{}
	for _, b := range r.Baseline.Runs {
		bw, bc = append(bw, b.Wall), append(bc, b.CPU)
		r.Baseline.MaxRSS = max(r.Baseline.MaxRSS, b.MaxRSS)
		r.Baseline.OutputBytes = b.OutputBytes
		for st, m := range b.Stages {
			stages[st] = append(stages[st], m.Wall)
		}
	}
	r.Kerr.MedianWall, r.Kerr.MedianCPU = harness.Median(kw), harness.Median(kc)
	r.Baseline.MedianWall, r.Baseline.MedianCPU = harness.Median(bw), harness.Median(bc)
	r.Baseline.MedianStages = map[string]float64{}
	for st, xs := range stages {
		r.Baseline.MedianStages[st] = harness.Median(xs)
	}
	if r.Kerr.MedianWall > 0 {
		r.Ratio = r.Baseline.MedianWall / r.Kerr.MedianWall
	}
	if r.Kerr.MedianCPU > 0 {
		r.CPURatio = r.Baseline.MedianCPU / r.Kerr.MedianCPU
	}
}

func kibToMiB(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/1024) }

func (r *report) printTable(w io.Writer) {
	im := r.Image
	fmt.Fprintf(w, "\nkerr pull vs Singularity's pipeline (copy, unpack, mksquashfs, SIF), %s, %d CPUs, %s\n",
		r.Compressor, r.Host.CPUs, r.Host.Kernel)
	fmt.Fprintf(w, "image %s: %d layers, %s compressed, %s in %d files\n",
		im.Ref, len(im.Layers), harness.MB(im.CompressedBytes), harness.MB(im.UncompressedBytes), im.Files)
	if r.DropCaches {
		fmt.Fprintln(w, "page cache dropped before every iteration; caches and outputs emptied")
	} else {
		fmt.Fprintln(w, "page cache NOT dropped (no permission): runs after the first read warm data")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	busiest := 0.0
	fmt.Fprintln(tw, "iter\tkerr s\tbaseline s\tcopy\tunpack\tmksquashfs\tsif\tkerr cpu s\tbaseline cpu s\tothers' cpu k/b\t")
	for i := range max(len(r.Kerr.Runs), len(r.Baseline.Runs)) {
		var k kerrRun
		var b baselineRun
		if i < len(r.Kerr.Runs) {
			k = r.Kerr.Runs[i]
		}
		if i < len(r.Baseline.Runs) {
			b = r.Baseline.Runs[i]
		}
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.0f%%/%.0f%%\t\n", i+1, k.Wall, b.Wall,
			b.Stages["copy"].Wall, b.Stages["unpack"].Wall, b.Stages["mksquashfs"].Wall, b.Stages["sif"].Wall, k.CPU, b.CPU,
			100*k.Others, 100*b.Others)
		busiest = max(busiest, k.Others, b.Others)
	}
	ms := r.Baseline.MedianStages
	fmt.Fprintf(tw, "median\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t\t\n", r.Kerr.MedianWall, r.Baseline.MedianWall,
		ms["copy"], ms["unpack"], ms["mksquashfs"], ms["sif"], r.Kerr.MedianCPU, r.Baseline.MedianCPU)
	tw.Flush()

	verdict := "kerr is faster"
	if r.Ratio < 1 {
		verdict = "kerr is SLOWER"
	}
	fmt.Fprintf(w, "\nratio baseline/kerr: %.2f (%s); CPU time ratio %.2f\n", r.Ratio, verdict, r.CPURatio)
	if busiest > 0.15 {
		fmt.Fprintf(w, "WARNING: other processes used up to %.0f%% of the CPUs during a run: wall times are inflated and noisy; rerun on a quiet machine or with more -n\n", 100*busiest)
	}
	fmt.Fprintf(w, "peak RSS: kerr %s (kerr or tar2sqfs, largest), baseline %s (largest tool)\n",
		kibToMiB(r.Kerr.MaxRSS), kibToMiB(r.Baseline.MaxRSS))
	fmt.Fprintf(w, "output: kerr %s, baseline %s\n", harness.MB(r.Kerr.OutputBytes), harness.MB(r.Baseline.OutputBytes))

	d := r.Diagnostics
	if d == nil {
		return
	}
	fmt.Fprintln(w, "\nparts (one run each, cold page cache):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  kerr pull, blobs already cached\t%.2f s\tcpu %.1f s\tothers %.0f%%\t\n",
		d.KerrBlobsCached.Wall, d.KerrBlobsCached.CPU, 100*d.KerrBlobsCached.Others)
	for _, v := range d.KerrVariants {
		fmt.Fprintf(tw, "  kerr pull, its tar2sqfs given %s\t%.2f s\tcpu %.1f s\tothers %.0f%%\t-> %s\n",
			v.Options, v.Run.Wall, v.Run.CPU, 100*v.Run.Others, harness.MB(v.OutputBytes))
	}
	fmt.Fprintf(tw, "  gunzip all layers in one goroutine\t%.2f s\t\t\t\n", d.Gunzip.Wall)
	fmt.Fprintf(tw, "  tar2sqfs < flattened tar (%s)\t%.2f s\tcpu %.1f s\tothers %.0f%%\t-> %s\n", harness.MB(d.FlatTarBytes),
		d.Tar2sqfs.Wall, d.Tar2sqfs.CPU, 100*d.Tar2sqfs.Others, harness.MB(d.Tar2sqfsBytes))
	fmt.Fprintf(tw, "  tar2sqfs -X level=6, the same tar\t%.2f s\tcpu %.1f s\tothers %.0f%%\t-> %s\n",
		d.Tar2sqfsLevel6.Wall, d.Tar2sqfsLevel6.CPU, 100*d.Tar2sqfsLevel6.Others, harness.MB(d.Tar2sqfsLevel6Bytes))
	fmt.Fprintf(tw, "  mksquashfs of the unpacked directory\t%.2f s\tcpu %.1f s\tothers %.0f%%\t-> %s\n",
		d.Mksquashfs.Wall, d.Mksquashfs.CPU, 100*d.Mksquashfs.Others, harness.MB(d.MksquashfsBytes))
	tw.Flush()
	c := d.Content
	fmt.Fprintf(w, "content: kerr %d entries, baseline %d; only in kerr %d (layout, mount points), only in baseline %d, deleted paths still present %d\n",
		c.KerrEntries, c.BaselineEntries, len(c.OnlyKerr), len(c.OnlyBaseline), len(c.RemovedPresent))
	if len(c.OnlyBaseline) > 0 || len(c.RemovedPresent) > 0 {
		fmt.Fprintln(w, "WARNING: the outputs' contents differ beyond kerr's layout")
	}
	for _, p := range c.OnlyBaseline[:min(10, len(c.OnlyBaseline))] {
		fmt.Fprintf(w, "  only in baseline: %s\n", p)
	}
	for _, p := range c.RemovedPresent {
		fmt.Fprintf(w, "  deleted but present: %s\n", p)
	}
}
