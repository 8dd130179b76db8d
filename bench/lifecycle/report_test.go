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
	got := ratios(map[string]float64{"runc-run": 30, "runc": 40, "crun": 10, "kerr": 20, "kerr-nomon": 0})
	want := []ratio{{"runc-run", "kerr", 1.5}, {"runc", "kerr", 2}, {"crun", "kerr", 0.5}}
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
	if len(r.StepRatios) != 1 {
		t.Fatalf("step ratios %+v, want crun/kerr-nomon only", r.StepRatios)
	}
	if sr := r.StepRatios[0]; sr.Baseline != "crun" || sr.Kerr != "kerr-nomon" || sr.Create != 0.5 || sr.Start != 2 || sr.Total != 11.0/15 {
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
	r.Variants = []variantInfo{{Key: "runc", Name: "runc"}, {Key: "kerr", Name: "kerr"}, {Key: "kerr-nomon", Name: "kerr --no-monitor"}}
	r.series(&r.Run, "runc").Runs = []float64{30}
	r.series(&r.Run, "kerr").Runs = []float64{20}
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
		"runc  30.0", "kerr  20.0",
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
