package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// parsePidFile reads a --pid-file: a decimal pid, with or without a newline (runc and crun
// write none).
func parsePidFile(s string) (int, error) {
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("not a pid: %q", s)
	}
	return pid, nil
}

// parseWaitAnswer reads a kerr monitor's answer to {"op":"wait"}: {"exitStatus":N}, or
// {"error":"..."}.
func parseWaitAnswer(ans map[string]any) (int, error) {
	if msg, ok := ans["error"].(string); ok {
		return 0, fmt.Errorf("the monitor answered: %s", msg)
	}
	code, ok := ans["exitStatus"].(float64)
	if !ok || code != float64(int(code)) {
		return 0, fmt.Errorf("the monitor answered %v, want an exitStatus", ans)
	}
	return int(code), nil
}

// kerrState is what the benchmark reads of kerr's own ROOT/ID/state.json.
type kerrState struct {
	MonitorPid int  `json:"monitorPid"`
	ExitStatus *int `json:"exitStatus"`
}

func readKerrState(path string) (kerrState, error) {
	var s kerrState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// recordedExit is the exit status a kerr monitor recorded in state.json, if any.
func recordedExit(path string) (int, bool) {
	s, err := readKerrState(path)
	if err != nil || s.ExitStatus == nil {
		return 0, false
	}
	return *s.ExitStatus, true
}

// checkStopped checks that a runtime's `state` output says the container is stopped.
func checkStopped(out string) error {
	var st struct {
		Status string `json:"status"`
	}
	// runc and crun print only the JSON; take the first object in case of a warning line.
	i := strings.IndexByte(out, '{')
	if i < 0 {
		return fmt.Errorf("no JSON in its output: %q", out)
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&st); err != nil {
		return fmt.Errorf("its output: %w: %q", err, out)
	}
	if st.Status != "stopped" {
		return fmt.Errorf("status %q, want stopped", st.Status)
	}
	return nil
}

// statusKiB reads a "Name:   123 kB" field of /proc/PID/status.
func statusKiB(status, name string) (int64, bool) {
	for line := range strings.SplitSeq(status, "\n") {
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

// parseTimeRSS reads the peak RSS in KiB from what `time -f %M` wrote: its last line (a
// failed command's status line comes first).
func parseTimeRSS(s string) (int64, bool) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	kib, err := strconv.ParseInt(strings.TrimSpace(lines[len(lines)-1]), 10, 64)
	return kib, err == nil && kib > 0
}

// parseBusy sums the busy fields of /proc/stat's first line, the all-CPUs one, in seconds:
// all but idle and iowait; guest time is already in user.
func parseBusy(stat string) float64 {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[min(len(f), 1):min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return float64(ticks) / 100 // USER_HZ
}

// order is the order in which the n variants go in repetition i: rotated by i, so that
// each goes first, second, ... equally often and a slow spell of the machine is shared.
func order(n, i int) []int {
	o := make([]int, n)
	for j := range o {
		o[j] = (i + j) % n
	}
	return o
}

func joinArgs(argv []string) string { return strings.Join(argv, " ") }
