package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{90, 9}, {50, 5}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if xs[0] != 5 {
		t.Errorf("percentile reordered its argument: %v", xs)
	}
	if got := percentile(nil, 90); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
	if got := percentile([]float64{7}, 90); got != 7 {
		t.Errorf("percentile of one = %v", got)
	}
}

func TestOrder(t *testing.T) {
	if got := order(4, 5); !reflect.DeepEqual(got, []int{1, 2, 3, 0}) {
		t.Errorf("order(4, 5) = %v", got)
	}
}

func TestParsePolicyCheck(t *testing.T) {
	out := "/p/etc/kerr/kerr.toml: ok\n[images]\n  formats = [\"sif\"]\n  kernel_squashfs = \"root-owned\"\n" +
		"  max_loop_devices = 256\n  shared_loop_devices = true\n"
	file, ks, shared, maxLoops := parsePolicyCheck(out)
	if file != "/p/etc/kerr/kerr.toml" || ks != "root-owned" || shared != "true" || maxLoops != "256" {
		t.Errorf("parsePolicyCheck = %q %q %q %q", file, ks, shared, maxLoops)
	}
	explain := "allowed: u (uid 1) may run /x.sif in setuid mode\n  groups:       u (1)\n" +
		"  image:        sif, owner u, group u, mode 0644, mounted with squashfuse\n  binds:        none\n"
	if got := explainImage(explain); got != "sif, owner u, group u, mode 0644, mounted with squashfuse" {
		t.Errorf("explainImage = %q", got)
	}
}

func TestEditSpec(t *testing.T) {
	in := `{"ociVersion":"1.3.0","process":{"user":{"uid":0,"gid":0},"args":["/.singularity.d/actions/run"],"terminal":true,"cwd":"/"},
"root":{"path":"rootfs"},"mounts":[{"destination":"/proc"},{"destination":"/dev"}],"hostname":"x",
"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}],"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"}}}`
	out, si, err := editSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	if spec["ociVersion"] != "1.0.2" || !reflect.DeepEqual(proc["args"], []any{"/bin/true"}) || proc["terminal"] != false ||
		proc["cwd"] != "/" || spec["hostname"] != "x" {
		t.Errorf("edited spec: %s", out)
	}
	want := specInfo{OCIVersion: "1.3.0", Args: []string{"/bin/true"}, User: "0:0", Namespaces: []string{"pid", "mount"}, Mounts: 2, Seccomp: true}
	if !reflect.DeepEqual(si, want) {
		t.Errorf("specInfo = %+v, want %+v", si, want)
	}
	if _, _, err := editSpec([]byte(`{"ociVersion":"1.0.2"}`)); err == nil {
		t.Error("a spec without process: no error")
	}
}

func TestParseStatus(t *testing.T) {
	st := "Name:\tsquashfuse\nUmask:\t0022\nState:\tZ (zombie)\nTgid:\t5\nUid:\t995\t995\t995\t995\nGid:\t994\t994\t994\t994\n"
	name, state, uids := parseStatus(st)
	if name != "squashfuse" || state != "Z" || !reflect.DeepEqual(uids, []string{"995", "995", "995", "995"}) {
		t.Errorf("parseStatus = %q %q %v", name, state, uids)
	}
}

func TestSummarize(t *testing.T) {
	r := &report{Concurrency: 4, Variants: []variantInfo{{Key: "kerr-root", Name: "kerr exec, root-owned SIF"}}}
	r.seq("kerr-root").Runs = []float64{100, 120, 110}
	r.seq("runc").Runs = []float64{50, 60, 55}
	r.seq("crun").Runs = nil // failed at once: dropped
	r.conc("kerr-root").Runs = []float64{400, 800, 600}
	r.conc("kerr-root").Loops = []loopSeen{{Devices: []string{"loop3"}}, {Devices: []string{"loop3", "loop4"}}}
	r.conc("unshare").Runs = []float64{200}
	r.summarize()
	if len(r.Sequential) != 2 {
		t.Fatalf("series left: %d, want 2 (crun dropped)", len(r.Sequential))
	}
	k := r.seq("kerr-root")
	if k.Median != 110 || k.P90 != 120 || k.Min != 100 {
		t.Errorf("kerr-root: %+v", k)
	}
	c := r.conc("kerr-root")
	if c.Median != 600 || c.PerCommand != 150 || c.LoopDevices != 2 || c.Min != 400 || c.Max != 800 {
		t.Errorf("concurrent kerr-root: %+v", c)
	}
	want := []ratio{{"sequential", "kerr-root", "runc", 2}, {"concurrent", "kerr-root", "unshare", 3}}
	if !reflect.DeepEqual(r.Ratios, want) {
		t.Errorf("ratios = %+v, want %+v", r.Ratios, want)
	}
	var sb strings.Builder
	r.printTable(&sb)
	if !strings.Contains(sb.String(), "kerr exec, root-owned SIF / runc: 2.00") {
		t.Errorf("table:\n%s", sb.String())
	}
}
