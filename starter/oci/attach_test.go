package oci

import (
	"strings"
	"testing"
	"time"

	ocicfg "github.com/kerr-hpc/kerr/rpc/oci"
)

func TestScanDetach(t *testing.T) {
	keys := []byte{0x10, 0x11} // ctrl-p,ctrl-q
	cases := []struct {
		reads []string
		sent  string
		hit   bool
	}{
		{[]string{"abc"}, "abc", false},
		{[]string{"ab\x10\x11cd"}, "ab", true},
		{[]string{"ab\x10", "\x11"}, "ab", true},
		{[]string{"\x10x"}, "\x10x", false},
		{[]string{"\x10", "x"}, "\x10x", false},
		{[]string{"\x10\x10\x11"}, "\x10", true},
		{[]string{"\x11\x10"}, "\x11", false}, // the held ctrl-p is not sent yet
	}
	for _, c := range cases {
		matched := 0
		var sent string
		hit := false
		for _, r := range c.reads {
			out, h := scanDetach([]byte(r), keys, &matched)
			sent += string(out)
			if h {
				hit = true
				break
			}
		}
		if sent != c.sent || hit != c.hit {
			t.Errorf("%q: sent %q hit %v; want %q %v", c.reads, sent, hit, c.sent, c.hit)
		}
	}
	matched := 0
	if out, hit := scanDetach([]byte("\x10\x11"), nil, &matched); string(out) != "\x10\x11" || hit {
		t.Errorf("no keys: %q %v", out, hit)
	}
}

func TestOutputSplitter(t *testing.T) {
	type rec struct {
		line    string
		partial bool
	}
	var got []rec
	emit := func(l []byte, p bool) { got = append(got, rec{string(l), p}) }
	var s outputSplitter
	s.split([]byte("one\ntw"), emit)
	s.split([]byte("o\n\nthr"), emit)
	s.flush(emit)
	want := []rec{{"one", false}, {"two", false}, {"", false}, {"thr", true}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// A long line is logged in parts of maxPartial, the last one whole.
	got = nil
	s.split([]byte(strings.Repeat("x", maxPartial+10)), emit)
	s.split([]byte("y\n"), emit)
	if len(got) != 2 || !got[0].partial || len(got[0].line) != maxPartial || got[1].partial || got[1].line != strings.Repeat("x", 10)+"y" {
		t.Errorf("long line: %d records: %v", len(got), got)
	}
}

func TestAppendLogMatchesFormatLog(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	stamp := []byte(ts.Format(time.RFC3339Nano))
	for _, format := range []string{ocicfg.LogBasic, ocicfg.LogKubernetes, ocicfg.LogJSON} {
		for _, partial := range []bool{false, true} {
			want := formatLog(format, ts, "stderr", `a "line"`, partial)
			if got := string(appendLog([]byte("x"), format, stamp, "stderr", []byte(`a "line"`), partial)); got != "x"+want {
				t.Errorf("%s partial %v: %q, want %q", format, partial, got, "x"+want)
			}
		}
	}
}
