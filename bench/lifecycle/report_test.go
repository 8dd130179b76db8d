package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRatios(t *testing.T) {
	got := ratios(map[string]float64{"runc-run": 30, "runc": 40, "crun": 10, "kerr": 20, "kerr-nomon": 0, "kerr-runc-run": 10})
	want := []ratio{{"runc-run", "kerr", 1.5}, {"runc-run", "kerr-runc-run", 3}, {"runc", "kerr", 2}, {"runc", "kerr-runc-run", 4},
		{"crun", "kerr", 0.5}, {"crun", "kerr-runc-run", 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ratios = %v, want %v (pairs without both medians left out)", got, want)
	}
	if got := ratios(nil); got == nil || len(got) != 0 {
		t.Errorf("ratios(nil) = %#v, want an empty list (JSON [])", got)
	}
}

func TestSummarize(t *testing.T) {
	r := &report{Others: map[string]float64{}}
	r.series(&r.Run, "runc").Runs = []float64{30, 10, 20}
	r.series(&r.Run, "kerr").Runs = []float64{5, 15, 10, 30}
	r.series(&r.Run, "exec-true").Runs = []float64{1}
	r.stepSeries("crun").Runs = []steps{{Create: 4, Start: 2, State: 1, Delete: 3, Wait: 9}, {Create: 6, Start: 2, State: 1, Delete: 3}}
	r.stepSeries("kerr-nomon").Runs = []steps{{Create: 10, Start: 1, State: 2, Delete: 2}}
	r.stepSeries("kerr-runc").Runs = []steps{{Create: 5, Start: 1, State: 1, Delete: 2}}
	r.rssSeries("crun-run").Runs = []rssRun{{Run: 3000}, {Run: 3400}, {Run: 3200}}
	r.rssSeries("kerr").Runs = []rssRun{
		{Create: 10000, Start: 10400, State: 9000, Kill: 9000, Delete: 9000, MonitorRSS: 11000},
		{Create: 10200, Start: 10000, State: 9000, Kill: 9000, Delete: 9000, MonitorRSS: 11200},
	}
	r.RSSFloorRuns = []int64{900, 1000, 950}
	r.summarize()

	if got := r.series(&r.Run, "runc").Median; got != 20 {
		t.Errorf("runc median %v, want 20", got)
	}
	if got := r.series(&r.Run, "kerr").Median; got != 12.5 {
		t.Errorf("kerr median %v, want 12.5", got)
	}
	if want := []ratio{{"runc", "kerr", 1.6}}; !reflect.DeepEqual(r.RunRatios, want) {
		t.Errorf("run ratios %v, want %v", r.RunRatios, want)
	}
	if got := r.stepSeries("crun").Median; got.Create != 5 || got.Wait != 4.5 || got.Delete != 3 {
		t.Errorf("crun step medians %+v", got)
	}
	if len(r.StepRatios) != 2 {
		t.Fatalf("step ratios %+v, want crun/kerr-nomon and crun/kerr-runc only", r.StepRatios)
	}
	if sr := r.StepRatios[0]; sr.Baseline != "crun" || sr.Kerr != "kerr-nomon" || sr.Create != 0.5 || sr.Start != 2 || sr.Total != 11.0/15 {
		t.Errorf("step ratio %+v", sr)
	}
	if sr := r.StepRatios[1]; sr.Baseline != "crun" || sr.Kerr != "kerr-runc" || sr.Create != 1 || sr.Delete != 1.5 || sr.Total != 11.0/9 {
		t.Errorf("step ratio %+v", sr)
	}
	k := r.rssSeries("kerr")
	if k.Runs[0].Peak != 10400 || k.Runs[1].Peak != 10200 || k.Median.Peak != 10300 || k.Median.MonitorRSS != 11100 {
		t.Errorf("kerr RSS %+v", k)
	}
	if got := r.rssSeries("crun-run").Median.Peak; got != 3200 {
		t.Errorf("crun run peak %d, want 3200", got)
	}
	if want := []ratio{{"crun-run", "kerr", 3200.0 / 10300}}; !reflect.DeepEqual(r.RSSRatios, want) {
		t.Errorf("RSS ratios %v, want %v", r.RSSRatios, want)
	}
	if r.RSSFloor != 950 {
		t.Errorf("RSS floor %d, want 950", r.RSSFloor)
	}
}

func TestPrintTable(t *testing.T) {
	r := &report{Iterations: 3, Concurrency: 50, Others: map[string]float64{"run": 0.4}}
	r.Variants = []variantInfo{{Key: "runc", Name: "runc"}, {Key: "kerr", Name: "kerr"}, {Key: "kerr-nomon", Name: "kerr --no-monitor"},
		{Key: "kerr-runc-run", Name: "kerr-runc run"}}
	r.series(&r.Run, "runc").Runs = []float64{30}
	r.series(&r.Run, "kerr").Runs = []float64{20}
	r.series(&r.Run, "kerr-runc-run").Runs = []float64{12}
	r.series(&r.Concurrent, "kerr").Runs = []float64{1000}
	r.stepSeries("runc").Runs = []steps{{Create: 4, Start: 2, State: 1, Delete: 3}}
	r.stepSeries("kerr").Runs = []steps{{Create: 2, Start: 2, State: 1, Delete: 3}}
	r.rssSeries("kerr").Runs = []rssRun{{Create: 10240, MonitorRSS: 2048, MonitorHWM: 3072, MonitorAnon: 1024}}
	r.MonitorGone = 2
	r.Errors = []failure{{Part: "concurrent", Variant: "kerr-nomon", Error: "kerr oci create x: exit status 1\nboom"}}
	r.summarize()
	var buf bytes.Buffer
	r.printTable(&buf)
	out := buf.String()
	for _, want := range []string{
		"runc  30.0", "kerr  20.0", "kerr-runc run  12.0",
		// Columns only for the kerr variants with a ratio.
		"        vs kerr  vs kerr-runc run\n  runc     1.50              2.50\n",
		"runc/kerr", "2.00", // create ratio
		"kerr  1000.0  (50 containers/s)",
		"create  10.0",
		"VmRSS 2.0 MiB (anonymous 1.0), peak 3.0 MiB",
		"2 waits found kerr's monitor gone",
		"WARNING: during run, processes other than the benchmark's used 40%",
		"FAILED: concurrent, kerr --no-monitor:\nkerr oci create x: exit status 1\nboom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

func TestVariants(t *testing.T) {
	rts := []*ociRuntime{{name: "runc"}, {name: "crun"}, {name: "kerr"}, {name: "kerr-runc"}}
	vs := makeVariants(rts[0], rts[1], rts[2], rts[3])
	var keys, runs, kerrs []string
	for _, v := range vs {
		keys = append(keys, v.Key)
		if v.run {
			runs = append(runs, v.Key)
		}
		if v.rt.name == "kerr" || v.rt.name == "kerr-runc" {
			kerrs = append(kerrs, v.Key)
		}
	}
	want := []string{"runc-run", "runc", "crun-run", "crun", "kerr", "kerr-nomon", "kerr-run", "kerr-runc", "kerr-runc-run"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("variants %q, want %q", keys, want)
	}
	if want := []string{"runc-run", "crun-run", "kerr-run", "kerr-runc-run"}; !reflect.DeepEqual(runs, want) {
		t.Errorf("run variants %q, want %q", runs, want)
	}
	// Every kerr variant is compared with every baseline, and nothing else.
	if !reflect.DeepEqual(kerrs, kerrKeys) || !reflect.DeepEqual(keys[:4], baselineKeys) {
		t.Errorf("kerr variants %q, baselines %q; the ratios compare %q with %q", kerrs, keys[:4], kerrKeys, baselineKeys)
	}
	// Only kerr oci's four commands in its default mode wait on the monitor.
	for _, v := range vs {
		if got, want := v.monitored(), v.Key == "kerr"; got != want {
			t.Errorf("%s: monitored() = %v, want %v", v.Key, got, want)
		}
	}
}

func TestShownCommands(t *testing.T) {
	k := &ociRuntime{name: "kerr", bin: "/p/bin/kerr", root: "/w/root-kerr"}
	c := &ociRuntime{name: "crun", bin: "/usr/bin/crun", root: "/w/root-crun"}
	nomon := &variant{Key: "kerr-nomon", rt: k, noMonitor: true}
	got := nomon.shownCommands()
	if got[0] != "kerr oci --root ROOT --no-monitor create --bundle BUNDLE --pid-file FILE ID" ||
		!strings.Contains(got[2], "wait4") || got[4] != "kerr oci --root ROOT --no-monitor delete ID" {
		t.Errorf("kerr --no-monitor: %q", got)
	}
	if got := (&variant{rt: k}).shownCommands(); !strings.Contains(got[2], "control.sock") {
		t.Errorf("kerr waits on the monitor: %q", got)
	}
	if got := (&variant{rt: c, run: true}).shownCommands(); !reflect.DeepEqual(got, []string{"crun --root ROOT --cgroup-manager=cgroupfs run --bundle BUNDLE ID"}) {
		t.Errorf("crun run: %q", got)
	}
	if got := (&variant{rt: k, run: true}).shownCommands(); !reflect.DeepEqual(got, []string{"kerr oci --root ROOT run --bundle BUNDLE ID"}) {
		t.Errorf("kerr run: %q", got)
	}
	kr := &ociRuntime{name: "kerr-runc", bin: "/p/bin/kerr-runc", root: "/w/root-kerr-runc"}
	got = (&variant{rt: kr}).shownCommands()
	if got[0] != "kerr-runc --root ROOT create --bundle BUNDLE --pid-file FILE ID" || !strings.Contains(got[2], "wait4") ||
		got[3] != "kerr-runc --root ROOT state ID" {
		t.Errorf("kerr-runc: %q", got)
	}
	if got := (&variant{rt: kr, run: true}).cmd("run", "--bundle", "/b", "x"); !reflect.DeepEqual(got, []string{"/p/bin/kerr-runc", "--root", "/w/root-kerr-runc", "run", "--bundle", "/b", "x"}) {
		t.Errorf("kerr-runc run: %q", got)
	}
	// The real command line keeps the binary and the root.
	if got := nomon.cmd("kill", "x", "KILL"); !reflect.DeepEqual(got, []string{"/p/bin/kerr", "oci", "--root", "/w/root-kerr", "--no-monitor", "kill", "x", "KILL"}) {
		t.Errorf("cmd = %q", got)
	}
}

func TestDescribeSpec(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	spec := `{"ociVersion":"1.0.2-dev","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"rootfs","readonly":true},
		"mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}`
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := describeSpec(p)
	want := specInfo{Args: []string{"/bin/true"}, Namespaces: []string{"pid", "mount"}, Readonly: true, Mounts: 1}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("describeSpec = %+v, %v, want %+v", got, err, want)
	}
	// And it survives JSON as the report writes it.
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), `"readonly_rootfs":true`) {
		t.Errorf("JSON %s", b)
	}
}
