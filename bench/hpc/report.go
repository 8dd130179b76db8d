package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// report is what bench/out/hpc.json holds. Times are in ms.
type report struct {
	Date      string       `json:"date"`
	Host      harness.Host `json:"host"`
	Kerr      string       `json:"kerr"` // what was built or installed
	Namespace string       `json:"namespace"`
	Account   string       `json:"account"`
	Policy    policyInfo   `json:"policy"`
	Spec      specInfo     `json:"runc_crun_spec"`
	// Runs of each variant one at a time; commands at once and rounds of them.
	Iterations     int     `json:"iterations"`
	Concurrency    int     `json:"concurrency"`
	ConcIterations int     `json:"concurrent_iterations"`
	LoadBefore     string  `json:"loadavg_before"`
	LoadAfter      string  `json:"loadavg_after"`
	Seconds        float64 `json:"seconds"` // the measurements, without the build

	Variants   []variantInfo `json:"variants"`
	Sequential []*seqSeries  `json:"sequential"`
	Concurrent []*concSeries `json:"concurrent"`
	Ratios     []ratio       `json:"ratios"`
	// Lingering names, for each kerr variant, the processes of the account seen after
	// kerr exited (before they went: see linger_ms).
	Lingering map[string][]string `json:"lingering_processes"`
	Errors    []failure           `json:"errors"`
	// Leaks is what the benchmark found left behind at the end, and removed.
	Leaks []string `json:"leaks"`
}

type variantInfo struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	As      string `json:"as"`
	Command string `json:"command"`
}

type failure struct {
	Part    string `json:"part"`
	Variant string `json:"variant"`
	Error   string `json:"error"`
}

type seqSeries struct {
	Variant string    `json:"variant"`
	Runs    []float64 `json:"runs_ms"`
	CPU     []float64 `json:"cpu_ms"`
	// Linger (kerr): from the command's exit until no process of the account was left.
	Linger       []float64 `json:"linger_ms,omitempty"`
	Median       float64   `json:"median_ms"`
	P90          float64   `json:"p90_ms"`
	Min          float64   `json:"min_ms"`
	CPUMedian    float64   `json:"cpu_median_ms"`
	LingerMedian float64   `json:"linger_median_ms,omitempty"`
	Others       float64   `json:"others_cpu_share"`
}

type concSeries struct {
	Variant string    `json:"variant"`
	Runs    []float64 `json:"runs_ms"` // each round: until the last command exited
	Median  float64   `json:"median_ms"`
	Min     float64   `json:"min_ms"`
	Max     float64   `json:"max_ms"`
	// PerCommand is Median / Concurrency.
	PerCommand   float64   `json:"median_per_command_ms"`
	Linger       []float64 `json:"linger_ms,omitempty"`
	LingerMedian float64   `json:"linger_median_ms,omitempty"`
	// LoopsGone (root-owned image): from the end of the wait for the account's processes
	// until no loop device was attached to the image.
	LoopsGone []float64 `json:"loops_gone_ms,omitempty"`
	// Loops is what the watch of the image's loop devices saw in each round, the warm-up
	// round (polled every 2 ms) first; LoopDevices the most distinct devices of a round.
	Loops       []loopSeen `json:"loops,omitempty"`
	LoopDevices int        `json:"loop_devices"`
	Others      float64    `json:"others_cpu_share"`
}

// ratio is a kerr median over a baseline's: above 1, kerr is slower.
type ratio struct {
	Part     string  `json:"part"` // sequential or concurrent
	Kerr     string  `json:"kerr"`
	Baseline string  `json:"baseline"`
	Value    float64 `json:"value"`
}

// The pairs the ratios compare, kerr first.
var (
	seqPairs  = [][2]string{{"kerr-root", "runc"}, {"kerr-root", "crun"}, {"kerr-user", "runc"}, {"kerr-user", "crun"}, {"kerr-root", "unshare"}, {"kerr-root", "true"}, {"kerr-user", "kerr-root"}}
	concPairs = [][2]string{{"kerr-root", "unshare"}, {"kerr-user", "unshare"}, {"kerr-root", "true"}}
)

func newReport(c config) *report {
	return &report{
		Date: time.Now().UTC().Format(time.RFC3339), Iterations: c.n, Concurrency: c.conc, ConcIterations: c.concN,
		Errors: []failure{}, Leaks: []string{},
	}
}

func (r *report) seq(key string) *seqSeries {
	for _, s := range r.Sequential {
		if s.Variant == key {
			return s
		}
	}
	s := &seqSeries{Variant: key}
	r.Sequential = append(r.Sequential, s)
	return s
}

func (r *report) conc(key string) *concSeries {
	for _, s := range r.Concurrent {
		if s.Variant == key {
			return s
		}
	}
	s := &concSeries{Variant: key}
	r.Concurrent = append(r.Concurrent, s)
	return s
}

// percentile is the nearest-rank p-th percentile of xs (0 for none); xs is left as it is.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Min(xs)
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

// summarize computes the medians, percentiles and ratios; series without runs (a variant
// that failed at once) are dropped.
func (r *report) summarize() {
	r.Sequential = slices.DeleteFunc(r.Sequential, func(s *seqSeries) bool { return len(s.Runs) == 0 })
	r.Concurrent = slices.DeleteFunc(r.Concurrent, func(s *concSeries) bool { return len(s.Runs) == 0 })
	seqMed, concMed := map[string]float64{}, map[string]float64{}
	for _, s := range r.Sequential {
		s.Median, s.P90, s.Min = harness.Median(s.Runs), percentile(s.Runs, 90), minOf(s.Runs)
		s.CPUMedian, s.LingerMedian = harness.Median(s.CPU), harness.Median(s.Linger)
		seqMed[s.Variant] = s.Median
	}
	for _, s := range r.Concurrent {
		s.Median, s.Min, s.Max = harness.Median(s.Runs), minOf(s.Runs), maxOf(s.Runs)
		s.PerCommand = s.Median / float64(max(r.Concurrency, 1))
		s.LingerMedian = harness.Median(s.Linger)
		for _, l := range s.Loops {
			s.LoopDevices = max(s.LoopDevices, len(l.Devices))
		}
		concMed[s.Variant] = s.Median
	}
	r.Ratios = []ratio{}
	for _, part := range []struct {
		name  string
		pairs [][2]string
		med   map[string]float64
	}{{"sequential", seqPairs, seqMed}, {"concurrent", concPairs, concMed}} {
		for _, p := range part.pairs {
			if k, b := part.med[p[0]], part.med[p[1]]; k > 0 && b > 0 {
				r.Ratios = append(r.Ratios, ratio{Part: part.name, Kerr: p[0], Baseline: p[1], Value: k / b})
			}
		}
	}
}

func (r *report) name(key string) string {
	for _, v := range r.Variants {
		if v.Key == key {
			return v.Name
		}
	}
	return key
}

// othersWarn is the share of the CPUs other processes may use during a measurement before
// the report says its times are not to be trusted.
const othersWarn = 0.15

func pct(x float64) string { return fmt.Sprintf("%.0f %%", 100*x) }

func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nkerr HPC mode: %s, %d CPUs, kernel %s; kerr %s; as %s\n", r.Date, r.Host.CPUs, r.Host.Kernel, r.Kerr, r.Account)
	fmt.Fprintf(w, "policy %s: kernel_squashfs = %s, shared_loop_devices = %s\n", r.Policy.File, r.Policy.KernelSquashfs, r.Policy.SharedLoopDevices)
	fmt.Fprintf(w, "load average before %s, after %s\n", r.LoadBefore, r.LoadAfter)

	fmt.Fprintf(w, "\nOne at a time, %d runs each after a warm-up round (ms):\n", r.Iterations)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmedian\tp90\tmin\tCPU\tlinger\tothers' CPU\t")
	var warn []string
	for _, s := range r.Sequential {
		linger := ""
		if len(s.Linger) > 0 {
			linger = fmt.Sprintf("%.1f", s.LingerMedian)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", r.name(s.Variant), s.Median, s.P90, s.Min, s.CPUMedian, linger, pct(s.Others))
		if s.Others > othersWarn {
			warn = append(warn, r.name(s.Variant)+" (one at a time)")
		}
	}
	tw.Flush()

	if len(r.Concurrent) > 0 {
		fmt.Fprintf(w, "\n%d at once, %d rounds after a warm-up round: wall time until the last exited (ms):\n", r.Concurrency, r.ConcIterations)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tmedian\tmin\tmax\tper command\tlinger\tloop devices\tothers' CPU\t")
		for _, s := range r.Concurrent {
			linger, loops := "", ""
			if len(s.Linger) > 0 {
				linger = fmt.Sprintf("%.0f", s.LingerMedian)
			}
			if len(s.Loops) > 0 {
				atOnce := 0
				for _, l := range s.Loops {
					atOnce = max(atOnce, l.AtOnce)
				}
				loops = fmt.Sprintf("%d (%d at once)", s.LoopDevices, atOnce)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.1f\t%s\t%s\t%s\t\n", r.name(s.Variant), s.Median, s.Min, s.Max, s.PerCommand, linger, loops, pct(s.Others))
			if s.Others > othersWarn {
				warn = append(warn, r.name(s.Variant)+" (at once)")
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "CPU: user + system of the command and what it waited for; linger: from kerr's exit (at once: the last one's)")
	fmt.Fprintln(w, "until no process of the account was left; others' CPU: what other processes used of the machine meanwhile.")
	fmt.Fprintln(w, "\nRatios, kerr median / baseline median (above 1: kerr is slower):")
	for _, x := range r.Ratios {
		fmt.Fprintf(w, "  %-10s  %s / %s: %.2f\n", x.Part, r.name(x.Kerr), r.name(x.Baseline), x.Value)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Lingering)) {
		fmt.Fprintf(w, "\nafter %s: %s outlived kerr (see linger)\n", r.name(k), strings.Join(r.Lingering[k], ", "))
	}
	if len(warn) > 0 {
		fmt.Fprintf(w, "\nWARNING: other processes used more than %s of the CPUs during: %s; those times are not to be trusted\n",
			pct(othersWarn), strings.Join(warn, ", "))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nFAILED %s %s: %s\n", e.Part, e.Variant, e.Error)
	}
	for _, l := range r.Leaks {
		fmt.Fprintf(w, "\nLEFT BEHIND (removed): %s\n", l)
	}
}
