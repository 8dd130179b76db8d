package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// report is what bench/out/mount.json holds.
type report struct {
	Date       string       `json:"date"`
	Host       harness.Host `json:"host"`
	Iterations int          `json:"iterations"`
	DropCaches bool         `json:"drop_caches"` // page cache dropped before every measurement
	Commands   struct {
		Kerr []string `json:"kerr"`
		Tar  []string `json:"tar"`
	} `json:"commands"`
	Sizes []*sizeReport `json:"sizes"`
	// MountRatio is the median mount time of the largest SIF over that of the smallest; it
	// passes at MaxRatio or below.
	MountRatio float64 `json:"mount_ratio_largest_over_smallest"`
	MaxRatio   float64 `json:"max_mount_ratio"`
	Pass       bool    `json:"pass"`
}

type sizeReport struct {
	Label    string   `json:"label"`
	Tree     treeInfo `json:"tree"`
	SIFBytes int64    `json:"sif_bytes"`
	TarBytes int64    `json:"tar_bytes"`
	Kerr     []pair   `json:"kerr_runs"` // make: oci mount, remove: oci umount
	Tar      []pair   `json:"tar_runs"`  // make: tar -xf, remove: rm -rf
	Median   struct {
		Mount   float64 `json:"mount_s"`
		Umount  float64 `json:"umount_s"`
		Kerr    float64 `json:"kerr_total_s"`
		Extract float64 `json:"tar_extract_s"`
		Remove  float64 `json:"rm_s"`
		Tar     float64 `json:"tar_total_s"`
		Sync    float64 `json:"tar_sync_s"`
	} `json:"median"`
	// Ratio is the tar side's median total over kerr's (above 1: kerr is faster).
	Ratio  float64 `json:"ratio_tar_over_kerr"`
	Others float64 `json:"max_others_cpu_share"`
}

func hostInfo(kerr string) harness.Host {
	return harness.HostInfo(map[string][]string{
		"kerr":     {kerr, "--version"},
		"tar":      {"tar", "--version"},
		"tar2sqfs": {"tar2sqfs", "--version"},
	})
}

// medianOf is the median of f over runs.
func medianOf(runs []pair, f func(pair) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return harness.Median(xs)
}

func (r *report) summarize() {
	for _, s := range r.Sizes {
		m := &s.Median
		m.Mount = medianOf(s.Kerr, func(p pair) float64 { return p.First.Wall })
		m.Umount = medianOf(s.Kerr, func(p pair) float64 { return p.Second.Wall })
		m.Kerr = medianOf(s.Kerr, pair.total)
		m.Extract = medianOf(s.Tar, func(p pair) float64 { return p.First.Wall })
		m.Remove = medianOf(s.Tar, func(p pair) float64 { return p.Second.Wall })
		m.Tar = medianOf(s.Tar, pair.total)
		m.Sync = medianOf(s.Tar, func(p pair) float64 { return p.Sync })
		if m.Kerr > 0 {
			s.Ratio = m.Tar / m.Kerr
		}
		for _, p := range append(slices.Clone(s.Kerr), s.Tar...) {
			s.Others = max(s.Others, p.First.Others, p.Second.Others)
		}
	}
	first, last := r.Sizes[0], r.Sizes[len(r.Sizes)-1]
	if first.Median.Mount > 0 {
		r.MountRatio = last.Median.Mount / first.Median.Mount
	}
	r.Pass = r.MountRatio > 0 && r.MountRatio <= r.MaxRatio
}

func ms(s float64) string { return fmt.Sprintf("%.0f", 1000*s) }

func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nkerr oci mount + umount vs tar -xf + rm -rf of the same tree, %d CPUs, %s, %d iterations\n",
		r.Host.CPUs, r.Host.Kernel, r.Iterations)
	if r.DropCaches {
		fmt.Fprintln(w, "page cache dropped before every mount and every extraction")
	} else {
		fmt.Fprintln(w, "page cache NOT dropped (no permission): measurements after the first read warm data")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "image\tSIF\tfiles\tmount ms\tumount ms\tkerr ms\ttar -xf ms\trm -rf ms\ttar ms\t(sync ms)\ttar/kerr\t")
	busiest := 0.0
	for _, s := range r.Sizes {
		m := s.Median
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t(%s)\t%.1f\t\n", s.Label, harness.MB(s.SIFBytes), s.Tree.Files,
			ms(m.Mount), ms(m.Umount), ms(m.Kerr), ms(m.Extract), ms(m.Remove), ms(m.Tar), ms(m.Sync), s.Ratio)
		busiest = max(busiest, s.Others)
	}
	tw.Flush()
	fmt.Fprintln(w, "medians; kerr = mount + umount, tar = tar -xf + rm -rf; sync: writing back what tar -xf left dirty, not counted")

	fmt.Fprintln(w, "\nper iteration (ms), mount/umount | tar -xf/rm -rf:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "image\t")
	for i := range r.Iterations {
		fmt.Fprintf(tw, "%d\t", i+1)
	}
	fmt.Fprintln(tw)
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%s\t", s.Label)
		for i := range r.Iterations {
			if i < len(s.Kerr) && i < len(s.Tar) {
				k, t := s.Kerr[i], s.Tar[i]
				fmt.Fprintf(tw, "%s/%s | %s/%s\t", ms(k.First.Wall), ms(k.Second.Wall), ms(t.First.Wall), ms(t.Second.Wall))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	first, last := r.Sizes[0], r.Sizes[len(r.Sizes)-1]
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nmount(%s) / mount(%s) = %.2f (limit %.2f): %s\n", last.Label, first.Label, r.MountRatio, r.MaxRatio, verdict)
	if busiest > 0.15 {
		fmt.Fprintf(w, "WARNING: other processes used up to %.0f%% of the CPUs during a measurement: wall times are inflated and noisy; rerun on a quiet machine or with more -n\n", 100*busiest)
	}
}
