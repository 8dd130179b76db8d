package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kerr-hpc/kerr/bench/internal/harness"
)

// report is what bench/out/lifecycle.json holds. Times are in ms, sizes in KiB.
type report struct {
	Date      string       `json:"date"`
	Host      harness.Host `json:"host"`
	Namespace string       `json:"namespace"`
	Spec      specInfo     `json:"spec"`
	// Repetitions of each measurement, each variant.
	Iterations     int           `json:"iterations"`
	ConcIterations int           `json:"concurrent_iterations"`
	Concurrency    int           `json:"concurrency"`
	RSSIterations  int           `json:"rss_iterations"`
	Seconds        float64       `json:"seconds"` // the measurements, without the build
	Variants       []variantInfo `json:"variants"`

	// 1: create + start + wait + delete (or run) of /bin/true, whole.
	Run       []*series `json:"run"`
	RunRatios []ratio   `json:"run_ratios"`
	// 2: each command apart.
	Steps      []*stepSeries `json:"steps"`
	StepRatios []stepRatio   `json:"step_ratios"`
	// 3: Concurrency lifecycles at once, the wall time of all.
	Concurrent       []*series `json:"concurrent"`
	ConcurrentRatios []ratio   `json:"concurrent_ratios"`
	// 4: peak RSS of each command (GNU time), kerr's monitor's RSS.
	RSS          []*rssSeries `json:"rss"`
	RSSRatios    []ratio      `json:"rss_peak_ratios"`
	RSSFloorRuns []int64      `json:"rss_floor_runs_kib"`
	RSSFloor     int64        `json:"rss_floor_kib"`

	// MonitorGone counts waits that found kerr's monitor gone (it leaves 20 ms after its
	// container) and read the exit status from state.json.
	MonitorGone int64 `json:"monitor_gone"`
	// Others is the share of the CPUs other processes used during measurements 1-3.
	Others map[string]float64 `json:"others_cpu_share"`
	Errors []failure          `json:"errors"`
}

type specInfo struct {
	Args       []string `json:"args"`
	Namespaces []string `json:"namespaces"`
	Readonly   bool     `json:"readonly_rootfs"`
	Mounts     int      `json:"mounts"`
}

type variantInfo struct {
	Key      string   `json:"key"`
	Name     string   `json:"name"`
	Commands []string `json:"commands"`
}

type failure struct {
	Part    string `json:"part"`
	Variant string `json:"variant"`
	Error   string `json:"error"`
}

type series struct {
	Variant string    `json:"variant"`
	Runs    []float64 `json:"runs_ms"`
	Median  float64   `json:"median_ms"`
}

type stepSeries struct {
	Variant string  `json:"variant"`
	Runs    []steps `json:"runs"`
	Median  steps   `json:"median"`
}

// rssRun is one repetition's peak RSS (KiB) of each command; a `run` variant has only Run.
type rssRun struct {
	Create int64 `json:"create_kib,omitempty"`
	Start  int64 `json:"start_kib,omitempty"`
	State  int64 `json:"state_kib,omitempty"`
	Kill   int64 `json:"kill_kib,omitempty"`
	Delete int64 `json:"delete_kib,omitempty"`
	Run    int64 `json:"run_kib,omitempty"`
	// Peak is the largest of them: what the runtime's commands need at most.
	Peak int64 `json:"peak_kib"`
	// kerr's monitor, while the container runs: VmRSS, VmHWM and RssAnon of
	// /proc/PID/status.
	MonitorRSS  int64 `json:"monitor_rss_kib,omitempty"`
	MonitorHWM  int64 `json:"monitor_hwm_kib,omitempty"`
	MonitorAnon int64 `json:"monitor_anon_kib,omitempty"`
}

type rssSeries struct {
	Variant string   `json:"variant"`
	Runs    []rssRun `json:"runs"`
	Median  rssRun   `json:"median"`
}

// ratio is a baseline's median over kerr's: above 1, kerr is faster (or smaller). Every
// baseline (runc's and crun's run and four commands) is compared with every kerr variant
// (kerr oci with and without the monitor, kerr oci run, kerr-runc and kerr-runc run).
type ratio struct {
	Baseline string  `json:"baseline"`
	Kerr     string  `json:"kerr"`
	Value    float64 `json:"value"`
}

type stepRatio struct {
	Baseline string  `json:"baseline"`
	Kerr     string  `json:"kerr"`
	Create   float64 `json:"create"`
	Start    float64 `json:"start"`
	State    float64 `json:"state"`
	Delete   float64 `json:"delete"`
	Total    float64 `json:"create_start_state_delete"`
}

// The pairs the ratios compare.
var (
	baselineKeys = []string{"runc-run", "runc", "crun-run", "crun"}
	kerrKeys     = []string{"kerr", "kerr-nomon", "kerr-run", "kerr-runc", "kerr-runc-run"}
)

func newReport(c config, host harness.Host) *report {
	return &report{
		Date: time.Now().UTC().Format(time.RFC3339), Host: host,
		Iterations: c.n, ConcIterations: c.concN, Concurrency: c.conc, RSSIterations: c.rssN,
		Others: map[string]float64{}, Errors: []failure{},
	}
}

func hostInfo(kerr kerrBins, tools map[string]string, busybox string) harness.Host {
	return harness.HostInfo(map[string][]string{
		"kerr":      {kerr.kerr, "--version"},
		"kerr-runc": {kerr.runc, "--version"},
		"runc":      {tools["runc"], "--version"},
		"crun":      {tools["crun"], "--version"},
		"busybox":   {busybox, "--help"},
	})
}

// describeSpec says what the bundle's config.json asks of the runtimes.
func describeSpec(path string) (specInfo, error) {
	var s specs.Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return specInfo{}, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return specInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	var si specInfo
	if s.Process != nil {
		si.Args = s.Process.Args
	}
	if s.Root != nil {
		si.Readonly = s.Root.Readonly
	}
	if s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			si.Namespaces = append(si.Namespaces, string(ns.Type))
		}
	}
	si.Mounts = len(s.Mounts)
	return si, nil
}

// series returns the series of key in *list, adding it.
func (r *report) series(list *[]*series, key string) *series {
	for _, s := range *list {
		if s.Variant == key {
			return s
		}
	}
	s := &series{Variant: key}
	*list = append(*list, s)
	return s
}

func (r *report) stepSeries(key string) *stepSeries {
	for _, s := range r.Steps {
		if s.Variant == key {
			return s
		}
	}
	s := &stepSeries{Variant: key}
	r.Steps = append(r.Steps, s)
	return s
}

func (r *report) rssSeries(key string) *rssSeries {
	for _, s := range r.RSS {
		if s.Variant == key {
			return s
		}
	}
	s := &rssSeries{Variant: key}
	r.RSS = append(r.RSS, s)
	return s
}

// medianOf is the median of f over xs.
func medianOf[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return harness.Median(v)
}

func medianSteps(runs []steps) steps {
	return steps{
		Create: medianOf(runs, func(s steps) float64 { return s.Create }),
		Start:  medianOf(runs, func(s steps) float64 { return s.Start }),
		Wait:   medianOf(runs, func(s steps) float64 { return s.Wait }),
		State:  medianOf(runs, func(s steps) float64 { return s.State }),
		Delete: medianOf(runs, func(s steps) float64 { return s.Delete }),
		Total:  medianOf(runs, func(s steps) float64 { return s.Total }),
	}
}

func medianRSS(runs []rssRun) rssRun {
	m := func(f func(rssRun) int64) int64 {
		return int64(math.Round(medianOf(runs, func(r rssRun) float64 { return float64(f(r)) })))
	}
	return rssRun{
		Create:      m(func(r rssRun) int64 { return r.Create }),
		Start:       m(func(r rssRun) int64 { return r.Start }),
		State:       m(func(r rssRun) int64 { return r.State }),
		Kill:        m(func(r rssRun) int64 { return r.Kill }),
		Delete:      m(func(r rssRun) int64 { return r.Delete }),
		Run:         m(func(r rssRun) int64 { return r.Run }),
		Peak:        m(func(r rssRun) int64 { return r.Peak }),
		MonitorRSS:  m(func(r rssRun) int64 { return r.MonitorRSS }),
		MonitorHWM:  m(func(r rssRun) int64 { return r.MonitorHWM }),
		MonitorAnon: m(func(r rssRun) int64 { return r.MonitorAnon }),
	}
}

// ratios is baseline/kerr of the medians for every pair that has both.
func ratios(median map[string]float64) []ratio {
	out := []ratio{}
	for _, b := range baselineKeys {
		for _, k := range kerrKeys {
			if median[b] > 0 && median[k] > 0 {
				out = append(out, ratio{Baseline: b, Kerr: k, Value: median[b] / median[k]})
			}
		}
	}
	return out
}

func div(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

func (r *report) summarize() {
	medians := func(list []*series) map[string]float64 {
		m := map[string]float64{}
		for _, s := range list {
			s.Median = harness.Median(s.Runs)
			m[s.Variant] = s.Median
		}
		return m
	}
	r.RunRatios = ratios(medians(r.Run))
	r.ConcurrentRatios = ratios(medians(r.Concurrent))

	sm := map[string]steps{}
	for _, s := range r.Steps {
		s.Median = medianSteps(s.Runs)
		sm[s.Variant] = s.Median
	}
	r.StepRatios = []stepRatio{}
	for _, b := range []string{"runc", "crun"} {
		for _, k := range kerrKeys {
			bs, ok1 := sm[b]
			ks, ok2 := sm[k]
			if !ok1 || !ok2 {
				continue
			}
			r.StepRatios = append(r.StepRatios, stepRatio{Baseline: b, Kerr: k,
				Create: div(bs.Create, ks.Create), Start: div(bs.Start, ks.Start),
				State: div(bs.State, ks.State), Delete: div(bs.Delete, ks.Delete),
				Total: div(bs.Create+bs.Start+bs.State+bs.Delete, ks.Create+ks.Start+ks.State+ks.Delete)})
		}
	}

	peaks := map[string]float64{}
	for _, s := range r.RSS {
		for i := range s.Runs {
			x := &s.Runs[i]
			x.Peak = max(x.Create, x.Start, x.State, x.Kill, x.Delete, x.Run)
		}
		s.Median = medianRSS(s.Runs)
		peaks[s.Variant] = float64(s.Median.Peak)
	}
	r.RSSRatios = ratios(peaks)
	r.RSSFloor = int64(math.Round(medianOf(r.RSSFloorRuns, func(k int64) float64 { return float64(k) })))
}

func (r *report) name(key string) string {
	for _, v := range r.Variants {
		if v.Key == key {
			return v.Name
		}
	}
	return key
}

func f1(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", x)
}

func f2(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

func mib(kib int64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nOCI container lifecycle: kerr vs runc and crun, %d CPUs, %s; medians of %d (concurrent: %d, RSS: %d)\n",
		r.Host.CPUs, r.Host.Kernel, r.Iterations, r.ConcIterations, r.RSSIterations)
	fmt.Fprintf(w, "process %s, namespaces %s, in %s\n", strings.Join(r.Spec.Args, " "), strings.Join(r.Spec.Namespaces, ","), r.Namespace)

	fmt.Fprintln(w, "\n1. run of /bin/true: create + start + wait for the exit + delete, or the runtime's own run, ms")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, s := range r.Run {
		fmt.Fprintf(tw, "%s\t%s\t\n", r.name(s.Variant), f1(s.Median))
	}
	tw.Flush()
	r.printRatios(w, r.RunRatios, "time")

	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "\n2. each command, ms (wait: from start's exit until the container's exit is seen, not a command)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%s\t", r.name(s.Variant))
		}
		for _, sr := range r.StepRatios {
			fmt.Fprintf(tw, "%s/%s\t", sr.Baseline, sr.Kerr)
		}
		fmt.Fprintln(tw)
		for _, row := range []struct {
			name string
			get  func(steps) float64
			rat  func(stepRatio) float64
		}{
			{"create", func(s steps) float64 { return s.Create }, func(x stepRatio) float64 { return x.Create }},
			{"start", func(s steps) float64 { return s.Start }, func(x stepRatio) float64 { return x.Start }},
			{"(wait)", func(s steps) float64 { return s.Wait }, nil},
			{"state", func(s steps) float64 { return s.State }, func(x stepRatio) float64 { return x.State }},
			{"delete", func(s steps) float64 { return s.Delete }, func(x stepRatio) float64 { return x.Delete }},
			{"4 commands", func(s steps) float64 { return s.Create + s.Start + s.State + s.Delete }, func(x stepRatio) float64 { return x.Total }},
		} {
			fmt.Fprintf(tw, "%s\t", row.name)
			for _, s := range r.Steps {
				fmt.Fprintf(tw, "%s\t", f1(row.get(s.Median)))
			}
			for _, sr := range r.StepRatios {
				if row.rat == nil {
					fmt.Fprint(tw, "\t")
				} else {
					fmt.Fprintf(tw, "%s\t", f2(row.rat(sr)))
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}

	if len(r.Concurrent) > 0 {
		fmt.Fprintf(w, "\n3. %d containers at once (run of /bin/true each), wall time of all, ms\n", r.Concurrency)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, s := range r.Concurrent {
			fmt.Fprintf(tw, "%s\t%s\t(%.0f containers/s)\t\n", r.name(s.Variant), f1(s.Median), 1000*float64(r.Concurrency)/s.Median)
		}
		tw.Flush()
		r.printRatios(w, r.ConcurrentRatios, "time")
	}

	if len(r.RSS) > 0 {
		fmt.Fprintf(w, "\n4. peak RSS of each command, MiB (GNU time; its floor, /bin/true: %s)\n", mib(r.RSSFloor))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, s := range r.RSS {
			fmt.Fprintf(tw, "%s\t", r.name(s.Variant))
		}
		fmt.Fprintln(tw)
		for _, row := range []struct {
			name string
			get  func(rssRun) int64
		}{
			{"run", func(x rssRun) int64 { return x.Run }},
			{"create", func(x rssRun) int64 { return x.Create }},
			{"start", func(x rssRun) int64 { return x.Start }},
			{"state", func(x rssRun) int64 { return x.State }},
			{"kill", func(x rssRun) int64 { return x.Kill }},
			{"delete", func(x rssRun) int64 { return x.Delete }},
			{"peak", func(x rssRun) int64 { return x.Peak }},
		} {
			fmt.Fprintf(tw, "%s\t", row.name)
			for _, s := range r.RSS {
				fmt.Fprintf(tw, "%s\t", mib(row.get(s.Median)))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		for _, s := range r.RSS {
			if m := s.Median; m.MonitorRSS > 0 {
				fmt.Fprintf(w, "kerr's monitor, staying with each container while it runs: VmRSS %s MiB (anonymous %s), peak %s MiB\n",
					mib(m.MonitorRSS), mib(m.MonitorAnon), mib(m.MonitorHWM))
			}
		}
		r.printRatios(w, r.RSSRatios, "peak RSS")
	}

	if r.MonitorGone > 0 {
		fmt.Fprintf(w, "\n%d waits found kerr's monitor gone and read the exit status from state.json\n", r.MonitorGone)
	}
	for _, part := range []string{"run", "steps", "concurrent"} {
		if o := r.Others[part]; o > 0.15 {
			fmt.Fprintf(w, "WARNING: during %s, processes other than the benchmark's used %.0f%% of the CPUs (kernel threads that tear down network namespaces included): times are inflated and noisy\n", part, 100*o)
		}
	}
	for _, f := range r.Errors {
		fmt.Fprintf(w, "\nFAILED: %s, %s:\n%s\n", f.Part, r.name(f.Variant), f.Error)
	}
}

func (r *report) printRatios(w io.Writer, rs []ratio, what string) {
	if len(rs) == 0 {
		return
	}
	// The columns: the kerr variants that have a ratio (one that failed has none).
	var cols []string
	for _, k := range kerrKeys {
		for _, x := range rs {
			if x.Kerr == k {
				cols = append(cols, k)
				break
			}
		}
	}
	fmt.Fprintf(w, "%s ratio baseline/kerr (above 1: kerr better):\n", what)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, k := range cols {
		fmt.Fprintf(tw, "vs %s\t", r.name(k))
	}
	fmt.Fprintln(tw)
	for _, b := range baselineKeys {
		line := r.name(b) + "\t"
		any := false
		for _, k := range cols {
			v := 0.0
			for _, x := range rs {
				if x.Baseline == b && x.Kerr == k {
					v, any = x.Value, true
				}
			}
			line += f2(v) + "\t"
		}
		if any {
			fmt.Fprintln(tw, line)
		}
	}
	tw.Flush()
}
