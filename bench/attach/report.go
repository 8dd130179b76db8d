package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// report is what bench/out/attach.json holds. Times are in seconds, sizes in KiB,
// throughputs in MiB/s.
type report struct {
	Date       string       `json:"date"`
	Host       harness.Host `json:"host"`
	Kerr       string       `json:"kerr"`
	Bytes      int64        `json:"bytes_per_run"` // -mb; the blocks workload writes 4 times that
	LineBytes  int          `json:"line_bytes"`
	Iterations int          `json:"iterations"`
	Seconds    float64      `json:"seconds"`
	Variants   []variantDoc `json:"variants"`
	Workloads  []variantDoc `json:"workloads"`
	// Throughput: one series per variant and workload (the empty one included).
	Throughput []*tpSeries `json:"throughput"`
	// Ratios: for each workload, the variants' net throughput against each other.
	Ratios []tpRatio `json:"ratios"`
	// Monitors: the memory of kerr's monitors with 1, 10, 50... sleeping containers.
	Monitors []*monitorSet `json:"monitors"`
	// Others is the share of the CPUs other processes used during a variant's throughput
	// runs, all of them together.
	Others map[string]float64 `json:"others_cpu_share"`
	Errors []failure          `json:"errors"`
}

type variantDoc struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Command string `json:"command"`
}

type failure struct {
	Part  string `json:"part"`
	Error string `json:"error"`
}

// tpSeries is one variant writing one workload, n times.
type tpSeries struct {
	Variant  string    `json:"variant"`
	Workload string    `json:"workload"`
	Bytes    int64     `json:"bytes"`
	Runs     []float64 `json:"runs_s"`
	Median   float64   `json:"median_s"`
	// CPU is the user and system time of the run's every process (kerr, its monitor, the
	// container, the pipe's reader), from wait4 through the reaper.
	CPURuns   []float64 `json:"cpu_runs_s"`
	CPUMedian float64   `json:"cpu_median_s"`
	// MiBps is the bytes over the median wall time, the container's start and removal
	// included; NetMiBps the bytes over the median less that of the same variant writing
	// nothing (the workload "empty"): the rate of the stream itself.
	MiBps    float64 `json:"mib_per_s"`
	NetMiBps float64 `json:"net_mib_per_s"`
	// LogBytes is the size of the log the monitor wrote for one run (kerr run only).
	LogBytes int64 `json:"log_bytes,omitempty"`
}

// tpRatio is Of's net throughput over Against's for Workload (above 1: Of is faster).
type tpRatio struct {
	Workload string  `json:"workload"`
	Of       string  `json:"of"`
	Against  string  `json:"against"`
	Value    float64 `json:"value"`
}

// monitorSet is the memory of the monitors of Containers sleeping containers, all running
// at once.
type monitorSet struct {
	Containers int       `json:"containers"`
	Monitors   []memInfo `json:"monitors"`
	// Medians of one monitor, and the sums over all of them.
	MedianRSS  int64 `json:"median_rss_kib"`
	MedianAnon int64 `json:"median_anon_kib"`
	MedianPss  int64 `json:"median_pss_kib"`
	TotalRSS   int64 `json:"total_rss_kib"`
	TotalPss   int64 `json:"total_pss_kib"`
	// Container is the median RSS of a container's own process (busybox sleep), for scale.
	Container int64 `json:"median_container_rss_kib"`
	// StartSeconds is how long creating and starting them all took, one after the other.
	StartSeconds float64 `json:"start_s"`
}

// memInfo is one process's memory: /proc/PID/status (VmRSS, RssAnon, RssFile) and
// /proc/PID/smaps_rollup (Pss: the resident pages, each shared one divided among the
// processes that map it; 0 when the kernel has no smaps_rollup).
type memInfo struct {
	Pid  int   `json:"pid"`
	RSS  int64 `json:"rss_kib"`
	Anon int64 `json:"anon_kib"`
	File int64 `json:"file_kib"`
	Pss  int64 `json:"pss_kib,omitempty"`
}

// kibField reads a "Name:   123 kB" line of /proc/PID/status or smaps_rollup.
func kibField(text, name string) (int64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

func (r *report) series(variant, workload string) *tpSeries {
	for _, s := range r.Throughput {
		if s.Variant == variant && s.Workload == workload {
			return s
		}
	}
	s := &tpSeries{Variant: variant, Workload: workload}
	r.Throughput = append(r.Throughput, s)
	return s
}

const mib = 1 << 20

// summarize computes the medians, throughputs and ratios.
func (r *report) summarize() {
	for _, s := range r.Throughput {
		s.Median, s.CPUMedian = harness.Median(s.Runs), harness.Median(s.CPURuns)
	}
	for _, s := range r.Throughput {
		if s.Workload == "empty" || s.Median <= 0 {
			continue
		}
		s.MiBps = float64(s.Bytes) / mib / s.Median
		if e := r.find(s.Variant, "empty"); e != nil && e.Median > 0 && s.Median > e.Median {
			s.NetMiBps = float64(s.Bytes) / mib / (s.Median - e.Median)
		}
	}
	r.Ratios = nil
	for _, w := range r.Workloads {
		if w.Key == "empty" {
			continue
		}
		for _, pair := range [][2]string{{"kerr-run", "host"}, {"kerr-nomon", "host"}, {"kerr-run", "kerr-nomon"}} {
			of, against := r.find(pair[0], w.Key), r.find(pair[1], w.Key)
			if of == nil || against == nil || of.NetMiBps <= 0 || against.NetMiBps <= 0 {
				continue
			}
			r.Ratios = append(r.Ratios, tpRatio{Workload: w.Key, Of: pair[0], Against: pair[1], Value: of.NetMiBps / against.NetMiBps})
		}
	}
	for _, m := range r.Monitors {
		var rss, anon, pss []float64
		m.TotalRSS, m.TotalPss = 0, 0
		for _, x := range m.Monitors {
			rss, anon, pss = append(rss, float64(x.RSS)), append(anon, float64(x.Anon)), append(pss, float64(x.Pss))
			m.TotalRSS += x.RSS
			m.TotalPss += x.Pss
		}
		m.MedianRSS, m.MedianAnon, m.MedianPss = int64(harness.Median(rss)), int64(harness.Median(anon)), int64(harness.Median(pss))
	}
}

func (r *report) find(variant, workload string) *tpSeries {
	for _, s := range r.Throughput {
		if s.Variant == variant && s.Workload == workload {
			return s
		}
	}
	return nil
}

func (r *report) name(key string) string {
	for _, v := range r.Variants {
		if v.Key == key {
			return v.Name
		}
	}
	return key
}

// printTable writes the human-readable summary.
func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nkerr attach benchmark, %s; %d CPUs, kernel %s; %d MiB per run (blocks: %d MiB), medians of %d\n",
		r.Date, r.Host.CPUs, r.Host.Kernel, r.Bytes/mib, 4*r.Bytes/mib, r.Iterations)
	if len(r.Throughput) > 0 {
		fmt.Fprintln(w, "\n1. a container writing to its stdout: wall time, MiB/s (net: less the same run writing nothing), CPU time of all its processes")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, wl := range r.Workloads {
			fmt.Fprintf(tw, "%s\t", wl.Key)
		}
		fmt.Fprintln(tw)
		for _, v := range r.Variants {
			fmt.Fprintf(tw, "%s\t", v.Name)
			for _, wl := range r.Workloads {
				s := r.find(v.Key, wl.Key)
				switch {
				case s == nil || s.Median == 0:
					fmt.Fprint(tw, "-\t")
				case wl.Key == "empty":
					fmt.Fprintf(tw, "%.3f s, cpu %.3f\t", s.Median, s.CPUMedian)
				default:
					fmt.Fprintf(tw, "%.3f s = %.0f MiB/s (net %.0f), cpu %.2f s\t", s.Median, s.MiBps, s.NetMiBps, s.CPUMedian)
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		for _, s := range r.Throughput {
			if s.LogBytes > 0 {
				fmt.Fprintf(w, "%s, %s: the monitor's log of one run is %s\n", r.name(s.Variant), s.Workload, harness.MB(s.LogBytes))
			}
		}
		if len(r.Ratios) > 0 {
			fmt.Fprintln(w, "net throughput ratios (above 1: the first is faster):")
			for _, x := range r.Ratios {
				fmt.Fprintf(w, "  %s: %s / %s = %.2f\n", x.Workload, r.name(x.Of), r.name(x.Against), x.Value)
			}
		}
	}
	if len(r.Monitors) > 0 {
		fmt.Fprintln(w, "\n2. kerr's monitors, one per running container (busybox sleep), KiB")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "containers\tVmRSS (median)\tanon (median)\tPss (median)\tVmRSS (sum)\tPss (sum)\tcontainer's own RSS\tstart all\t")
		for _, m := range r.Monitors {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f s\t\n", m.Containers, m.MedianRSS, m.MedianAnon, m.MedianPss,
				m.TotalRSS, m.TotalPss, m.Container, m.StartSeconds)
		}
		tw.Flush()
	}
	keys := make([]string, 0, len(r.Others))
	for k := range r.Others {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if o := r.Others[k]; o > 0.15 {
			fmt.Fprintf(w, "WARNING: during the runs of %s, other processes used %.0f%% of the CPUs: its times are inflated and noisy\n", r.name(k), 100*o)
		}
	}
	for _, f := range r.Errors {
		fmt.Fprintf(w, "\nFAILED: %s:\n%s\n", f.Part, f.Error)
	}
}
