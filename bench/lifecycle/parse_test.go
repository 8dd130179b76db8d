package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParsePidFile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"1234", 1234, true},
		{"1234\n", 1234, true},
		{" 7 ", 7, true},
		{"", 0, false},
		{"0", 0, false},
		{"-3", 0, false},
		{"12x", 0, false},
	} {
		got, err := parsePidFile(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parsePidFile(%q) = %d, %v, want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseWaitAnswer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{`{"exitStatus":0}`, 0, true},
		{`{"exitStatus":137}`, 137, true},
		{`{"error":"bad request"}`, 0, false},
		{`{}`, 0, false},
		{`{"exitStatus":"1"}`, 0, false},
		{`{"exitStatus":1.5}`, 0, false},
	} {
		var ans map[string]any
		if err := json.Unmarshal([]byte(tc.in), &ans); err != nil {
			t.Fatal(err)
		}
		got, err := parseWaitAnswer(ans)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseWaitAnswer(%s) = %d, %v, want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestKerrState(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if _, ok := recordedExit(p); ok {
		t.Error("recordedExit of a missing file says ok")
	}
	// As kerr writes it while the container runs, then once the monitor recorded the exit.
	os.WriteFile(p, []byte(`{"id":"a","pid":10,"monitorPid":9,"monitorStartTime":5}`), 0o644)
	s, err := readKerrState(p)
	if err != nil || s.MonitorPid != 9 || s.ExitStatus != nil {
		t.Errorf("readKerrState = %+v, %v", s, err)
	}
	if _, ok := recordedExit(p); ok {
		t.Error("recordedExit without exitStatus says ok")
	}
	os.WriteFile(p, []byte(`{"id":"a","monitorPid":9,"exitStatus":0,"finished":"2026-01-01T00:00:00Z"}`), 0o644)
	if code, ok := recordedExit(p); !ok || code != 0 {
		t.Errorf("recordedExit = %d, %v, want 0, true", code, ok)
	}
	os.WriteFile(p, []byte(`{"id":`), 0o644)
	if _, err := readKerrState(p); err == nil {
		t.Error("readKerrState of a torn file: no error")
	}
}

func TestCheckStopped(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"ociVersion":"1.0.2","id":"x","status":"stopped","bundle":"/b"}`, true},
		{"{\n  \"status\": \"stopped\"\n}\n", true},
		{"warning: something\n{\"status\":\"stopped\"}", true},
		{`{"status":"running","pid":4}`, false},
		{``, false},
		{`{"status":`, false},
	} {
		if err := checkStopped(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkStopped(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestStatusKiB(t *testing.T) {
	status := "Name:\tkerr\nVmHWM:\t   12000 kB\nVmRSS:\t   10936 kB\nRssAnon:\t    3322 kB\nThreads:\t5\n"
	for _, tc := range []struct {
		name string
		want int64
		ok   bool
	}{
		{"VmRSS", 10936, true},
		{"VmHWM", 12000, true},
		{"RssAnon", 3322, true},
		{"Threads", 0, false}, // not a size
		{"VmSwap", 0, false},
		{"Vm", 0, false},
	} {
		got, ok := statusKiB(status, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("statusKiB(%s) = %d, %v, want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseTimeRSS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"20480\n", 20480, true},
		{"Command exited with non-zero status 1\n5120\n", 5120, true},
		{"Command terminated by signal 9\n777", 777, true},
		{"", 0, false},
		{"0\n", 0, false},
		{"Command exited with non-zero status 1\n", 0, false},
	} {
		got, ok := parseTimeRSS(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseTimeRSS(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice: idle and iowait are
	// not busy, guest is already in user.
	stat := "cpu  100 20 30 5000 400 5 6 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	if got, want := parseBusy(stat), 1.68; got != want {
		t.Errorf("parseBusy = %v, want %v", got, want)
	}
	if got, want := parseBusy("cpu 100 20 30 5000\n"), 1.5; got != want {
		t.Errorf("parseBusy, 4 fields = %v, want %v", got, want)
	}
	if got := parseBusy(""); got != 0 {
		t.Errorf("parseBusy(\"\") = %v, want 0", got)
	}
}

func TestOrder(t *testing.T) {
	if got := order(4, 0); !reflect.DeepEqual(got, []int{0, 1, 2, 3}) {
		t.Errorf("order(4, 0) = %v", got)
	}
	if got := order(4, 5); !reflect.DeepEqual(got, []int{1, 2, 3, 0}) {
		t.Errorf("order(4, 5) = %v", got)
	}
	// Over n repetitions, every variant is in every position once.
	const n = 5
	seen := [n][n]int{}
	for i := range n {
		for pos, v := range order(n, i) {
			seen[v][pos]++
		}
	}
	for v := range n {
		for pos := range n {
			if seen[v][pos] != 1 {
				t.Fatalf("variant %d was %d times at position %d", v, seen[v][pos], pos)
			}
		}
	}
}
