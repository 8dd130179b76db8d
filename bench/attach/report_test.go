package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestKibField(t *testing.T) {
	status := "Name:\tstarter\nVmHWM:\t   10240 kB\nVmRSS:\t    9876 kB\nRssAnon:\t    3000 kB\nThreads:\t5\n"
	if n, ok := kibField(status, "VmRSS"); !ok || n != 9876 {
		t.Errorf("VmRSS = %d, %v", n, ok)
	}
	if _, ok := kibField(status, "Threads"); ok {
		t.Error("Threads has no kB and was read as a size")
	}
	if _, ok := kibField(status, "Pss"); ok {
		t.Error("a missing field was found")
	}
	rollup := "55d0c0000000-7ffc00000000 ---p 00000000 00:00 0   [rollup]\nRss:                9876 kB\nPss:                 2345 kB\n"
	if n, ok := kibField(rollup, "Pss"); !ok || n != 2345 {
		t.Errorf("Pss = %d, %v", n, ok)
	}
}

func TestParseCounts(t *testing.T) {
	if c, err := parseCounts("1, 10,50"); err != nil || len(c) != 3 || c[2] != 50 {
		t.Errorf("parseCounts = %v, %v", c, err)
	}
	for _, bad := range []string{"", "0", "1,,2", "x", "501"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) accepted", bad)
		}
	}
}

// Net throughput takes the run that writes nothing away; the ratios compare net rates.
func TestSummarize(t *testing.T) {
	r := &report{Bytes: 256 * mib, Variants: variants, Workloads: workloads}
	add := func(v, w string, runs ...float64) {
		s := r.series(v, w)
		s.Runs = append(s.Runs, runs...)
		if w != "empty" {
			s.Bytes = r.Bytes
		}
	}
	add("host", "empty", 0.002, 0.004, 0.003)
	add("host", "zeros", 0.131, 0.133, 0.132) // 0.129 s net: 1984 MiB/s
	add("kerr-run", "empty", 0.100, 0.090, 0.110)
	add("kerr-run", "zeros", 0.612, 0.612) // even count: the mean of the two middle ones
	add("kerr-nomon", "zeros", 0.3)        // no empty run: no net rate
	r.Monitors = []*monitorSet{{Containers: 3, Monitors: []memInfo{{RSS: 9000, Anon: 3000, Pss: 4000}, {RSS: 9500, Anon: 3100, Pss: 3900}, {RSS: 9100, Anon: 2900, Pss: 3800}}}}
	r.summarize()
	near := func(a, b float64) bool { return math.Abs(a-b) < 0.01*math.Abs(b) }
	h, k := r.find("host", "zeros"), r.find("kerr-run", "zeros")
	if !near(h.NetMiBps, 256/0.129) || !near(h.MiBps, 256/0.132) {
		t.Errorf("host: %.1f MiB/s net %.1f", h.MiBps, h.NetMiBps)
	}
	if !near(k.NetMiBps, 256/0.512) {
		t.Errorf("kerr run: net %.1f MiB/s, want %.1f", k.NetMiBps, 256/0.512)
	}
	if n := r.find("kerr-nomon", "zeros"); n.NetMiBps != 0 || n.MiBps == 0 {
		t.Errorf("kerr --no-monitor without an empty run: %+v", n)
	}
	if len(r.Ratios) != 1 || r.Ratios[0].Of != "kerr-run" || r.Ratios[0].Against != "host" || !near(r.Ratios[0].Value, 0.129/0.512) {
		t.Errorf("ratios: %+v", r.Ratios)
	}
	m := r.Monitors[0]
	if m.MedianRSS != 9100 || m.MedianAnon != 3000 || m.MedianPss != 3900 || m.TotalRSS != 27600 || m.TotalPss != 11700 {
		t.Errorf("monitors: %+v", m)
	}
	var out bytes.Buffer
	r.printTable(&out)
	for _, want := range []string{"net 500", "kerr oci run (monitor) / host pipe = 0.25", "9100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table does not say %q:\n%s", want, out.String())
		}
	}
}
