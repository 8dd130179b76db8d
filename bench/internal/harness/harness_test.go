package harness

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9}, 5},
	} {
		in := append([]float64(nil), tc.xs...)
		if got := Median(tc.xs); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", in, got, tc.want)
		}
		for i := range in {
			if tc.xs[i] != in[i] {
				t.Fatalf("Median reordered its argument: %v, was %v", tc.xs, in)
			}
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
		{"Command exited with non-zero status 1\n", 0, false},
	} {
		got, ok := parseTimeRSS(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseTimeRSS(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc\n\n", 1, "c"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := lastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestParseBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice: idle and iowait
	// are not busy, guest time is already in user.
	stat := "cpu  100 20 30 5000 400 5 6 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	if got, want := parseBusy(stat), 1.68; got != want {
		t.Errorf("parseBusy = %v, want %v", got, want)
	}
	// An old kernel's shorter line, and nothing at all.
	if got, want := parseBusy("cpu 100 20 30 5000\n"), 1.5; got != want {
		t.Errorf("parseBusy, 4 fields = %v, want %v", got, want)
	}
	if got := parseBusy(""); got != 0 {
		t.Errorf("parseBusy(\"\") = %v, want 0", got)
	}
}

func TestOthers(t *testing.T) {
	r := Result{Wall: 2, CPU: 1, Busy: 0.5}
	if got := r.Others(); got != 0 {
		t.Errorf("Others with Busy below CPU = %v, want 0", got)
	}
	if got := (Result{}).Others(); got != 0 {
		t.Errorf("Others of nothing = %v, want 0", got)
	}
}

func TestMB(t *testing.T) {
	if got := MB(168_512_345); got != "168.5 MB" {
		t.Errorf("MB = %q", got)
	}
}

func TestRun(t *testing.T) {
	ctx := context.Background()
	r, err := Run(ctx, Cmd{Args: []string{"sh", "-c", "echo out; echo err >&2"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Wall <= 0 || r.MaxRSS <= 0 {
		t.Errorf("Run = %+v, want a wall time and a peak RSS", r)
	}

	_, err = Run(ctx, Cmd{Args: []string{"sh", "-c", "echo one; echo two; echo three >&2; exit 3"}, Tail: 2})
	if err == nil || !strings.HasPrefix(err.Error(), "sh -c echo one") || !strings.HasSuffix(err.Error(), "\ntwo\nthree") ||
		strings.Contains(err.Error(), "one\n") {
		t.Errorf("failure with Tail 2: %v", err)
	}
	_, err = Run(ctx, Cmd{Args: []string{"sh", "-c", "echo one; echo two; exit 3"}})
	if err == nil || !strings.HasSuffix(err.Error(), "exit status 3\none\ntwo") {
		t.Errorf("failure with all the output: %v", err)
	}

	// The stdin given, and GNU time's figure where it is installed, on success and failure.
	if _, err := exec.LookPath("time"); err != nil {
		t.Skip("no GNU time")
	}
	r, err = Run(ctx, Cmd{Args: []string{"cat"}, Stdin: strings.NewReader("x"), PeakRSS: true})
	if err != nil || r.MaxRSS <= 0 {
		t.Errorf("cat under time: %+v, %v", r, err)
	}
	r, err = Run(ctx, Cmd{Args: []string{"sh", "-c", "exit 1"}, PeakRSS: true})
	if err == nil || r.MaxRSS <= 0 || strings.Contains(err.Error(), "/time") {
		t.Errorf("failure under time: %+v, %v (the error names the command, not time)", r, err)
	}
}

func TestWriteReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "r.json")
	if err := WriteReport(path, struct {
		Host Host `json:"host"`
	}{Host{CPUs: 2, Tools: map[string]string{}}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"host\": {\n    \"cpus\": 2,\n    \"kernel\": \"\",\n    \"go\": \"\",\n    \"tools\": {}\n  }\n}\n"
	if string(b) != want {
		t.Errorf("WriteReport wrote %q, want %q", b, want)
	}
}

func TestEditSpec(t *testing.T) {
	// An excerpt of what `runc spec` writes, with a field no spec type here knows.
	in := `{
	"ociVersion": "1.0.2-dev",
	"process": {"terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
		"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
	"root": {"path": "rootfs", "readonly": true},
	"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}], "maskedPaths": ["/proc/kcore"]},
	"x-unknown": {"big": 18446744073709551615}
}`
	out, err := EditSpec([]byte(in), []string{"/bin/sleep", "3600"})
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(in), &want)
	want["process"].(map[string]any)["terminal"] = false
	want["process"].(map[string]any)["args"] = []any{"/bin/sleep", "3600"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EditSpec:\n%s\nwant the input with terminal false and the args", out)
	}
	// Numbers keep their digits (no float64 round trip).
	if !strings.Contains(string(out), "18446744073709551615") {
		t.Errorf("EditSpec changed a large number:\n%s", out)
	}

	for _, bad := range []string{`[]`, `{"process": "x"}`, `{}`, `{`} {
		if _, err := EditSpec([]byte(bad), []string{"/bin/true"}); err == nil {
			t.Errorf("EditSpec(%s): no error", bad)
		}
	}
}

// LookTools names the missing tool and what installs it; ScratchDir makes a checked,
// absolute directory and removes it when done, unless kept, and leaves a given one.
func TestLookToolsAndScratchDir(t *testing.T) {
	if _, err := LookTools([]string{"sh", "kerr-no-such-tool"}, "Debian: nothing"); err == nil ||
		!strings.Contains(err.Error(), "kerr-no-such-tool is needed (Debian: nothing)") {
		t.Errorf("LookTools with a missing tool: %v", err)
	}
	tools, err := LookTools([]string{"sh"}, "")
	if err != nil || !filepath.IsAbs(tools["sh"]) {
		t.Errorf("LookTools(sh) = %v, %v", tools, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("CheckScratch wants root-owned directories")
	}
	parent := t.TempDir()
	dir, done, err := ScratchDir("", parent, "scratch-", false)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(dir) || filepath.Dir(dir) != parent {
		t.Errorf("ScratchDir made %s, want a directory in %s", dir, parent)
	}
	done()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("done left %s (%v)", dir, err)
	}
	kept, done, err := ScratchDir("", parent, "scratch-", true)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("done removed a kept %s: %v", kept, err)
	}
	given := filepath.Join(parent, "given")
	got, done, err := ScratchDir(given, "", "unused-", false)
	if err != nil || got != given {
		t.Fatalf("ScratchDir(%s) = %s, %v", given, got, err)
	}
	done()
	if _, err := os.Stat(given); err != nil {
		t.Errorf("done removed a given directory: %v", err)
	}
	if err := os.Chmod(given, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ScratchDir(given, "", "unused-", false); err == nil {
		t.Error("ScratchDir accepted a world-writable directory")
	}
}
