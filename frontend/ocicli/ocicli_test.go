package ocicli

import "testing"

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"TERM": 15, "SIGTERM": 15, "sigkill": 9, "9": 9, "USR1": 10, "RTMIN": 34, "RTMIN+3": 37, "SIGRTMAX-1": 63, "64": 64} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "NOSUCH", "RTMIN+40", "SIG"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) accepted", bad)
		}
	}
}
